"""Write a defense folder for a feature-denoising variant.

Usage::

    python -m research.feature_denoising.make_defense --variant nonlocal_dot [--name fd_nonlocal_dot] [--dir defenses]

The folder gets ``metadata.json``, ``run_defense.sh``, a three-line ``defense.py`` (it calls
:func:`submission_kit.feature_denoising.defense.run_folder`), ``variant.json`` naming the variant, and a ``README.md``.
The committed folders ``defenses/fd_nonlocal`` (non-local Gaussian, the seed's default) and
``defenses/adv_baseline`` (no blocks) were written by this command; the default name of any other variant is
``fd_<variant>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from submission_kit.feature_denoising import variants
from submission_kit.feature_denoising.defense import SPEC_FILE

__all__ = ["default_name", "main", "write_folder"]

ROOT = Path(__file__).resolve().parents[2]

#: Folder names of the committed defenses.
NAMES = {"nonlocal_gaussian": "fd_nonlocal", "baseline": "adv_baseline"}

METADATA = {"type": "defense", "container": "pytorch/pytorch", "container_gpu": "pytorch/pytorch",
            "entry_point": "run_defense.sh"}

RUN_SCRIPT = """#!/bin/bash
# NIPS 2017 argv: INPUT_DIR OUTPUT_FILE
exec python3 defense.py "$@"
"""

DEFENSE_PY = '''"""{title}

Xie, Wu, van der Maaten, Yuille, He, "Feature Denoising for Improving Adversarial Robustness", CVPR 2019, at
CIFAR-10 scale: the variant named in variant.json ({variant}), adversarially trained by
``research.feature_denoising.train``; no input transformation. See README.md.
"""

from pathlib import Path

from submission_kit.feature_denoising import defense


def main(argv=None):
    defense.run_folder(Path(__file__).resolve().parent, argv=argv)


if __name__ == "__main__":
    main()
'''

README = """# {name} — {title}

Xie, Wu, van der Maaten, Yuille & He 2019, "Feature Denoising for Improving Adversarial Robustness" (the CAAD 2018
winner), at CIFAR-10 scale on a CPU.

Variant **`{variant}`**: {description}.

Backbone: the zoo's ResNet-8 (32-64-128){blocks}. Adversarially trained on adversarial images only (ε = 8/255,
label smoothing 0.1, BatchNorm frozen during the attack); the images are classified as they are, with no input
transformation. CUDA when present.

This network is *not* the zoo's target model, so the sample white-box attacks (which attack `vgg6_w48`) are
transfer attacks for it, as the seed's black-box Table 2 attackers were.

* Weights: `submission_kit/feature_denoising/weights/{variant}.pt`; `variant.json` may name a state dict inside this
  folder instead: `{{"variant": "{variant}", "weights": "model.pt"}}`. Missing weights stop the defense with
  the command that trains them:

  ```
  {command}
  ```
{trained}
* Code: `submission_kit/feature_denoising/` (blocks, network, defense), training `research/feature_denoising/`; results,
  costs and commands:
  `docs/feature_denoising.md`. This folder was written by
  `python -m research.feature_denoising.make_defense --variant {variant}{name_arg}`.
"""


def _trained_note(variant: str) -> str:
    """README lines on the committed weights (their command, the exact rerun, accuracies), if they exist."""
    record_path = variants.weights_path(variant).with_suffix(".json")
    if not record_path.is_file():
        return ""
    record = json.loads(record_path.read_text())
    lines = [f"  The committed weights were trained with `{record['command']}`"]
    if "reproduce" in record:
        lines.append(f"  (the same optimizer steps without the wall-clock budget: `{record['reproduce']}`)")
    if "test_accuracy" in record and "pgd10_accuracy" in record:
        lines.append(f"  and measured {100 * record['test_accuracy']:.1f} % clean accuracy on "
                     f"{record.get('test_images', '?')} CIFAR-10 test images, {100 * record['pgd10_accuracy']:.1f} % "
                     f"under PGD-10 (ε = 8/255) on {record.get('pgd10_images', '?')}.")
    else:
        lines[-1] += "."
    return "\n" + "\n".join(lines) + "\n"


def default_name(variant: str) -> str:
    """Folder name of a variant's defense: ``fd_nonlocal``, ``adv_baseline``, else ``fd_<variant>``."""
    return NAMES.get(variant, f"fd_{variant}")


def write_folder(variant: str, parent: Path, *, name: str | None = None) -> Path:
    """Write (or overwrite) the defense folder of ``variant`` under ``parent`` and return its path.

    Raises:
        UnknownModelError: ``variant`` is not registered.
    """
    spec = variants.get(variant)
    name = name or default_name(variant)
    title = ("adversarially trained ResNet-8 without denoising blocks" if spec.op is None
             else f"feature-denoising ResNet-8 ({spec.description})")
    blocks = "" if spec.op is None else ", one denoising block after stages 2 and 3"
    folder = parent / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(METADATA, indent=2) + "\n")
    script = folder / "run_defense.sh"
    script.write_text(RUN_SCRIPT)
    script.chmod(0o755)
    (folder / "defense.py").write_text(DEFENSE_PY.format(title=title[0].upper() + title[1:] + ".", variant=variant))
    (folder / SPEC_FILE).write_text(json.dumps({"variant": variant}, indent=2) + "\n")
    name_arg = "" if name == default_name(variant) else f" --name {name}"
    (folder / "README.md").write_text(README.format(name=name, title=title, variant=variant,
                                                    description=spec.description, blocks=blocks,
                                                    command=spec.command, name_arg=name_arg,
                                                    trained=_trained_note(variant)))
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m research.feature_denoising.make_defense",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--variant", required=True, help=f"one of {', '.join(variants.names())}")
    parser.add_argument("--name", help="folder name (default: fd_nonlocal, adv_baseline or fd_<variant>)")
    parser.add_argument("--dir", type=Path, default=ROOT / "defenses", help="parent folder (default: %(default)s)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        folder = write_folder(args.variant, args.dir, name=args.name)
    except variants.UnknownModelError as exc:
        parser.error(str(exc))
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
