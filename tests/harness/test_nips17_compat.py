"""NIPS 2017 submissions and datasets run unchanged (issue 18): every compatibility gap with its right value."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from submission_kit import contract


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- 2. attack outputs in other 8-bit modes are converted as PIL's .convert("RGB") -----------------------------
@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "1"])
def test_output_modes_convert_exactly_as_pil_and_are_refereed(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    rgb = np.clip(clean.astype(int) + rng.integers(-40, 41, size=clean.shape), 0, 255).astype(np.uint8)
    if mode in ("RGBA", "LA"):
        base = Image.fromarray(rgb).convert(mode[:-1])
        alpha = Image.fromarray(rng.integers(0, 256, size=(6, 5), dtype=np.uint8))
        output = Image.merge(mode, (*base.split(), alpha))  # half-transparent: alpha is dropped, not composited
    else:
        output = Image.fromarray(rgb).convert(mode)
    path = tmp_path / "a.png"
    path.write_bytes(_png(output))
    expected = np.asarray(Image.open(path).convert("RGB"))
    verdict = contract.referee(path, clean, 8)
    assert verdict.problem == ""
    assert verdict.note == f"mode {mode} converted to RGB (as PIL's convert('RGB'))"
    low, high = contract.epsilon_ball(clean, 8)
    np.testing.assert_array_equal(verdict.image, np.clip(expected, low, high))
    assert verdict.linf == int(np.abs(verdict.image.astype(int) - clean).max())


def test_rgb_output_has_no_note_and_bad_outputs_are_still_substituted(tmp_path: Path) -> None:
    clean = np.zeros((4, 4, 3), dtype=np.uint8)
    (tmp_path / "rgb.png").write_bytes(_png(Image.fromarray(clean)))
    assert contract.referee(tmp_path / "rgb.png", clean, 8).note == ""
    (tmp_path / "big.png").write_bytes(_png(Image.new("RGBA", (5, 4))))
    assert contract.referee(tmp_path / "big.png", clean, 8).problem == "wrong size 5x4, expected 4x4"
    (tmp_path / "deep.png").write_bytes(_png(Image.new("I;16", (4, 4))))
    assert contract.referee(tmp_path / "deep.png", clean, 8).problem == "16-bit PNG, expected 8-bit RGB"
    (tmp_path / "junk.png").write_bytes(b"not a png")
    assert "unreadable PNG" in contract.referee(tmp_path / "junk.png", clean, 8).problem


# -- 3. defense rows the NIPS 2017 evaluator accepted --------------------------------------------------------
@pytest.mark.parametrize("data", [
    b"a,3\nb,4\n",                                  # names without .png
    b"\xef\xbb\xbfa.png,3\r\nb.png,4\r\n",          # UTF-8 byte-order mark, Windows line endings
    b"\xef\xbb\xbfa,3\nb.jpg,4\n",                  # both, and a .jpg extension
    b"filename,label\na.png,3\na.png,3\n\"b.png\", 4\n",  # header row, a repeated row, quoted name, spaces
])
def test_defense_csv_variants_the_nips17_evaluator_accepted(tmp_path: Path, data: bytes) -> None:
    from harness.defense_output import Answer, parse_predictions

    (tmp_path / "out.csv").write_bytes(data)
    parsed = parse_predictions(tmp_path / "out.csv", expected={"a.png", "b.png"})
    assert parsed.answers == {"a.png": Answer(3, ""), "b.png": Answer(4, "")}


def test_unknown_rows_are_quoted(tmp_path: Path) -> None:
    from harness.defense_output import parse_predictions

    (tmp_path / "out.csv").write_bytes(b"/input/a.png,3\nzz.png,1\n")
    parsed = parse_predictions(tmp_path / "out.csv", expected={"a.png"})
    assert parsed.notes == ["2 row(s) name files that were not given (e.g. '/input/a.png')"]


# -- 1. symbolic links inside a submission folder ----------------------------------------------------------
LINKED_ATTACK = "#!/bin/bash\ncat ckpt/w.txt > /dev/null || exit 1\ncp \"$1\"/*.png \"$2\"/\n"


def _linked_attack(parent: Path, name: str = "linked") -> Path:
    import json
    import os

    folder = parent / name
    (folder / "store").mkdir(parents=True)
    (folder / "store" / "w.txt").write_text("weights")
    os.symlink("store", folder / "ckpt")
    (folder / "metadata.json").write_text(json.dumps({"type": "attack", "entry_point": "run_attack.sh"}))
    (folder / "run_attack.sh").write_text(LINKED_ATTACK)
    (folder / "run_attack.sh").chmod(0o755)
    return folder


def test_links_inside_the_folder_are_kept_and_hashed(tmp_path: Path) -> None:
    import os

    from harness.sandboxes.staging import fresh_copy
    from harness.submission import parse_submission

    folder = _linked_attack(tmp_path)
    submission = parse_submission(folder)
    assert submission.warnings == ()
    copy = fresh_copy(submission, tmp_path / "copy")
    assert (copy / "ckpt").is_symlink() and (copy / "ckpt" / "w.txt").read_text() == "weights"
    assert os.readlink(copy / "ckpt") == "store"  # relative: valid wherever the copy is mounted
    # absolute links into the folder are rewritten as relative ones, and the link counts in the hash
    (folder / "ckpt").unlink()
    os.symlink(folder / "store" / "w.txt", folder / "ckpt")
    moved = parse_submission(folder)
    assert moved.content_hash != submission.content_hash
    copy = fresh_copy(moved, tmp_path / "copy2")
    assert os.readlink(copy / "ckpt") == "store/w.txt"


def test_links_leaving_the_folder_are_reported_by_name(tmp_path: Path) -> None:
    import os

    from harness.submission import parse_submission

    folder = _linked_attack(tmp_path)
    (tmp_path / "outside.txt").write_text("x")
    os.symlink(tmp_path / "outside.txt", folder / "escape")
    os.symlink("nowhere", folder / "dangling")
    warnings = parse_submission(folder).warnings
    assert [w.split(":")[0] for w in warnings] == [str(folder / "dangling"), str(folder / "escape")]
    assert all("leaves the submission folder" in w for w in warnings)


def test_linked_attack_runs_in_a_competition(world: dict[str, Path]) -> None:
    from harness.competition import run_competition
    from tiny_world import BUCKET_DEFENSE, config_for, write_submission

    _linked_attack(world["attacks"])
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    result = run_competition(config_for(world), echo=lambda line: None)
    assert {r.problem for r in result.runs if r.name == "linked"} == {""}
    assert {r.problem for r in result.attack_images} == {""}


# -- 4. entry points saved with Windows line endings ------------------------------------------------------
@pytest.mark.parametrize("first, says", [
    (b"#!/bin/bash\r\n", "ends with a Windows line ending"),
    (b"#!/usr/bin/env python3\r\n", "ends with a Windows line ending"),
    (b"\xef\xbb\xbf#!/bin/bash\n", "byte-order mark precedes its #! line"),
])
def test_unusable_interpreter_lines_are_reported_at_discovery_and_in_validate(
        tmp_path: Path, first: bytes, says: str) -> None:
    from harness.submission import discover
    from harness.validate import validate_submission

    folder = _linked_attack(tmp_path / "attacks", "crlf")
    (folder / "run_attack.sh").write_bytes(first + LINKED_ATTACK.split("\n", 1)[1].replace("\n", "\r\n").encode())
    found = discover([tmp_path / "attacks"])
    assert found.submissions == () and len(found.problems) == 1
    assert says in found.problems[0].message and str(folder / "run_attack.sh") in found.problems[0].message
    report = validate_submission(folder, input_dir=Path("sample_data"))
    assert len(report.problems) == 1 and says in report.problems[0]


# -- 7. drawn targets are classes labels can take ------------------------------------------------------------
def test_targets_with_1001_classes_are_drawn_from_1_to_1000() -> None:
    from harness.dataset import draw_targets, target_classes

    assert target_classes(1001) == range(1, 1001) and target_classes(10) == range(10)
    labels = [1, 1000, 500] * 2000
    targets = draw_targets(labels, num_classes=1001, seed=3)
    assert min(targets) == 1 and max(targets) == 1000  # reaches both ends, never the background class 0
    assert all(t != label for t, label in zip(targets, labels))
    # with 2 classes the draw is forced, and other class counts keep their full range
    assert draw_targets([0, 1], num_classes=2, seed=0) == [1, 0]
    assert set(draw_targets([0] * 500, num_classes=10, seed=0)) == set(range(1, 10))


# -- 5. dataset messages and the dev toolkit's layout and flags -------------------------------------------------
def _nips_dataset(root: Path, ids: list[str], *, rows: list[str] | None = None, size: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for index, image_id in enumerate(ids):
        Image.fromarray(np.full((size, size, 3), 10 * index, dtype=np.uint8)).save(root / f"{image_id}.png")
    listed = rows if rows is not None else [i.rsplit(".", 1)[0] if i.endswith(".PNG") else i for i in ids]
    (root / "dev_dataset.csv").write_text("ImageId,TrueLabel,TargetClass\n"
                                          + "".join(f"{i},{n + 1},{n + 2}\n" for n, i in enumerate(listed)))
    return root


def test_png_extension_in_upper_case_is_accepted_as_png(tmp_path: Path) -> None:
    from harness.dataset import load_dataset

    root = tmp_path / "data"
    _nips_dataset(root, ["a", "b"], rows=["a", "b"])
    (root / "b.png").rename(root / "b.PNG")
    dataset = load_dataset(root)
    assert [(r.image_id, r.file_name, dataset.path(r).name) for r in dataset.images] == [
        ("a", "a.png", "a.png"), ("b", "b.png", "b.PNG")]


def test_stem_differing_in_case_is_named(tmp_path: Path) -> None:
    from harness.dataset import DatasetError, load_dataset

    root = _nips_dataset(tmp_path / "data", ["a", "B"], rows=["a", "b"])
    with pytest.raises(DatasetError, match="file 'B.png' differs only in case from ImageId 'b'"):
        load_dataset(root)


def test_only_present_images_runs_on_what_was_downloaded(tmp_path: Path) -> None:
    from harness.dataset import DatasetError, load_dataset

    root = _nips_dataset(tmp_path / "data", ["a", "b"], rows=["a", "b", "c", "d"])
    with pytest.raises(DatasetError, match="2 labelled image.*c, d; pass --only_present_images"):
        load_dataset(root)
    dataset = load_dataset(root, only_present=True)
    assert [r.image_id for r in dataset.images] == ["a", "b"] and dataset.left_out == ("c", "d")


def test_dev_toolkit_layout_and_metadata_flag(tmp_path: Path) -> None:
    from harness.dataset import load_dataset

    data = tmp_path / "dataset"
    _nips_dataset(data / "images", ["a", "b"])
    (data / "images" / "dev_dataset.csv").rename(data / "dev_dataset.csv")
    for root in (data, data / "images"):  # the toolkit's dataset/ folder or its images/ folder
        assert [r.image_id for r in load_dataset(root).images] == ["a", "b"]
    elsewhere = tmp_path / "meta.csv"
    (data / "dev_dataset.csv").rename(elsewhere)
    assert len(load_dataset(data / "images", metadata=elsewhere)) == 2
    other = data / "images"  # a label file beside a folder not named images/ is not the toolkit's: not used
    other.rename(tmp_path / "pngs")
    (tmp_path / "meta.csv").rename(tmp_path / "dev_dataset.csv")
    from harness.dataset import DatasetError

    with pytest.raises(DatasetError, match="no label file.*--dataset_metadata"):
        load_dataset(tmp_path / "pngs")


def test_toolkit_command_line_is_accepted(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main
    from tiny_world import BUCKET_DEFENSE, NOOP, write_submission

    data = world["root"] / "dataset"
    _nips_dataset(data / "images", ["a", "b"])
    (data / "images" / "dev_dataset.csv").rename(data / "dev_dataset.csv")
    write_submission(world["attacks"], "noop", "attack", NOOP)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    targeted = world["root"] / "targeted"
    targeted.mkdir()
    status = main(["--attacks_dir", str(world["attacks"]), "--targeted_attacks_dir", str(targeted),
                   "--defenses_dir", str(world["defenses"]), "--dataset_dir", str(data / "images"),
                   "--dataset_metadata", str(data / "dev_dataset.csv"),
                   "--intermediate_results_dir", str(world["root"] / "tmp"), "--output_dir", str(world["results"]),
                   "--epsilon=16", "--save_all_classification", "--gpu", "--quiet", "--min_seconds", "20"],
                  root=world["root"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "intermediate results are kept in" in err and "every classification is in" in err
    assert "--gpu is not needed" in err
    assert (world["results"] / "per_image.csv").read_text().count("\n") == 1 + 2 * 2  # clean + noop, 2 images


# -- 6. validate on images of the size the submission expects ---------------------------------------------------
NEEDS_299 = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
batch = np.zeros((4, 299, 299, 3), dtype=np.uint8)
with open(out, "w") as f:
    for i, p in enumerate(sorted(inp.glob("*.png"))):
        batch[i] = np.asarray(Image.open(p))
        f.write(f"{p.name},{1 + int(batch[i].mean()) % 1000}\\n")
"""


def test_validate_says_the_sample_size_and_runs_on_generated_299_images(tmp_path: Path) -> None:
    from harness.validate import validate_submission
    from tiny_world import write_submission

    folder = write_submission(tmp_path, "inception", "defense", NEEDS_299)
    report = validate_submission(folder, input_dir=Path("sample_data"))
    assert "input: 4 image(s) of 32×32 from sample_data" in report.lines
    assert len(report.problems) == 2 and "could not broadcast" in report.problems[0]
    assert "the images it was given are 32×32" in report.problems[0] and "--image_size 299" in report.problems[0]
    report = validate_submission(folder, input_dir=Path("sample_data"), image_size=299)
    assert report.ok, report.problems
    assert "input: 4 image(s) of 299×299 generated (--image_size)" in report.lines
