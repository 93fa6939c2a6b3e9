"""Unit tests for harness.dataset: label files, validation errors, target draws, content hash."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.dataset import Dataset, DatasetError, ImageRecord, draw_targets, load_dataset

NIPS_HEADER = ("ImageId,URL,x1,y1,x2,y2,TrueLabel,TargetClass,OriginalLandingURL,License,Author,"
               "AuthorProfileURL")


def write_image(path: Path, value: int = 0, *, size: tuple[int, int] = (2, 3), mode: str = "RGB") -> None:
    array = np.full((size[0], size[1], 3), value, dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)


def make_folder(root: Path, ids: list[str], label_text: str, *, label_file: str = "labels.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for index, image_id in enumerate(ids):
        write_image(root / f"{image_id}.png", value=10 * index)
    (root / label_file).write_text(label_text, encoding="utf-8")
    return root


def labels_csv(rows: list[tuple], header: str = "ImageId,TrueLabel") -> str:
    return header + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows)


# -- reading label files ----------------------------------------------------------------------------

def test_nips_dev_dataset_csv_full_header_extra_columns_ignored(tmp_path):
    text = (NIPS_HEADER + ",Extra\n"
            "b2,https://x/b2.jpg,0,0,10,10,306,21,https://land/b2,CC BY 2.0,Bob,https://p/bob,zzz\n"
            "a1,https://x/a1.jpg,1,2,3,4,1000,1,https://land/a1,CC BY 2.0,\"Doe, Jane\",https://p/jd,yyy\n")
    root = make_folder(tmp_path / "in", ["a1", "b2"], text, label_file="dev_dataset.csv")
    dataset = load_dataset(root)
    assert isinstance(dataset, Dataset)
    assert dataset.label_file == "dev_dataset.csv"
    assert dataset.targets_drawn is False
    assert dataset.num_classes == 1001  # max label 1000 + 1
    assert dataset.seed == 0
    assert dataset.root == root
    assert len(dataset) == 2
    a1, b2 = dataset.images
    assert (a1.image_id, a1.true_label, a1.target_class) == ("a1", 1000, 1)
    assert (b2.image_id, b2.true_label, b2.target_class) == ("b2", 306, 21)
    assert (a1.height, a1.width) == (2, 3)
    assert a1.file_name == "a1.png"
    assert a1.sha256 == hashlib.sha256((root / "a1.png").read_bytes()).hexdigest()
    assert dataset.path(a1) == root / "a1.png"
    assert dataset.by_id() == {"a1": a1, "b2": b2}


def test_minimal_labels_csv_with_target(tmp_path):
    root = make_folder(tmp_path, ["x"], labels_csv([("x", 3, 0)], "ImageId,TrueLabel,TargetClass"))
    dataset = load_dataset(root)
    assert dataset.label_file == "labels.csv"
    assert dataset.images == (ImageRecord("x", 3, 0, dataset.images[0].sha256, 2, 3),)
    assert dataset.num_classes == 4
    assert dataset.targets_drawn is False


def test_dev_dataset_csv_is_preferred_over_labels_csv(tmp_path):
    root = make_folder(tmp_path, ["x"], labels_csv([("x", 5, 1)], "ImageId,TrueLabel,TargetClass"),
                       label_file="dev_dataset.csv")
    (root / "labels.csv").write_text(labels_csv([("x", 2, 1)], "ImageId,TrueLabel,TargetClass"))
    dataset = load_dataset(root)
    assert dataset.label_file == "dev_dataset.csv"
    assert dataset.images[0].true_label == 5


def test_bom_column_order_spaces_and_blank_lines(tmp_path):
    text = "\ufeffTargetClass , TrueLabel,ImageId\n\n 2 , 7 , b \n\n1,0,a\n"
    root = make_folder(tmp_path, ["a", "b"], text)
    dataset = load_dataset(root)
    assert [(r.image_id, r.true_label, r.target_class) for r in dataset.images] == [("a", 0, 1), ("b", 7, 2)]


def test_images_sorted_by_id(tmp_path):
    root = make_folder(tmp_path, ["c", "a", "B"], labels_csv([("c", 1, 0), ("a", 1, 0), ("B", 1, 0)],
                                                              "ImageId,TrueLabel,TargetClass"))
    assert [r.image_id for r in load_dataset(root).images] == ["B", "a", "c"]


# -- target draws -----------------------------------------------------------------------------------

def test_missing_target_class_is_drawn_reproducibly(tmp_path):
    ids = [f"i{k}" for k in range(8)]
    true = [0, 1, 2, 3, 4, 0, 1, 2]
    root = make_folder(tmp_path, ids, labels_csv(list(zip(ids, true))))
    first = load_dataset(root, seed=7)
    assert first.targets_drawn is True
    assert first.seed == 7
    assert first.num_classes == 5
    targets = [r.target_class for r in first.images]
    assert all(0 <= t < 5 for t in targets)
    assert all(r.target_class != r.true_label for r in first.images)
    assert [r.target_class for r in load_dataset(root, seed=7).images] == targets
    other = [r.target_class for r in load_dataset(root, seed=8).images]
    assert other != targets
    assert load_dataset(root, seed=7).content_hash == first.content_hash
    assert load_dataset(root, seed=8).content_hash != first.content_hash


def test_empty_target_cells_are_drawn_given_ones_kept(tmp_path):
    text = "ImageId,TrueLabel,TargetClass\na,1,3\nb,2,\nc,0, \n"
    root = make_folder(tmp_path, ["a", "b", "c"], text)
    dataset = load_dataset(root, num_classes=4)
    assert dataset.targets_drawn is True
    assert dataset.num_classes == 4
    by_id = dataset.by_id()
    assert by_id["a"].target_class == 3
    assert by_id["b"].target_class in {0, 1, 3}
    assert by_id["c"].target_class in {1, 2, 3}


def test_default_num_classes_counts_given_targets(tmp_path):
    root = make_folder(tmp_path, ["a", "b"], labels_csv([("a", 0, 9), ("b", 1, 0)], "ImageId,TrueLabel,TargetClass"))
    assert load_dataset(root).num_classes == 10


def test_default_num_classes_is_at_least_two(tmp_path):
    root = make_folder(tmp_path, ["a"], labels_csv([("a", 0)]))
    dataset = load_dataset(root)
    assert dataset.num_classes == 2
    assert dataset.images[0].target_class == 1  # the only other class


def test_draw_targets_two_classes_is_forced():
    assert draw_targets([0, 1, 1, 0], num_classes=2, seed=123) == [1, 0, 0, 1]


def test_draw_targets_uniform_over_other_classes_never_true_label():
    labels = [2] * 4000
    targets = draw_targets(labels, num_classes=5, seed=0)
    counts = Counter(targets)
    assert set(counts) == {0, 1, 3, 4}
    for cls in (0, 1, 3, 4):  # expected 1000 each, sd ≈ 27
        assert 850 < counts[cls] < 1150
    assert all(isinstance(t, int) for t in targets)


def test_draw_targets_every_other_class_reachable_for_each_label():
    labels = [k for k in range(10) for _ in range(200)]
    targets = draw_targets(labels, num_classes=10, seed=3)
    for label in range(10):
        reached = {t for true, t in zip(labels, targets) if true == label}
        assert reached == set(range(10)) - {label}


def test_draw_targets_deterministic_and_seed_sensitive():
    labels = list(range(10)) * 3
    assert draw_targets(labels, num_classes=10, seed=1) == draw_targets(labels, num_classes=10, seed=1)
    assert draw_targets(labels, num_classes=10, seed=1) != draw_targets(labels, num_classes=10, seed=2)
    assert draw_targets([], num_classes=10, seed=1) == []


@pytest.mark.parametrize("num_classes", [0, 1])
def test_draw_targets_needs_two_classes(num_classes):
    with pytest.raises(DatasetError, match=f"num_classes={num_classes}; need at least 2"):
        draw_targets([0], num_classes=num_classes, seed=0)


def test_explicit_num_classes_smaller_than_labels_is_rejected(tmp_path):
    root = make_folder(tmp_path, ["a"], labels_csv([("a", 5)]))
    with pytest.raises(DatasetError, match="num_classes"):
        load_dataset(root, num_classes=3)


# -- label file errors ------------------------------------------------------------------------------

def test_target_equal_to_true_label(tmp_path):
    root = make_folder(tmp_path, ["a", "b"], labels_csv([("a", 1, 2), ("b", 7, 7)], "ImageId,TrueLabel,TargetClass"))
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    assert str(info.value) == (f"{root / 'labels.csv'}:3: TargetClass equals TrueLabel (7); "
                               "a target must differ from the true label")


def test_images_without_labels_and_labels_without_images_all_listed(tmp_path):
    root = make_folder(tmp_path, ["a", "c", "d"], labels_csv([("a", 1), ("b", 1), ("e", 2)]))
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    message = str(info.value)
    assert f"2 labelled image(s) have no PNG in {root}: b, e" in message
    assert "2 PNG file(s) have no row in labels.csv: c, d" in message


def test_long_lists_are_previewed(tmp_path):
    extra = [f"x{k:02d}" for k in range(12)]
    root = make_folder(tmp_path, ["a"] + extra, labels_csv([("a", 1)]))
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    assert ("12 PNG file(s) have no row in labels.csv: x00, x01, x02, x03, x04, x05, x06, x07, x08, x09, "
            "… (2 more)") in str(info.value)


def test_duplicate_ids(tmp_path):
    root = make_folder(tmp_path, ["a"], labels_csv([("a", 1), ("a", 2)]))
    with pytest.raises(DatasetError, match=r"labels\.csv:3: ImageId 'a' is listed twice"):
        load_dataset(root)


@pytest.mark.parametrize("row, line, message", [
    ("a,cat", 2, "TrueLabel 'cat' is not an integer class index (ASCII digits 0-9 only)"),
    ("a,3.0", 2, "TrueLabel '3.0' is not an integer class index (ASCII digits 0-9 only)"),
    ("a,", 2, "TrueLabel '' is not an integer class index (ASCII digits 0-9 only)"),
    ("a,-1", 2, "TrueLabel '-1' is not an integer class index (ASCII digits 0-9 only)"),
])
def test_bad_true_labels_name_file_and_line(tmp_path, row, line, message):
    root = make_folder(tmp_path, ["a"], "ImageId,TrueLabel\n" + row + "\n")
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    assert str(info.value) == f"{root / 'labels.csv'}:{line}: {message}"


def test_bad_target_class_line_number_counts_blank_lines(tmp_path):
    text = "ImageId,TrueLabel,TargetClass\na,1,2\n\nb,1,two\n"
    root = make_folder(tmp_path, ["a", "b"], text)
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    assert str(info.value) == (f"{root / 'labels.csv'}:4: TargetClass 'two' is not an integer class index "
                               "(ASCII digits 0-9 only)")


def test_row_with_too_few_columns(tmp_path):
    root = make_folder(tmp_path, ["a"], "ImageId,TrueLabel,TargetClass\na\n")
    with pytest.raises(DatasetError, match=r"labels\.csv:2: 1 columns, expected at least 3"):
        load_dataset(root)


def test_header_lacking_columns(tmp_path):
    root = make_folder(tmp_path, ["a"], "Id,Label\na,1\n")
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    assert "lacks ImageId, TrueLabel" in str(info.value)
    assert "labels.csv" in str(info.value)


def test_empty_label_file(tmp_path):
    root = make_folder(tmp_path, ["a"], "")
    with pytest.raises(DatasetError, match=r"labels\.csv: empty label file"):
        load_dataset(root)


def test_header_only_label_file(tmp_path):
    root = make_folder(tmp_path, [], "ImageId,TrueLabel\n\n")
    with pytest.raises(DatasetError, match=r"labels\.csv: no images listed; the dataset is empty"):
        load_dataset(root)


def test_label_file_not_utf8(tmp_path):
    root = make_folder(tmp_path, ["a"], "")
    (root / "labels.csv").write_bytes(b"ImageId,TrueLabel\n\xff\xfe,1\n")
    with pytest.raises(DatasetError, match=r"cannot read label file"):
        load_dataset(root)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"input folder .*nowhere does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_folder_without_label_file(tmp_path):
    write_image(tmp_path / "a.png")
    with pytest.raises(DatasetError, match=r"no label file; add dev_dataset\.csv"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("image_id", ["a/b", "..", "../a", ".hidden", "/abs", "a b", "_x", "a\\b"])
def test_unsafe_image_ids_rejected(tmp_path, image_id):
    root = make_folder(tmp_path, [], labels_csv([(image_id, 1)]))
    with pytest.raises(DatasetError, match=r"labels\.csv:2: ImageId .* must be a plain file stem"):
        load_dataset(root)


# -- image errors -----------------------------------------------------------------------------------

def test_corrupt_png_names_the_file(tmp_path):
    root = make_folder(tmp_path, ["a", "bad"], labels_csv([("a", 1), ("bad", 2)]))
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    message = str(info.value)
    assert message.startswith(f"{root / 'bad.png'}: unreadable PNG")
    assert message.endswith("; replace or remove this image (and its label row)")


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_non_rgb_image(tmp_path, mode):
    root = make_folder(tmp_path, ["a"], labels_csv([("a", 1)]))
    write_image(root / "a.png", mode=mode)
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    assert str(info.value).startswith(f"{root / 'a.png'}: mode {mode}, expected RGB")


def test_jpeg_named_png(tmp_path):
    root = make_folder(tmp_path, ["a"], labels_csv([("a", 1)]))
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(root / "a.png", format="JPEG")
    with pytest.raises(DatasetError, match=r"a\.png: not a PNG file \(format JPEG\)"):
        load_dataset(root)


def test_images_may_differ_in_size(tmp_path):
    root = make_folder(tmp_path, ["a", "b"], labels_csv([("a", 1), ("b", 0)]))
    write_image(root / "b.png", size=(5, 4))
    records = load_dataset(root).by_id()
    assert (records["a"].height, records["a"].width) == (2, 3)
    assert (records["b"].height, records["b"].width) == (5, 4)


def test_non_png_files_are_ignored(tmp_path):
    root = make_folder(tmp_path, ["a"], labels_csv([("a", 1)]))
    (root / "notes.txt").write_text("hi")
    (root / "b.jpg").write_bytes(b"x")
    (root / "sub").mkdir()
    assert [r.image_id for r in load_dataset(root).images] == ["a"]


# -- content hash -----------------------------------------------------------------------------------

def test_content_hash_stable_and_sensitive(tmp_path):
    text = labels_csv([("a", 1, 2), ("b", 3, 0)], "ImageId,TrueLabel,TargetClass")
    root = make_folder(tmp_path / "one", ["a", "b"], text)
    base = load_dataset(root).content_hash
    assert len(base) == 64 and int(base, 16) >= 0
    assert load_dataset(root).content_hash == base
    # an identical copy elsewhere has the same hash (the root is not part of it)
    copy = make_folder(tmp_path / "two", ["a", "b"], text)
    assert load_dataset(copy).content_hash == base

    (root / "labels.csv").write_text(labels_csv([("a", 1, 2), ("b", 4, 0)], "ImageId,TrueLabel,TargetClass"))
    changed_label = load_dataset(root).content_hash
    assert changed_label != base

    (root / "labels.csv").write_text(labels_csv([("a", 1, 3), ("b", 4, 0)], "ImageId,TrueLabel,TargetClass"))
    changed_target = load_dataset(root).content_hash
    assert changed_target not in (base, changed_label)

    array = np.asarray(Image.open(root / "a.png")).copy()
    array[0, 0, 0] += 1
    Image.fromarray(array).save(root / "a.png")
    changed_pixel = load_dataset(root).content_hash
    assert changed_pixel not in (base, changed_label, changed_target)


def test_content_hash_hand_computed(tmp_path):
    root = make_folder(tmp_path, ["a"], labels_csv([("a", 1, 2)], "ImageId,TrueLabel,TargetClass"))
    file_hash = hashlib.sha256((root / "a.png").read_bytes()).hexdigest()
    expected = hashlib.sha256(f"a\t{file_hash}\t1\t2\n".encode()).hexdigest()
    assert load_dataset(root).content_hash == expected
