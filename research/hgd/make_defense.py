"""Write the defense folder of an HGD denoiser (Liao et al., CVPR 2018): ``defenses/hgd_<guide>``.

Usage::

    python -m research.hgd.make_defense --guide lgd [--dir defenses]     # one folder
    python -m research.hgd.make_defense --all [--dir defenses]           # hgd_pgd, hgd_fgd, hgd_lgd, hgd_cgd

The four committed ``defenses/hgd_*`` folders differ only by the denoiser they load; they are written by this
command (a test checks that they match), never edited by hand. Each gets ``metadata.json``, ``run_defense.sh``, a
``defense.py`` that calls :func:`submission_kit.hgd.defense.run_defense` with ``dunet_<guide>``, and a
``README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from submission_kit.hgd.losses import GUIDES

__all__ = ["GUIDE_TEXT", "folder_name", "main", "write_folder"]

ROOT = Path(__file__).resolve().parents[2]

METADATA = {"type": "defense", "container": "pytorch/pytorch", "container_gpu": "pytorch/pytorch",
            "entry_point": "run_defense.sh"}

RUN_SCRIPT = """#!/bin/bash
# NIPS 2017 argv: INPUT_DIR OUTPUT_FILE
exec python3 defense.py "$@"
"""


@dataclass(frozen=True)
class GuideText:
    """The words that differ between the HGD folders.

    Attributes:
        title: README title after the folder name.
        loss: README sentence describing the training loss (one line).
        docstring: Lines of ``defense.py``'s docstring describing the loss (already wrapped).
    """

    title: str
    loss: str
    docstring: str


GUIDE_TEXT: dict[str, GuideText] = {
    "pgd": GuideText(
        "PGD, pixel guided denoiser (baseline)",
        "L1 distance between the denoised and the clean image (Eq. 3); the target model plays no part in training.",
        "PGD, pixel guided denoiser: L1 between the denoised and the clean image; the pixel-level baseline of\n"
        "Tables 2-3, which suffers from error amplification."),
    "fgd": GuideText(
        "FGD, feature guided denoiser",
        "L1 distance between the target model's last convolutional feature maps (before global pooling) on the "
        "denoised and on the clean image (Eq. 5, l = −2).",
        "FGD, feature guided denoiser: L1 between the target model's last convolutional feature maps on the\n"
        "denoised and the clean image; the loss of the authors' NIPS 2017 winning entry."),
    "lgd": GuideText(
        "LGD, logits guided denoiser (the paper's default HGD)",
        "L1 distance between the target model's logits on the denoised and on the clean image (Eq. 5, l = −1).",
        "LGD, logits guided denoiser: L1 between the target model's logits on the denoised and the clean image;\n"
        "the paper's default HGD."),
    "cgd": GuideText(
        "CGD, class label guided denoiser",
        "the target model's cross-entropy with the true label on the denoised image.",
        "CGD, class label guided denoiser: the target model's cross-entropy with the true label on the denoised\n"
        "image."),
}

DEFENSE_PY = '''"""HGD defense: a DUNET denoiser trained with the {upper} loss, then the zoo's target model.

F. Liao et al., "Defense against adversarial attacks using high-level representation guided denoiser", CVPR 2018.
{docstring}
Weights: ``submission_kit/hgd/weights/dunet_{guide}.pt``; a missing file stops the run with the command that trains it.
Code: ``submission_kit/hgd/``; docs/hgd.md.
"""

from submission_kit.hgd import defense


def main(argv=None):
    defense.run_defense("dunet_{guide}", argv=argv)


if __name__ == "__main__":
    main()
'''

README = """# hgd_{guide} — {title}

Liao, Liang, Dong, Pang, Hu & Zhu 2018, "Defense against adversarial attacks using high-level representation
guided denoiser" (CVPR 2018; winner of the NIPS 2017 defense competition). Each image is denoised by a DUNET
(denoising U-net, the paper's Fig. 3, widths scaled to 16-32-64-64-64 for a CPU) and then classified by the
zoo's target model **`vgg6_w48`** (`submission_kit.zoo.TARGET_MODEL`), whose parameters stayed frozen while the
denoiser was trained. Training loss: {loss} CUDA when present, else CPU.

Weights: `submission_kit/hgd/weights/dunet_{guide}.pt` (with `.json` record and `.log`). When the file is missing the
defense exits with an error naming the commands that make it:

```
python -m research.hgd.make_data
python -m research.hgd.train --arch dunet --guide {guide}
```

Code: `submission_kit/hgd/` (`networks.py`, `losses.py`, `defense.py`), training `research/hgd/train.py`; data
recipe, training, measured speeds and Tables 2–4 at CIFAR-10 scale: `docs/hgd.md`. This folder is written by
`python -m research.hgd.make_defense --guide {guide}`.
"""


def folder_name(guide: str) -> str:
    """``hgd_<guide>``."""
    return f"hgd_{guide}"


def write_folder(guide: str, parent: Path) -> Path:
    """Write ``<parent>/hgd_<guide>`` (replacing its files) and return it.

    Raises:
        ValueError: ``guide`` is not one of the four HGD losses.
    """
    if guide not in GUIDE_TEXT:
        raise ValueError(f"unknown guide {guide!r}; choose one of {', '.join(GUIDES)}")
    text = GUIDE_TEXT[guide]
    folder = Path(parent) / folder_name(guide)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(METADATA, indent=2) + "\n")
    script = folder / "run_defense.sh"
    script.write_text(RUN_SCRIPT)
    script.chmod(0o755)
    (folder / "defense.py").write_text(DEFENSE_PY.format(upper=guide.upper(), guide=guide,
                                                         docstring=text.docstring))
    (folder / "README.md").write_text(README.format(guide=guide, title=text.title, loss=text.loss))
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--guide", choices=list(GUIDE_TEXT), help="the denoiser's training loss")
    which.add_argument("--all", action="store_true", help="all four committed folders")
    parser.add_argument("--dir", type=Path, default=ROOT / "defenses", help="parent folder (default: defenses/)")
    args = parser.parse_args(argv)
    for guide in (list(GUIDE_TEXT) if args.all else [args.guide]):
        print(write_folder(guide, args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
