"""Write the attack folders aimed at one HGD defense each: ``attacks/e2e_hgd_<guide>``.

Usage::

    python -m research.adaptive.make_attacks [--dir attacks]     # e2e_hgd_pgd, e2e_hgd_fgd, e2e_hgd_lgd, e2e_hgd_cgd

The four folders differ only by the denoiser they differentiate through (end-to-end PGD on classifier(D(x)),
Athalye et al. 2018, against the HGD of Liao et al., CVPR 2018); they are written by this command (a test checks
that the committed ones match), never edited by hand. Each gets ``metadata.json`` (with ``targets_defense``),
``run_attack.sh``, a thin ``attack.py`` calling :func:`submission_kit.attack_methods.adaptive.run_adaptive_attack`,
and a ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from submission_kit.hgd.losses import GUIDES

__all__ = ["attack_py", "folder_name", "main", "write_folder"]

ROOT = Path(__file__).resolve().parents[2]

RUN_SCRIPT = """#!/bin/bash
# NIPS 2017 argv: INPUT_DIR OUTPUT_DIR MAX_EPSILON
exec python3 attack.py "$@"
"""

ATTACK = ('"""End-to-end PGD aimed at defenses/hgd_{guide}: the attack differentiates through the defense\'s '
          'own denoiser.' + '''

Liao et al., "Defense against adversarial attacks using high-level representation guided denoiser", CVPR 2018,
evaluated as Athalye et al. 2018 recommend for differentiable pre-processing: PGD (Madry et al. 2018; 20 steps,
α = ε / 4, random start) on classifier(clamp(D(x), 0, 1)) with D the DUNET loaded by submission_kit.hgd.registry,
y = the defense's prediction on the clean image.
"""

from submission_kit.attack_methods import adaptive
from submission_kit.hgd.registry import load_denoiser

DENOISER = "dunet_{guide}"
STEPS = 20


def build(model, device):
    return adaptive.Defended(model, load_denoiser(DENOISER, device))


def main(argv=None):
    adaptive.run_adaptive_attack(build, steps=STEPS, argv=argv)


if __name__ == "__main__":
    main()
''')

README = """# e2e_hgd_{guide}

End-to-end PGD **aimed at `defenses/hgd_{guide}`**: gradients through the real HGD denoiser `dunet_{guide}` \
(`submission_kit.hgd.registry.load_denoiser`) and the target model. Code: `submission_kit.attack_methods.adaptive`.
"""


def folder_name(guide: str) -> str:
    """``e2e_hgd_<guide>``."""
    return f"e2e_hgd_{guide}"


def attack_py(guide: str) -> str:
    """The folder's entry module for the HGD denoiser guided by ``guide`` (one of ``GUIDES``)."""
    return ATTACK.replace("{guide}", guide)


def write_folder(guide: str, parent: Path) -> Path:
    """Write ``parent/e2e_hgd_<guide>/`` (four files); return the folder.

    Raises:
        ValueError: ``guide`` is not one of the HGD guides.
    """
    if guide not in GUIDES:
        raise ValueError(f"unknown guide {guide!r}; use one of {', '.join(GUIDES)}")
    folder = parent / folder_name(guide)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"type": "attack", "container": "pytorch/pytorch", "container_gpu": "pytorch/pytorch",
                "entry_point": "run_attack.sh", "targets_defense": f"hgd_{guide}"}
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (folder / "run_attack.sh").write_text(RUN_SCRIPT)
    (folder / "run_attack.sh").chmod(0o755)
    (folder / "attack.py").write_text(attack_py(guide))
    (folder / "README.md").write_text(README.replace("{guide}", guide))
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=ROOT / "attacks", help="parent folder (default: attacks/)")
    args = parser.parse_args(argv)
    for guide in GUIDES:
        print(write_folder(guide, args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
