"""The wrapper every sample defense folder uses: arguments → optional input transformation → zoo model → CSV.

A folder's ``defense.py`` names its transformation (or none) and the zoo model it protects::

    from submission_kit.defense_blocks import classify

    def main(argv=None):
        classify.run_defense(transform=None, argv=argv)   # the undefended target model
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from submission_kit import sdk, zoo

#: Images per batch.
BATCH_SIZE = 100

#: float (N, 3, H, W) in [0, 1] on the model's device → same shape and range.
Transform = Callable[[torch.Tensor], torch.Tensor]
#: device → classifier in eval mode (float (N, 3, H, W) in [0, 1] → logits (N, K)).
Loader = Callable[[torch.device], nn.Module]


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, transform: Transform | None = None) -> torch.Tensor:
    """Class predictions (N,) of ``model`` on ``transform(images)`` (images: float (N, 3, H, W) in [0, 1])."""
    inputs = transform(images) if transform is not None else images
    return model(inputs.clamp(0.0, 1.0)).argmax(dim=1)


def run_defense(*, transform: Transform | None = None, model_name: str | None = None,
                loader: Loader | None = None, argv: Sequence[str] | None = None,
                batch_size: int = BATCH_SIZE) -> None:
    """Classify every PNG of ``INPUT_DIR`` and write ``OUTPUT_FILE`` (NIPS 2017 defense argv).

    Args:
        transform: Input transformation applied before the classifier (a denoiser, …); None for none.
        model_name: Zoo model to protect (default :data:`submission_kit.zoo.TARGET_MODEL`).
        loader: Instead of a zoo model: called with the device, returns the classifier in eval mode (e.g. a
            feature-denoising network, ``submission_kit.feature_denoising.variants.load``).
        argv: Command-line arguments (default ``sys.argv[1:]``).
        batch_size: Images per forward pass.
    """
    if loader is not None and model_name is not None:
        raise ValueError("pass model_name or loader, not both")
    args = sdk.defense_args(argv)
    device = sdk.device()
    model = loader(device) if loader is not None else zoo.load(model_name or zoo.TARGET_MODEL, device=device)
    sdk.freeze_startup_objects()
    names: list[str] = []
    labels: list[int] = []
    for batch in sdk.iter_batches(args.input_dir, batch_size=batch_size):
        prediction = predict(model, sdk.to_tensor(batch.images, device), transform=transform)
        names += batch.names
        labels += prediction.tolist()
    sdk.write_predictions(args.output_file, names, labels)
