"""HGD as a competition defense: denoise with a trained denoiser, then classify with a zoo model.

Each ``defenses/hgd_<guide>`` folder is one call::

    from submission_kit.hgd import defense

    def main(argv=None):
        defense.run_defense("dunet_lgd", argv=argv)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from submission_kit import sdk
from submission_kit.defense_blocks import classify
from submission_kit.hgd.networks import Denoiser
from submission_kit.hgd.registry import load_denoiser, parse_name

__all__ = ["denoise_transform", "run_defense"]


def denoise_transform(denoiser: Denoiser) -> classify.Transform:
    """Wrap a denoiser as a defense transformation: float (N, 3, H, W) in [0, 1] → denoised, clamped to [0, 1].

    The denoiser runs without gradients in eval mode on the images' device.
    """

    @torch.no_grad()
    def transform(images: torch.Tensor) -> torch.Tensor:
        return denoiser(images).clamp_(0.0, 1.0)

    return transform


def run_defense(name: str, *, model_name: str | None = None, argv: Sequence[str] | None = None,
                weights_dir: str | os.PathLike[str] | None = None) -> None:
    """Denoise every PNG of ``INPUT_DIR`` with denoiser ``name``, classify, write ``OUTPUT_FILE`` (NIPS 2017 argv).

    Args:
        name: Denoiser name, e.g. ``"dunet_lgd"`` (:func:`submission_kit.hgd.registry.load_denoiser`).
        model_name: Zoo model to protect; default the model that guided the denoiser (for the committed
            denoisers, :data:`submission_kit.zoo.TARGET_MODEL`).
        argv: Command-line arguments (default ``sys.argv[1:]``).
        weights_dir: Folder of the denoiser's weights (default ``$SUBMISSION_KIT_WEIGHTS/hgd`` or
        ``submission_kit/hgd/weights``).

    Raises:
        DenoiserWeightsNotFoundError: The weights are missing (raised before any image is read); the message
            names the training command.
    """
    denoiser = load_denoiser(name, sdk.device(), weights_dir=weights_dir)
    protected = model_name or parse_name(name).model
    classify.run_defense(transform=denoise_transform(denoiser), model_name=protected, argv=argv)
