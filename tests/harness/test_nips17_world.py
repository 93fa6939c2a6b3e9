"""A NIPS 2017-style world run end to end with its exact scores (issue 18).

299×299 images; a ``dev_dataset.csv`` with the real column set and quoted fields holding commas; attacks and
defenses as the development toolkit's samples are written — a ``run_*.sh`` that calls ``python`` with
tf.flags-style ``--input_dir=...`` arguments — whose models are numpy stand-ins; defenses answer Inception-style
labels 1..1000 (class 0 is the background); one attack saves RGBA PNGs, as matplotlib's ``imsave`` does.

The stand-in classifier labels an image ``1 + round(mean pixel)``; a robust one ``1 + 50·round(mean / 50)``.
Images are uniform greys 100, 150, 200 (TrueLabel 101, 151, 201), ε = 16.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.competition import run_competition
from harness.instance import Instance
from tiny_world import config_for

HEADER = ("ImageId,URL,x1,y1,x2,y2,TrueLabel,TargetClass,OriginalLandingURL,License,Author,AuthorProfileURL")
#: ImageId, grey value, TargetClass: 110 is reachable from 101 within ε, 300 is not from 151, 195 is from 201.
IMAGES = [("0c7ac4a8c9dfa802", 100, 110), ("3a6d2c5bd3e36b6f", 150, 300), ("f8b1e3a2d4c5b6a7", 200, 195)]

FLAGS = '''
import argparse, csv, os
import numpy as np
from PIL import Image

parser = argparse.ArgumentParser()  # tf.flags accepts --name=value, and so does argparse
for name in ("input_dir", "output_dir", "output_file", "checkpoint_path"):
    parser.add_argument("--" + name, default="")
parser.add_argument("--max_epsilon", type=float, default=16.0)
parser.add_argument("--image_width", type=int, default=299)
parser.add_argument("--image_height", type=int, default=299)
FLAGS = parser.parse_args()

def load_images():
    for name in sorted(os.listdir(FLAGS.input_dir)):
        if name.endswith(".png"):
            image = np.asarray(Image.open(os.path.join(FLAGS.input_dir, name)).convert("RGB"))
            assert image.shape == (FLAGS.image_height, FLAGS.image_width, 3), image.shape
            yield name, image.astype(np.float32)
'''

ATTACKS = {
    # a plain attack: +ε everywhere (moves the stand-in's label by 16)
    "fgsm_plus": ("attack", '''
for name, x in load_images():
    Image.fromarray(np.clip(x + FLAGS.max_epsilon, 0, 255).astype(np.uint8)).save(
        os.path.join(FLAGS.output_dir, name))
'''),
    # saves opaque RGBA PNGs (matplotlib's imsave does); perturbs only the first image
    "rgba_first": ("attack", '''
for index, (name, x) in enumerate(load_images()):
    y = np.clip(x + (FLAGS.max_epsilon if index == 0 else 0), 0, 255).astype(np.uint8)
    alpha = np.full(y.shape[:2] + (1,), 255, dtype=np.uint8)
    Image.fromarray(np.concatenate([y, alpha], axis=2), mode="RGBA").save(os.path.join(FLAGS.output_dir, name))
'''),
    # targeted: moves the mean toward TargetClass − 1 as far as ε allows
    "toward_target": ("targeted_attack", '''
with open(os.path.join(FLAGS.input_dir, "target_class.csv")) as f:
    targets = {row[0]: int(row[1]) for row in csv.reader(f) if len(row) >= 2}
for name, x in load_images():
    step = np.clip(targets[name] - 1 - x, -FLAGS.max_epsilon, FLAGS.max_epsilon)
    Image.fromarray(np.clip(x + step, 0, 255).astype(np.uint8)).save(os.path.join(FLAGS.output_dir, name))
'''),
}
DEFENSES = {
    "inception_standin": '''
with open(FLAGS.output_file, "w") as out:
    for name, x in load_images():
        out.write("{0},{1}\\n".format(name, int(np.clip(1 + np.round(x.mean()), 1, 1000))))
''',
    "robust_standin": '''
with open(FLAGS.output_file, "w") as out:
    for name, x in load_images():
        out.write("{0},{1}\\n".format(name[:-4], 1 + 50 * int(np.round(x.mean() / 50))))  # rows without .png
''',
}
ATTACK_SH = '''#!/bin/bash
#
# run_attack.sh is a script which executes the attack
#
INPUT_DIR=$1
OUTPUT_DIR=$2
MAX_EPSILON=$3

python attack.py \\
  --input_dir="${INPUT_DIR}" \\
  --output_dir="${OUTPUT_DIR}" \\
  --max_epsilon="${MAX_EPSILON}" \\
  --checkpoint_path=inception_v3.ckpt
'''
DEFENSE_SH = '''#!/bin/bash
INPUT_DIR=$1
OUTPUT_FILE=$2

python defense.py \\
  --input_dir="${INPUT_DIR}" \\
  --output_file="${OUTPUT_FILE}" \\
  --checkpoint_path=inception_v3.ckpt
'''


def _submission(parent: Path, name: str, kind: str, script: str) -> None:
    folder = parent / name
    folder.mkdir(parents=True)
    entry, program = ("run_defense.sh", "defense.py") if kind == "defense" else ("run_attack.sh", "attack.py")
    (folder / "metadata.json").write_text(json.dumps({
        "type": kind, "container": "gcr.io/tensorflow/tensorflow:1.1.0",
        "container_gpu": "gcr.io/tensorflow/tensorflow:1.1.0-gpu", "entry_point": entry}, indent=2))
    (folder / entry).write_text(DEFENSE_SH if kind == "defense" else ATTACK_SH)
    (folder / entry).chmod(0o755)
    (folder / program).write_text(FLAGS + script)
    (folder / "inception_v3.ckpt").write_bytes(b"\0" * 64)


@pytest.fixture
def nips17_world(world: dict[str, Path]) -> dict[str, Path]:
    data = world["root"] / "nips17_dataset"
    data.mkdir()
    rows = [HEADER]
    for image_id, grey, target in IMAGES:
        Image.fromarray(np.full((299, 299, 3), grey, dtype=np.uint8)).save(data / f"{image_id}.png")
        rows.append(f'{image_id},https://farm1.staticflickr.com/{image_id}_o.jpg,13,0,299,287,{grey + 1},{target},'
                    f'https://www.flickr.com/photos/x/{image_id},"Attribution-ShareAlike 2.0, Generic",'
                    f'"Smith, Jane ""JS""",https://www.flickr.com/photos/jane/')
    (data / "dev_dataset.csv").write_text("\r\n".join(rows) + "\r\n")
    for name, (kind, script) in ATTACKS.items():
        _submission(world["attacks"], name, kind, script)
    for name, script in DEFENSES.items():
        _submission(world["defenses"], name, "defense", script)
    return {**world, "data": data}


def test_nips17_world_exact_scores(nips17_world: dict[str, Path]) -> None:
    result = run_competition(config_for(nips17_world), echo=lambda line: None)
    assert {(r.name, r.problem) for r in result.runs} == {(name, "") for name in [*ATTACKS, *DEFENSES]}
    assert {(r.attack, r.problem) for r in result.attack_images} == {(name, "") for name in ATTACKS}
    notes = {(r.attack, r.note) for r in result.attack_images}
    assert notes == {("fgsm_plus", ""), ("toward_target", ""),
                     ("rgba_first", "mode RGBA converted to RGB (as PIL's convert('RGB'))")}
    scores = {(r.track, r.name): (r.rank, r.raw, r.normalized, r.all_or_nothing, r.clean_accuracy)
              for r in result.scores}
    assert scores == {
        ("defense", "robust_standin"): (1, 9, 1.0, 1.0, 1.0),
        ("defense", "inception_standin"): (2, 2, pytest.approx(2 / 9), 0.0, 1.0),
        ("attack", "fgsm_plus"): (1, 3, 0.5, 0.0, None),
        ("attack", "rgba_first"): (2, 1, pytest.approx(1 / 6), 0.0, None),
        ("targeted_attack", "toward_target"): (1, 2, pytest.approx(2 / 6), 0.0, None),
    }
    targets = {(r.image_id, r.target_class) for r in result.predictions}
    assert targets == {(image_id, target) for image_id, _, target in IMAGES}


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
def test_entry_points_calling_python_run_where_the_interpreter_is_python3_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, sandbox: str) -> None:
    import sys

    from harness.limits import Limits
    from harness.sandboxes.base import RunRequest, SandboxKind
    from harness.sandboxes.factory import probe, sandbox_for
    from harness.submission import parse_submission

    protections = request.getfixturevalue("bubblewrap") if sandbox == "bwrap" else probe(SandboxKind.NONE)
    only_python3 = tmp_path / "bin"  # an interpreter folder without a `python` (Debian's /usr/bin)
    only_python3.mkdir()
    (only_python3 / "python3").symlink_to(Path(sys.executable).resolve())
    monkeypatch.setattr(sys, "executable", str(only_python3 / "python3"))
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "metadata.json").write_text('{"type": "defense", "entry_point": "run_defense.sh"}')
    (folder / "run_defense.sh").write_text(
        '#!/bin/bash\npython -c "import sys; open(sys.argv[1], \'w\').write(\'ok\')" "$2"\n')
    inputs, outputs, work = tmp_path / "in", tmp_path / "out", tmp_path / "work"
    for d in (inputs, outputs, work):
        d.mkdir()
    record = sandbox_for(protections.kind).run(RunRequest(
        submission=parse_submission(folder), args=["{input}", "{output}/result.csv"], inputs=inputs,
        outputs=outputs, workdir=work, limits=Limits(wall_seconds=60), log_path=tmp_path / "log",
        log_name="log", gpu=None, instance=Instance.create(), protections=protections))
    assert record.problem == "", (tmp_path / "log").read_text()
    assert (outputs / "result.csv").read_text() == "ok"
