"""Rebuild sample_data/ from the foolbox wheel (how the committed files were made).

    pip download --no-deps foolbox==3.3.4 -d /tmp/fb
    python sample_data/make_sample_data.py /tmp/fb/foolbox-3.3.4-py3-none-any.whl

The wheel ships 20 CIFAR-10 test images as ``foolbox/data/cifar10_NN_L.png`` (label L in the name). They are
copied as ``cifar10_NN.png`` and listed in ``dev_dataset.csv`` with target classes drawn by the harness's own
seeded :func:`harness.dataset.draw_targets` (seed 2017, never equal to the true label).
"""

import re
import sys
import zipfile
from pathlib import Path

from harness.dataset import draw_targets

SEED = 2017
HERE = Path(__file__).resolve().parent


def main(wheel: str) -> None:
    rows = []
    with zipfile.ZipFile(wheel) as archive:
        for member in sorted(archive.namelist()):
            match = re.fullmatch(r"foolbox/data/cifar10_(\d\d)_(\d)\.png", member)
            if match:
                image_id = f"cifar10_{match.group(1)}"
                (HERE / f"{image_id}.png").write_bytes(archive.read(member))
                rows.append((image_id, int(match.group(2))))
    targets = draw_targets([label for _, label in rows], num_classes=10, seed=SEED)
    lines = ["ImageId,TrueLabel,TargetClass"] + [f"{i},{y},{t}" for (i, y), t in zip(rows, targets)]
    (HERE / "dev_dataset.csv").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} images and dev_dataset.csv to {HERE}")


if __name__ == "__main__":
    main(sys.argv[1])
