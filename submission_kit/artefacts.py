"""One registry of every trained artefact the library ships: zoo models, HGD denoisers, feature-denoising
variants, PRN rectifiers and detectors.

Each artefact has a qualified name ``<family>/<name>`` (``zoo/vgg6_w48``, ``hgd/dunet_lgd``,
``feature_denoising/nonlocal_gaussian``, ``prn/vgg6_w48/prn_inf``, ``prn/vgg6_w48/detector_inf``), a loader, a
weights file, the command that makes that file and its provenance record (the ``.json`` written next to the
weights by the training command: command, seed, software, hardware, measured results). The families keep their
own modules (:mod:`submission_kit.zoo.registry`, :mod:`submission_kit.hgd.registry`,
:mod:`submission_kit.feature_denoising.variants`, :mod:`submission_kit.prn.paths`); this module is the one list
over them, the one "unknown name — did you mean" message and the one environment override of the weights folder.

Weights folder: :data:`WEIGHTS_ENV` (``SUBMISSION_KIT_WEIGHTS``), when set, names a folder with one subfolder per
family (``zoo/``, ``hgd/``, ``feature_denoising/``, ``prn/``) laid out like the package's own ``weights/`` folders;
a family whose subfolder exists there reads from it instead of its committed weights (the others keep theirs).

Importing this module imports no third-party package; :func:`artefacts` imports the family modules (torch).
``python -m submission_kit.artefacts`` prints the registry: name, whether its weights are present, the command
that makes them.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from submission_kit.messages import close_names

__all__ = ["FAMILIES", "WEIGHTS_ENV", "Artefact", "UnknownArtefactError", "artefacts", "get", "listing", "main",
           "names", "unknown_message", "weights_dir"]

#: Environment variable naming a folder to read every family's weights from (``<folder>/<family>/...``).
WEIGHTS_ENV = "SUBMISSION_KIT_WEIGHTS"
#: The artefact families, in listing order.
FAMILIES: tuple[str, ...] = ("zoo", "hgd", "feature_denoising", "prn")


def weights_dir(family: str, default: Path) -> Path:
    """The folder ``family`` reads its weights from: ``$SUBMISSION_KIT_WEIGHTS/<family>`` when the variable is
    set and that folder exists, else ``default`` (the package's committed ``weights/`` folder).

    Raises:
        ValueError: ``family`` is not one of :data:`FAMILIES`.
    """
    if family not in FAMILIES:
        raise ValueError(unknown_message("artefact family", family, list(FAMILIES)))
    root = os.environ.get(WEIGHTS_ENV)
    if root and (Path(root) / family).is_dir():
        return Path(root) / family
    return default


def unknown_message(kind: str, name: str, choices: list[str]) -> str:
    """Build "unknown <kind> 'x'. Did you mean ...? Choices: ..." for every registry look-up."""
    close = close_names(name, choices, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Choices: {', '.join(choices)}."


class UnknownArtefactError(KeyError):
    """A name that is not in the registry; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Artefact:
    """One trained artefact.

    Attributes:
        name: Qualified name ``<family>/<name>``.
        family: One of :data:`FAMILIES`.
        description: One line for tables and messages.
        weights: The weights file (state dict, checkpoint or joblib pipeline) as currently configured.
        command: The shell command that makes ``weights``.
        loader: Called with a device (``"cpu"``, ``"cuda"``) to return the ready-to-use artefact (eval mode).
    """

    name: str
    family: str
    description: str
    weights: Path
    command: str
    loader: Callable[[str], Any]

    @property
    def record(self) -> Path:
        """The provenance record written next to the weights (``<weights stem>.json``)."""
        return self.weights.with_suffix(".json")

    @property
    def available(self) -> bool:
        """True when the weights file exists."""
        return self.weights.is_file()

    def provenance(self) -> dict[str, Any] | None:
        """The provenance record, or None when it is missing or unreadable."""
        try:
            value = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def load(self, device: str = "cpu") -> Any:
        """The artefact on ``device`` (raises the family's weights-not-found error, naming :attr:`command`)."""
        return self.loader(device)


def _zoo() -> list[Artefact]:
    from submission_kit.zoo import registry

    return [Artefact(f"zoo/{n}", "zoo", registry.entry(n).description, registry.weights_path(n),
                     registry.entry(n).command, functools.partial(_load_zoo, n)) for n in registry.names()]


def _load_zoo(name: str, device: str) -> Any:
    from submission_kit.zoo import registry

    return registry.load(name, device)


def _hgd() -> list[Artefact]:
    from submission_kit.hgd import registry

    found = []
    for n in registry.names():
        spec = registry.parse_name(n)
        found.append(Artefact(f"hgd/{n}", "hgd", f"HGD denoiser: {spec.arch.upper()}, {spec.guide.upper()} loss, "
                              f"guided by {spec.model}", registry.weights_path(n), spec.command,
                              functools.partial(_load_hgd, n)))
    return found


def _load_hgd(name: str, device: str) -> Any:
    from submission_kit.hgd import registry

    return registry.load_denoiser(name, device)


def _feature_denoising() -> list[Artefact]:
    from submission_kit.feature_denoising import variants

    return [Artefact(f"feature_denoising/{n}", "feature_denoising", variants.get(n).description,
                     variants.weights_path(n), variants.get(n).command, functools.partial(_load_variant, n))
            for n in variants.names()]


def _load_variant(name: str, device: str) -> Any:
    from submission_kit.feature_denoising import variants

    return variants.load(name, device)


#: (zoo model, norm) of the PRNs and detectors the library ships.
PRN_TRAINED: tuple[tuple[str, str], ...] = (("vgg6_w48", "inf"), ("vgg6_w48", "2"))


def _prn() -> list[Artefact]:
    from submission_kit.prn import paths

    found = []
    for model, norm in PRN_TRAINED:
        norm_name = "ℓ∞" if norm == "inf" else "ℓ2"
        found.append(Artefact(f"prn/{model}/prn_{norm}", "prn", f"PRN rectifier ({norm_name}) for {model}",
                              paths.prn_path(model, norm), paths.train_command(model, norm),
                              functools.partial(_load_prn, model, norm)))
        found.append(Artefact(f"prn/{model}/detector_{norm}", "prn",
                              f"PRN perturbation detector (DCT + SVM, {norm_name}) for {model}",
                              paths.detector_path(model, norm), paths.detector_command(model, norm),
                              functools.partial(_load_detector, model, norm)))
    return found


def _load_prn(model: str, norm: str, device: str) -> Any:
    from submission_kit.prn import paths
    from submission_kit.prn.defense import PRNWeightsNotFoundError
    from submission_kit.prn.network import load_prn

    path = paths.prn_path(model, norm)
    if not path.is_file():
        raise PRNWeightsNotFoundError(f"PRN weights {path} not found. Train them with:\n    "
                                      f"{paths.train_command(model, norm)}")
    return load_prn(path, device)


def _load_detector(model: str, norm: str, device: str) -> Any:
    from submission_kit.prn import paths
    from submission_kit.prn.defense import PRNWeightsNotFoundError
    from submission_kit.prn.detector import Detector

    path = paths.detector_path(model, norm)
    if not path.is_file():
        raise PRNWeightsNotFoundError(f"detector {path} not found. Train it with:\n    "
                                      f"{paths.detector_command(model, norm)}")
    return Detector.load(path)


def artefacts() -> dict[str, Artefact]:
    """Every registered artefact by qualified name, family by family (weights paths as configured now)."""
    listed = [*_zoo(), *_hgd(), *_feature_denoising(), *_prn()]
    return {artefact.name: artefact for artefact in listed}


def names() -> list[str]:
    """Qualified names of every registered artefact."""
    return list(artefacts())


def get(name: str) -> Artefact:
    """The artefact called ``name`` (qualified, ``<family>/<name>``).

    Raises:
        UnknownArtefactError: Not registered; the message suggests the closest names.
    """
    found = artefacts()
    try:
        return found[name]
    except KeyError:
        raise UnknownArtefactError(unknown_message("artefact", name, list(found))) from None


def listing(registered: dict[str, Artefact] | None = None) -> str:
    """One line per artefact: qualified name, ``present`` or ``MISSING``, the command that makes its weights."""
    registered = artefacts() if registered is None else registered
    width = max((len(name) for name in registered), default=0)
    return "\n".join(f"{name:<{width}}  {'present' if a.available else 'MISSING'}  {a.command}"
                     for name, a in registered.items())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m submission_kit.artefacts``: print :func:`listing`; returns the exit status."""
    if list(sys.argv[1:] if argv is None else argv):
        print("usage: python -m submission_kit.artefacts   (lists every trained artefact)", file=sys.stderr)
        return 2
    print(listing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
