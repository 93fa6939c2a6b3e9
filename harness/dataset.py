"""The competition dataset: ``<ImageId>.png`` files plus their labels.

Two label files are understood, looked for in this order inside the input folder:

* ``dev_dataset.csv`` — the NIPS 2017 format (columns ImageId, URL, x1, y1, x2, y2, TrueLabel, TargetClass, …;
  only ImageId, TrueLabel and TargetClass are read, other columns are ignored);
* ``labels.csv`` — a minimal ``ImageId,TrueLabel[,TargetClass]`` file.

When TargetClass is absent, targets are drawn never equal to TrueLabel, from the results folder's secret in a
competition (:mod:`harness.secret`: a public seed would let a targeted attack recompute the draw and so the true
labels), from a seed otherwise; the draw is recorded in the dataset (and so in the per-image table).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import DatasetError as DatasetError  # re-exported: its old home
from harness.names import LABEL_PATTERN, shown
from harness.secret import derive_seed
from submission_kit.contract import ImageError, decode_png, sha256_bytes

#: Label files recognised in an input folder, in order of preference.
LABEL_FILES = ("dev_dataset.csv", "labels.csv")
_IMAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class ImageRecord:
    """One dataset image.

    Attributes:
        image_id: File stem; the image is ``<image_id>.png``.
        true_label: Ground-truth class index.
        target_class: Class targeted attacks aim for (≠ ``true_label``).
        sha256: Hex digest of the PNG file's bytes.
        height: Image height in pixels.
        width: Image width in pixels.
        source: The file's name on disk when it differs from :attr:`file_name` (``cifar10_00.PNG``); "" else.
            Submissions always see ``<image_id>.png``.
    """

    image_id: str
    true_label: int
    target_class: int
    sha256: str
    height: int
    width: int
    source: str = ""

    @property
    def file_name(self) -> str:
        """``<image_id>.png``."""
        return f"{self.image_id}.png"


@dataclass(frozen=True)
class Dataset:
    """Images and labels of one input folder.

    Attributes:
        root: The input folder.
        images: Records sorted by image id.
        label_file: The label file that was read.
        targets_drawn: True when TargetClass was absent and targets were drawn with ``seed``.
        num_classes: Number of classes targets were drawn from (labels lie in 0..num_classes−1).
        seed: Seed of the target draw (unused when ``targets_secret``).
        targets_secret: True when drawn targets came from a secret rather than ``seed``.
        left_out: Labelled images without a PNG that were left out (``only_present=True``), sorted.
    """

    root: Path
    images: tuple[ImageRecord, ...]
    label_file: str
    targets_drawn: bool
    num_classes: int
    seed: int
    targets_secret: bool = False
    left_out: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    def path(self, record: ImageRecord) -> Path:
        """Path of a record's PNG file."""
        return self.root / (record.source or record.file_name)

    def by_id(self) -> dict[str, ImageRecord]:
        """Records keyed by image id."""
        return {record.image_id: record for record in self.images}

    @property
    def content_hash(self) -> str:
        """SHA-256 over every image's id, bytes hash, true label and target class."""
        digest = hashlib.sha256()
        for record in self.images:
            digest.update(f"{record.image_id}\t{record.sha256}\t{record.true_label}\t"
                          f"{record.target_class}\n".encode())
        return digest.hexdigest()


def _read_label_rows(path: Path) -> list[tuple[int, str, str, str | None]]:
    """Rows of (line number, ImageId, TrueLabel, TargetClass or None) from a label CSV."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read label file ({exc})") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise DatasetError(f"{path}: empty label file; expected a header row ImageId,TrueLabel[,TargetClass]")
    columns = [name.strip() for name in header]
    missing = [name for name in ("ImageId", "TrueLabel") if name not in columns]
    if missing:
        raise DatasetError(f"{path}: header {','.join(columns)!r} lacks {', '.join(missing)}; "
                           "expected columns ImageId,TrueLabel[,TargetClass]")
    id_col, label_col = columns.index("ImageId"), columns.index("TrueLabel")
    target_col = columns.index("TargetClass") if "TargetClass" in columns else None
    rows = []
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        needed = max(id_col, label_col, target_col if target_col is not None else 0)
        if len(row) <= needed:
            raise DatasetError(f"{path}:{line_no}: {len(row)} columns, expected at least {needed + 1}")
        target = row[target_col].strip() if target_col is not None else None
        rows.append((line_no, row[id_col].strip(), row[label_col].strip(), target))
    return rows


def _parse_label(path: Path, line_no: int, column: str, value: str, num_classes: int | None = None) -> int:
    """A TrueLabel/TargetClass cell: ASCII digits only (see :func:`harness.names.parse_label`), within range."""
    if not LABEL_PATTERN.fullmatch(value):
        raise DatasetError(f"{path}:{line_no}: {column} {shown(value)} is not an integer class index "
                           "(ASCII digits 0-9 only)")
    label = int(value)
    if num_classes is not None and label >= num_classes:
        raise DatasetError(f"{path}:{line_no}: {column} {label} is outside the classes 0..{num_classes - 1}; "
                           f"pass --num_classes {label + 1} or more")
    return label


#: Inception-style classifiers (the NIPS 2017 models) have 1001 outputs: class 0 is the background class no
#: image has, and the organisers drew target classes from 1..1000.
BACKGROUND_CLASSES = 1001


def target_classes(num_classes: int) -> range:
    """The classes a target may be drawn from: the classes labels can take.

    Args:
        num_classes: Number of classifier outputs.

    Returns:
        ``range(1, 1001)`` for 1001 classes (class 0 is the background, NIPS 2017), else ``range(num_classes)``.
    """
    return range(1, num_classes) if num_classes == BACKGROUND_CLASSES else range(num_classes)


def draw_targets(true_labels: list[int], *, num_classes: int, seed: int) -> list[int]:
    """Draw a target class ≠ true label for every image, reproducibly.

    Args:
        true_labels: Class indices in 0..num_classes−1.
        num_classes: Number of classes (≥ 2).
        seed: Seed of the draw; the same seed and labels always give the same targets.

    Returns:
        One target per label, uniform over the other classes of :func:`target_classes` (1..1000 with 1001
        classes, as NIPS 2017 drew them).
    """
    classes = target_classes(num_classes)
    if len(classes) < 2:
        raise DatasetError(f"cannot draw target classes with num_classes={num_classes}; need at least 2")
    rng = np.random.default_rng(seed)
    count, first = len(classes), classes.start
    offsets = rng.integers(1, count, size=len(true_labels))
    return [int(first + (label - first + offset) % count) for label, offset in zip(true_labels, offsets, strict=True)]


def _locate(root: Path, metadata: Path | None) -> tuple[Path, Path]:
    """The image folder and the label file of an input folder.

    Besides ``<root>/*.png`` + ``<root>/dev_dataset.csv``, the NIPS 2017 development toolkit's layout is
    understood: images in ``dataset/images/`` and ``dataset/dev_dataset.csv`` beside that folder, whether
    ``root`` is ``dataset/`` or ``dataset/images/``; ``metadata`` (``--dataset_metadata``) names the label file.
    """
    if not root.is_dir():
        raise DatasetError(f"input folder {root} does not exist; pass --input_dir with a folder of "
                           "<ImageId>.png files and a dev_dataset.csv or labels.csv")
    if metadata is not None:
        if not metadata.is_file():
            raise DatasetError(f"label file {metadata} (--dataset_metadata) does not exist")
    images = root
    if not any(root.glob("*.[pP][nN][gG]")) and (root / "images").is_dir():
        images = root / "images"  # the dev toolkit's dataset/ folder
    if metadata is None:
        toolkit_parent = (images.parent,) if images.name == "images" else ()  # dataset/dev_dataset.csv
        for folder in dict.fromkeys((images, root, *toolkit_parent)):
            metadata = next((folder / name for name in LABEL_FILES if (folder / name).is_file()), None)
            if metadata is not None:
                break
    if metadata is None:
        raise DatasetError(f"{root}: no label file; add dev_dataset.csv (NIPS 2017 format) or labels.csv "
                           "with columns ImageId,TrueLabel[,TargetClass], or name it with --dataset_metadata")
    return images, metadata


def load_dataset(input_dir: str | Path, *, seed: int = 0, num_classes: int | None = None,
                 secret: bytes | None = None, metadata: Path | None = None, only_present: bool = False) -> Dataset:
    """Read and validate an input folder.

    Args:
        input_dir: Folder holding ``<ImageId>.png`` files and a label file (see :data:`LABEL_FILES`), or the
            NIPS 2017 dev toolkit's ``dataset/`` folder (images in ``images/``).
        seed: Seed for drawing target classes when the label file has none (and no ``secret`` is given).
        secret: Draw missing target classes from this secret instead of ``seed`` (:mod:`harness.secret`).
        num_classes: Classes to draw targets from; default ``max(TrueLabel) + 1`` (at least 2).
        metadata: The label file, when it is not inside ``input_dir`` (the toolkit's ``--dataset_metadata``).
        only_present: Run on the labelled images that have a PNG and record the others in
            :attr:`Dataset.left_out` (the NIPS 2017 download script skips failed downloads), instead of refusing.

    Returns:
        The :class:`Dataset`, images sorted by id. A PNG whose extension differs in case (``x.PNG``) is used
        as ``x.png``.

    Raises:
        DatasetError: Missing folder or label file, malformed rows, duplicate ids, images without labels or
            labels without images (all listed; names differing only in case are named), corrupt or non-RGB
            images, an empty dataset.
    """
    root, label_path = _locate(Path(input_dir), metadata)
    labels = _parse_label_rows(label_path, num_classes)
    on_disk, left_out = _match_files(root, label_path, labels, only_present)

    ids = sorted(labels)
    true_labels = [labels[i][0] for i in ids]
    given_targets = [labels[i][1] for i in ids]
    highest = max(true_labels + [t for t in given_targets if t is not None])
    if num_classes is None:
        num_classes = max(2, highest + 1)
    elif highest >= num_classes:
        raise DatasetError(f"{label_path}: labels go up to {highest}, but num_classes is {num_classes}; "
                           f"pass --num_classes {highest + 1} or more")
    targets_drawn = any(t is None for t in given_targets)
    if targets_drawn:
        draw_seed = seed if secret is None else derive_seed(secret, "target-classes")
        drawn = draw_targets(true_labels, num_classes=num_classes, seed=draw_seed)
        targets = [given if given is not None else new for given, new in zip(given_targets, drawn, strict=True)]
    else:
        targets = [t for t in given_targets if t is not None]

    records = [_read_image(root / on_disk[image_id], image_id, true_label, target)
               for image_id, true_label, target in zip(ids, true_labels, targets, strict=True)]
    return Dataset(root=root, images=tuple(records), label_file=label_path.name, targets_drawn=targets_drawn,
                   num_classes=num_classes, seed=seed, targets_secret=targets_drawn and secret is not None,
                   left_out=left_out)


def _parse_label_rows(label_path: Path, num_classes: int | None) -> dict[str, tuple[int, int | None]]:
    """ImageId → (TrueLabel, TargetClass or None) of a label file, every row checked (DatasetError naming the line)."""
    rows = _read_label_rows(label_path)
    if not rows:
        raise DatasetError(f"{label_path}: no images listed; the dataset is empty")
    labels: dict[str, tuple[int, int | None]] = {}
    for line_no, image_id, true_text, target_text in rows:
        if not _IMAGE_ID.fullmatch(image_id):
            raise DatasetError(f"{label_path}:{line_no}: ImageId {shown(image_id)} must be a plain file stem "
                               "(letters, digits, '_', '-', '.')")
        if image_id in labels:
            raise DatasetError(f"{label_path}:{line_no}: ImageId {shown(image_id)} is listed twice")
        true_label = _parse_label(label_path, line_no, "TrueLabel", true_text, num_classes)
        target = None
        if target_text not in (None, ""):
            target = _parse_label(label_path, line_no, "TargetClass", target_text, num_classes)
            if target == true_label:
                raise DatasetError(f"{label_path}:{line_no}: TargetClass equals TrueLabel ({target}); "
                                   "a target must differ from the true label")
        labels[image_id] = (true_label, target)
    return labels


def _match_files(root: Path, label_path: Path, labels: dict[str, tuple[int, int | None]], only_present: bool
                 ) -> tuple[dict[str, str], tuple[str, ...]]:
    """Pair labelled ids with PNG files: (stem → file name, ids left out). With ``only_present`` the labelled ids
    without a PNG are removed from ``labels`` and returned as left out; otherwise any mismatch raises DatasetError."""
    # stem → file name; "x.PNG" stands for "x.png" when there is no "x.png" (the extension's case is safe to
    # ignore: submissions are given the file as "x.png"; a stem differing in case is only named, never guessed).
    on_disk: dict[str, str] = {}
    for path in sorted(root.iterdir(), key=lambda p: (p.suffix != ".png", p.name)):
        if path.suffix.lower() == ".png" and path.is_file():
            on_disk.setdefault(path.stem, path.name)
    unlabeled = sorted(on_disk.keys() - labels.keys())
    missing = sorted(labels.keys() - on_disk.keys())
    left_out: tuple[str, ...] = ()
    if missing and only_present and not unlabeled and len(missing) < len(labels):
        left_out, missing = tuple(missing), []
        for image_id in left_out:
            del labels[image_id]
    if unlabeled or missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} labelled image(s) have no PNG in {root}: {_preview(missing)}"
                         + _case_hint(missing, unlabeled, on_disk)
                         + ("" if unlabeled or len(missing) == len(labels) else
                            "; pass --only_present_images to run on the labelled images present"))
        if unlabeled:
            parts.append(f"{len(unlabeled)} PNG file(s) have no row in {label_path.name}: {_preview(unlabeled)}")
        raise DatasetError("; ".join(parts))
    return on_disk, left_out


def _read_image(path: Path, image_id: str, true_label: int, target: int) -> ImageRecord:
    """The record of one dataset image, decoded to check it (DatasetError naming the file when it cannot be)."""
    try:
        data = path.read_bytes()
        image = decode_png(data, what=str(path))
    except (OSError, ImageError) as exc:
        raise DatasetError(f"{exc}; replace or remove this image (and its label row)") from None
    return ImageRecord(image_id=image_id, true_label=true_label, target_class=target, sha256=sha256_bytes(data),
                       height=image.shape[0], width=image.shape[1],
                       source="" if path.name == f"{image_id}.png" else path.name)


def _case_hint(missing: list[str], unlabeled: list[str], on_disk: dict[str, str]) -> str:
    """" (file 'Img0.png' differs only in case from 'img0')" for the first missing id with such a file."""
    lowered = {stem.lower(): stem for stem in unlabeled}
    for image_id in missing:
        if image_id.lower() in lowered:
            found = on_disk[lowered[image_id.lower()]]
            return (f" (file {found!r} differs only in case from ImageId {image_id!r}; rename the file or fix "
                    "the row — names are case-sensitive)")
    return ""


def _preview(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")
