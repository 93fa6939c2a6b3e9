"""The perturbation detector 𝒟(I) = ℬ(ℱ(I − ℛ(I))) of the seed (§4.3).

ℱ: "the log-absolute values of the 2D-DCT coefficients of the gray-scaled image in the argument" — here
``log(|DCT-II(gray(I − ℛ(I)))| + ε)`` with the orthonormal 2-D DCT-II (``scipy.fft.dctn(type=2, norm="ortho")``)
of the ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (what PIL's ``convert("L")`` and MATLAB's ``rgb2gray``
use), one feature per pixel (1,024 for 32×32 images). ε = :data:`EPS` keeps a zero difference finite: all its
features equal log ε.

ℬ: "an SVM" — a scikit-learn ``Pipeline(StandardScaler, LinearSVC)`` by default (``kernel="rbf"`` gives an
``SVC``), trained on features of clean (label 0) and perturbed (label 1) training images. Stored with joblib
next to the PRN weights, with a JSON record; ``predict`` returns True for "perturbed".

scikit-learn, joblib and SciPy are imported by the functions that call them (together over a second per process),
so the rectify-only defense (``defenses/prn_always``) never loads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = ["EPS", "LUMA", "Detector", "dct_features", "grayscale", "residual_features"]

#: Added to |DCT| before the logarithm.
EPS = 1e-6
#: ITU-R BT.601 luma weights of R, G, B.
LUMA = (0.299, 0.587, 0.114)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of images: float (N, 3, H, W) → (N, H, W), same dtype and device."""
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1)


def dct_features(difference: torch.Tensor) -> np.ndarray:
    """ℱ: log(|2-D DCT-II (orthonormal) of the grayscale of ``difference``| + EPS), flattened.

    Args:
        difference: float (N, 3, H, W), e.g. I − ℛ(I) (any range).

    Returns:
        float64 (N, H·W); a zero difference gives log(EPS) everywhere.
    """
    from scipy import fft

    gray = grayscale(difference.detach().double()).cpu().numpy()
    coefficients = fft.dctn(gray, type=2, norm="ortho", axes=(1, 2))
    return np.log(np.abs(coefficients) + EPS).reshape(len(gray), -1)


@torch.no_grad()
def residual_features(prn: nn.Module, images: torch.Tensor, batch_size: int = 250) -> np.ndarray:
    """ℱ(I − ℛ(I)) of a batch of images (float (N, 3, H, W) in [0, 1]) → float64 (N, H·W)."""
    parts = [dct_features(images[s:s + batch_size] - prn(images[s:s + batch_size]))
             for s in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, images.shape[-2] * images.shape[-1]))


@dataclass
class Detector:
    """ℬ, the binary classifier on ℱ features: clean (False) vs perturbed (True).

    Attributes:
        pipeline: The fitted scikit-learn pipeline (standardization + SVM).
        record: Provenance (command, data, accuracies, versions) stored with it.
    """

    pipeline: Pipeline
    record: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, features: np.ndarray, perturbed: np.ndarray, *, kernel: str = "linear", C: float = 1.0,
            seed: int = 0, record: dict[str, Any] | None = None) -> "Detector":
        """Train ℬ on features (M, D) with labels ``perturbed`` (M,) bool.

        Args:
            features: ℱ features.
            perturbed: True for perturbed images.
            kernel: ``"linear"`` (``LinearSVC``) or ``"rbf"`` (``SVC``).
            C: SVM regularization.
            seed: ``random_state`` of the SVM.
            record: Provenance to keep with the detector.
        """
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC, LinearSVC

        if kernel == "linear":
            svm = LinearSVC(C=C, random_state=seed, dual="auto", max_iter=10_000)
        elif kernel == "rbf":
            svm = SVC(C=C, kernel="rbf", gamma="scale", random_state=seed)
        else:
            raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
        pipeline = make_pipeline(StandardScaler(), svm)
        pipeline.fit(features, np.asarray(perturbed, dtype=bool))
        return cls(pipeline=pipeline, record=dict(record or {}, kernel=kernel, C=C, seed=seed))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Detections (M,) bool: True = perturbed."""
        return np.asarray(self.pipeline.predict(features), dtype=bool)

    def detect(self, prn: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """𝒟(I) for images (N, 3, H, W) in [0, 1]: bool tensor (N,) on the images' device."""
        return torch.from_numpy(self.predict(residual_features(prn, images))).to(images.device)

    def save(self, path: str | Path) -> None:
        """Write the detector with joblib to ``path`` and its record to ``path`` with suffix ``.json``."""
        import joblib
        import sklearn

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = dict(self.record, sklearn=sklearn.__version__)
        joblib.dump({"pipeline": self.pipeline, "record": record}, path)
        path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Detector":
        """Read a detector written by :meth:`save` (a joblib pickle: load only files this project wrote).

        Raises:
            FileNotFoundError: ``path`` does not exist.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"detector {path} not found")
        import joblib

        stored = joblib.load(path)
        return cls(pipeline=stored["pipeline"], record=stored["record"])
