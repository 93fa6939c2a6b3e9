"""The PRN defense (seed §4.3, Fig. 2): classify 𝒞(ℛ(I)) if the detector 𝒟 flags I as perturbed, else 𝒞(I).

Used by the defense folders ``defenses/prn`` (detect, then rectify only detected images) and
``defenses/prn_always`` (rectify every image: the PRN alone). The rectified image is clipped to [0, 1] before
the classifier (``submission_kit.defense_blocks.classify.predict``). Weights are read from
``submission_kit/prn/weights/<model>/``
(``weights_dir`` overrides the folder, e.g. for tests); a missing file raises :class:`PRNWeightsNotFoundError`
naming the command that makes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from submission_kit import sdk, zoo
from submission_kit.defense_blocks import classify

from .detector import Detector, dct_features
from .network import PRN, load_prn
from .paths import detector_command, detector_path, prn_path, train_command, weights_root

__all__ = ["DEFAULT_NORM", "PRNDefense", "PRNWeightsNotFoundError", "load_defense", "run"]

#: The competition's threat model is ℓ∞ (integer ε), so the defense folders use the ℓ∞-trained PRN and detector.
DEFAULT_NORM = "inf"


class PRNWeightsNotFoundError(FileNotFoundError):
    """The PRN or detector file of a model and norm is missing; the message names the command."""


@dataclass
class PRNDefense:
    """ℛ and (optionally) 𝒟 in front of a classifier.

    Attributes:
        prn: The rectifier, eval mode.
        detector: The detector; ``None`` rectifies every image.
    """

    prn: PRN
    detector: Detector | None = None

    @torch.no_grad()
    def detect(self, images: torch.Tensor) -> torch.Tensor:
        """𝒟(I): bool (N,) (all True without a detector). ``images``: float (N, 3, H, W) in [0, 1]."""
        if self.detector is None:
            return torch.ones(len(images), dtype=torch.bool, device=images.device)
        return self.detector.detect(self.prn, images)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The images the classifier sees: ℛ(I) where 𝒟(I) (or always), I elsewhere; float (N, 3, H, W)."""
        rectified = self.prn(images)
        if self.detector is None:
            return rectified
        detected = torch.from_numpy(self.detector.predict(dct_features(images - rectified))).to(images.device)
        return torch.where(detected.view(-1, 1, 1, 1), rectified, images)


def load_defense(model: str = zoo.TARGET_MODEL, norm: str = DEFAULT_NORM, *, always: bool = False,
                 weights_dir: str | Path | None = None, device: str | torch.device = "cpu") -> PRNDefense:
    """Load the PRN (and, unless ``always``, the detector) of ``model`` and ``norm``.

    Args:
        model: The zoo model the PRN was trained for.
        norm: ``"inf"`` or ``"2"``.
        always: Rectify every image (no detector needed).
        weights_dir: Folder holding ``<model>/prn_<norm>.pt`` etc. (default ``submission_kit/prn/weights`` or
        ``$SUBMISSION_KIT_WEIGHTS/prn``).
        device: Where to run the PRN.

    Raises:
        PRNWeightsNotFoundError: A needed file is missing.
    """
    root = Path(weights_dir) if weights_dir is not None else weights_root()
    weights = prn_path(model, norm, root)
    if not weights.is_file() or not weights.with_suffix(".json").is_file():
        raise PRNWeightsNotFoundError(f"PRN weights {weights} (and its .json) not found. Train them with:\n    "
                                      f"{train_command(model, norm)}\n(see docs/prn.md for the commands before it)")
    detector = None
    if not always:
        path = detector_path(model, norm, root)
        if not path.is_file():
            raise PRNWeightsNotFoundError(f"detector {path} not found. Train it with:\n    "
                                          f"{detector_command(model, norm)}")
        detector = Detector.load(path)
    return PRNDefense(prn=load_prn(weights, device), detector=detector)


def run(*, always: bool, norm: str = DEFAULT_NORM, argv: Sequence[str] | None = None,
        weights_dir: str | Path | None = None, batch_size: int = classify.BATCH_SIZE) -> None:
    """The defense entry point: ``INPUT_DIR OUTPUT_FILE`` → one ``<file>.png,<label>`` row per image.

    Args:
        always: Rectify every image (``defenses/prn_always``) instead of only detected ones (``defenses/prn``).
        norm: Which PRN and detector.
        argv: Command-line arguments (default ``sys.argv[1:]``).
        weights_dir: Override of the weights folder.
        batch_size: Images per batch.
    """
    defense = load_defense(zoo.TARGET_MODEL, norm, always=always, weights_dir=weights_dir, device=sdk.device())
    classify.run_defense(transform=defense, argv=argv, batch_size=batch_size)
