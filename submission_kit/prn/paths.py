"""Where the PRN defense keeps its files, and the commands that make each of them.

Layout (``<model>`` is a zoo model name, ``<norm>`` is ``inf`` or ``2``)::

    submission_kit/prn/pools/<model>/uap_<norm>_<role>.npy    real UAPs, float16 (K, 3, H, W); role = train | test
    submission_kit/prn/pools/<model>/uap_<norm>_<role>.json   manifest: command, seeds, subsets, fooling rates, ...
    submission_kit/prn/pools/<model>/synthetic_<norm>.npy     synthetic perturbations as coefficients, float64 (η, K)
    submission_kit/prn/pools/<model>/synthetic_<norm>.json    seed, acceptance, fooling rates, hash of the real pool
    submission_kit/prn/weights/<model>/prn_<norm>.pt          PRN state dict (+ .json record, .log training log)
    submission_kit/prn/weights/<model>/detector_<norm>.joblib detector (scikit-learn pipeline) (+ .json record)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from submission_kit.artefacts import weights_dir

__all__ = [
    "NORMS",
    "POOLS_DIR",
    "ROLES",
    "WEIGHTS_DIR",
    "Norm",
    "Role",
    "check_norm",
    "check_role",
    "detector_command",
    "detector_path",
    "pool_command",
    "pool_path",
    "prn_path",
    "synthetic_command",
    "synthetic_path",
    "train_command",
    "weights_root",
]

Norm = Literal["inf", "2"]
Role = Literal["train", "test"]

#: The two perturbation types of the seed: ℓ∞ and ℓ2.
NORMS: tuple[str, ...] = ("inf", "2")
#: Train perturbations build the defense; test perturbations (disjoint) evaluate it.
ROLES: tuple[str, ...] = ("train", "test")

PACKAGE_DIR = Path(__file__).resolve().parent
#: Folder of the UAP pools and synthetic-perturbation files (committed: a UAP is 3x32x32 float16 = 6 KB).
POOLS_DIR = PACKAGE_DIR / "pools"
#: Folder of the trained PRNs and detectors.
WEIGHTS_DIR = PACKAGE_DIR / "weights"


def weights_root() -> Path:
    """:data:`WEIGHTS_DIR`, or ``$SUBMISSION_KIT_WEIGHTS/prn`` when that variable is set."""
    return weights_dir("prn", WEIGHTS_DIR)


def check_norm(norm: str) -> str:
    """Return ``norm`` if it is ``"inf"`` or ``"2"``, else raise ``ValueError``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def check_role(role: str) -> str:
    """Return ``role`` if it is ``"train"`` or ``"test"``, else raise ``ValueError``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return role


def pool_path(model: str, norm: str, role: str, root: Path = POOLS_DIR) -> Path:
    """``<root>/<model>/uap_<norm>_<role>.npy`` (the manifest is the same path with suffix ``.json``)."""
    return Path(root) / model / f"uap_{check_norm(norm)}_{check_role(role)}.npy"


def synthetic_path(model: str, norm: str, root: Path = POOLS_DIR) -> Path:
    """``<root>/<model>/synthetic_<norm>.npy`` (coefficients; the record is the ``.json`` next to it)."""
    return Path(root) / model / f"synthetic_{check_norm(norm)}.npy"


def prn_path(model: str, norm: str, root: Path | None = None) -> Path:
    """``<root>/<model>/prn_<norm>.pt`` (state dict; ``.json`` record and ``.log`` next to it); ``root`` defaults
    to :func:`weights_root`."""
    return Path(root or weights_root()) / model / f"prn_{check_norm(norm)}.pt"


def detector_path(model: str, norm: str, root: Path | None = None) -> Path:
    """``<root>/<model>/detector_<norm>.joblib`` (``.json`` record next to it); ``root`` defaults to
    :func:`weights_root`."""
    return Path(root or weights_root()) / model / f"detector_{check_norm(norm)}.joblib"


def pool_command(model: str, norm: str, role: str) -> str:
    """The command that makes (or extends) the pool of ``model``, ``norm``, ``role``."""
    count = 8 if role == "train" else 3
    return (f"python -m research.prn.make_pool --model {model} --norm {norm} --role {role} --count {count} "
            f"--max-candidates {12 if role == 'train' else 6} --subset-size 1000 --uap-minutes 5 "
            f"--max-minutes {40 if role == 'train' else 20}")


def synthetic_command(model: str, norm: str) -> str:
    """The command that makes the synthetic perturbations of ``model`` and ``norm`` from its train pool."""
    return f"python -m research.prn.synthetic --model {model} --norm {norm} --count 200"


def train_command(model: str, norm: str) -> str:
    """The command that trains the PRN of ``model`` and ``norm``."""
    return f"python -m research.prn.train --model {model} --norm {norm}"


def detector_command(model: str, norm: str) -> str:
    """The command that trains the detector of ``model`` and ``norm`` (needs the PRN)."""
    return f"python -m research.prn.train_detector --model {model} --norm {norm}"
