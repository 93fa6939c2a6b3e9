"""Write the attack folders aimed at one sample defense each: ``attacks/e2e_hgd_<guide>`` and ``attacks/bpda_<name>``.

Usage::

    python -m research.adaptive.make_attacks [--dir attacks]

* ``e2e_hgd_pgd``, ``e2e_hgd_fgd``, ``e2e_hgd_lgd``, ``e2e_hgd_cgd``: end-to-end PGD on classifier(D(x)) through
  the HGD denoiser D of Liao et al., CVPR 2018 (Athalye et al. 2018 for differentiable pre-processing); they
  differ only by the denoiser.
* ``bpda_tv_denoise``, ``bpda_nl_means``, ``bpda_jpeg`` and ``bpda_tv_denoise_vdef``, ``bpda_nl_means_vdef``:
  BPDA-PGD (Athalye et al. 2018, Sec. 4.1) through the defense's transformation, taken from
  :mod:`submission_kit.defense_blocks.sample_defenses` like the defense's own; the ``_vdef`` folders get a copy of
  the defense's ``v_def.npy`` (the attack's sandbox cannot read the defense folder).

The folders are written by this command (a test checks that the committed ones match), never edited by hand.
Each gets ``metadata.json`` (with ``targets_defense``), ``run_attack.sh``, a thin ``attack.py`` calling
:func:`submission_kit.attack_methods.adaptive.run_adaptive_attack`, and a ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from submission_kit.defense_blocks.sample_defenses import DENOISERS, VDEF_SUFFIX
from submission_kit.hgd.losses import GUIDES

__all__ = ["BPDA_DEFENSES", "attack_py", "bpda_attack_py", "folder_name", "main", "write_bpda_folder",
           "write_folder"]

#: The sample defenses a BPDA folder is written for.
BPDA_DEFENSES = [*DENOISERS, *(f"{name}{VDEF_SUFFIX}" for name in DENOISERS if name != "jpeg")]

ROOT = Path(__file__).resolve().parents[2]

RUN_SCRIPT = """#!/bin/bash
# NIPS 2017 argv: INPUT_DIR OUTPUT_DIR MAX_EPSILON
exec python3 attack.py "$@"
"""

ATTACK = ('"""End-to-end PGD aimed at defenses/hgd_{guide}: the attack differentiates through the defense\'s '
          'own denoiser.' + '''

Liao et al., "Defense against adversarial attacks using high-level representation guided denoiser", CVPR 2018,
evaluated as Athalye et al. 2018 recommend for differentiable pre-processing: PGD (Madry et al. 2018; 20 steps,
α = ε / 4, random start) on classifier(clamp(D(x), 0, 1)) with D the DUNET loaded by submission_kit.hgd.registry;
two label-free runs (adaptive.label_free_pgd): away from the defense's clean prediction, and toward the
target model's least-likely class, kept where the defense then predicts that class.
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
(`submission_kit.hgd.registry.load_denoiser`) and the target model; 20 PGD steps of ε/4 in two label-free runs, \
away from the defense's clean prediction and toward the target model's least-likely class (kept where the defense \
then predicts it). Code: `submission_kit.attack_methods.adaptive` (`label_free_pgd`).
"""


BPDA_ATTACK = ('"""BPDA-PGD aimed at defenses/{defense}: Athalye, Carlini & Wagner, "Obfuscated Gradients Give a '
               'False' + """
Sense of Security", ICML 2018 (Sec. 4.1).

Forward: the defense's own transformation (submission_kit.defense_blocks.sample_defenses, the defense folder's
source of options), then the zoo's target model; backward: the identity through the denoiser.{offset_note}
PGD (Madry et al. 2018; 20 steps, α = ε / 4, random start) in two label-free runs (adaptive.label_free_pgd):
away from the defense's clean prediction, and toward the target model's least-likely class, kept where the
defense then predicts that class.
\"\"\"
{imports}
from submission_kit.attack_methods import adaptive
from submission_kit.defense_blocks import sample_defenses

DEFENSE = "{defense}"
{v_def}STEPS = 20


def build(model, device):
    return adaptive.Defended(model, sample_defenses.transform(DEFENSE, {v_def_arg}wrap=adaptive.bpda))


def main(argv=None):
    adaptive.run_adaptive_attack(build, steps=STEPS, argv=argv)


if __name__ == "__main__":
    main()
""")

BPDA_README = """# bpda_{defense}

BPDA-PGD (Athalye et al. 2018) **aimed at `defenses/{defense}`** (`"targets_defense": "{defense}"` in \
metadata.json): the defense's real transformation forward (`submission_kit.defense_blocks.sample_defenses`), \
identity backward through the denoiser, then the target model; 20 PGD steps of ε/4 in two label-free runs, away \
from the defense's clean prediction and toward the target model's least-likely class (kept where the defense then \
predicts it). Written by `python -m research.adaptive.make_attacks`. Code: \
`submission_kit.attack_methods.adaptive` (`label_free_pgd`).
"""

_VDEF_NOTE = ("\nBefore the denoiser, x ↦ clip(x + v_def, 0, 1) is differentiated exactly; v_def is one fixed "
              "array, so EOT over\nit is a single exact sample.")
_VDEF_CONSTANT = ("#: A copy of defenses/{defense}/v_def.npy (the attack's sandbox cannot read the defense "
                  "folder).\nV_DEF = Path(__file__).resolve().with_name(\"v_def.npy\")\n")


def bpda_attack_py(defense: str) -> str:
    """The entry module of the BPDA folder aimed at sample defense ``defense`` (one of :data:`BPDA_DEFENSES`)."""
    offset = defense.endswith(VDEF_SUFFIX)
    return (BPDA_ATTACK.replace("{offset_note}", _VDEF_NOTE if offset else "")
            .replace("{imports}", "\nfrom pathlib import Path\n" if offset else "")
            .replace("{v_def}", _VDEF_CONSTANT if offset else "")
            .replace("{v_def_arg}", "v_def=V_DEF, " if offset else "")
            .replace("{defense}", defense))


def write_bpda_folder(defense: str, parent: Path, *, defenses: Path = ROOT / "defenses") -> Path:
    """Write ``parent/bpda_<defense>/``; a ``_vdef`` defense's ``v_def.npy`` is copied from ``defenses``.

    Raises:
        ValueError: ``defense`` is not one of :data:`BPDA_DEFENSES`.
    """
    if defense not in BPDA_DEFENSES:
        raise ValueError(f"no BPDA folder for {defense!r}; use one of {', '.join(BPDA_DEFENSES)}")
    folder = _write_common(parent / f"bpda_{defense}", defense, bpda_attack_py(defense),
                           BPDA_README.replace("{defense}", defense))
    if defense.endswith(VDEF_SUFFIX):
        shutil.copyfile(defenses / defense / "v_def.npy", folder / "v_def.npy")
    return folder


def _write_common(folder: Path, defense: str, attack: str, readme: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"type": "attack", "container": "pytorch/pytorch", "container_gpu": "pytorch/pytorch",
                "entry_point": "run_attack.sh", "targets_defense": defense, "role": "white_box"}
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (folder / "run_attack.sh").write_text(RUN_SCRIPT)
    (folder / "run_attack.sh").chmod(0o755)
    (folder / "attack.py").write_text(attack)
    (folder / "README.md").write_text(readme)
    return folder


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
    return _write_common(parent / folder_name(guide), f"hgd_{guide}", attack_py(guide),
                         README.replace("{guide}", guide))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=ROOT / "attacks", help="parent folder (default: attacks/)")
    args = parser.parse_args(argv)
    for guide in GUIDES:
        print(write_folder(guide, args.dir))
    for defense in BPDA_DEFENSES:
        print(write_bpda_folder(defense, args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
