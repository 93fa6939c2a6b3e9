"""A participant's check of one submission folder: metadata, then a real run on a few images through the
same sandbox and referee as the competition, with every problem in plain words."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.dataset import load_dataset
from harness.devices import DevicePool, visible_gpus
from harness.execution import Runner
from harness.instance import Instance
from harness.limits import LimitPolicy
from harness.planning import DefenseUnit
from harness.records import RunRecord
from harness.sandboxes.base import SandboxKind
from harness.sandboxes.factory import probe
from harness.submission import SubmissionError, parse_submission
from harness.tracks import Track
from harness.workspace import Workspace
from submission_kit.contract import parse_epsilon, write_png


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_submission`.

    Attributes:
        lines: What was checked, in order, in plain words.
        problems: What the participant must fix (empty when the submission is fine).
    """

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


#: Classes of generated images: Inception-style 1001 outputs, labels and targets in 1..1000 (NIPS 2017).
GENERATED_CLASSES = 1001


def generate_images(folder: Path, *, count: int, size: int, seed: int = 0) -> Path:
    """Write ``count`` random ``size``×``size`` RGB PNGs and a ``labels.csv`` (TrueLabel in 1..1000) into
    ``folder``, as the NIPS 2017 validation tool generated 299×299 images to run a submission on.

    Returns:
        ``folder``.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["ImageId,TrueLabel"]
    for index in range(count):
        write_png(folder / f"generated{index:03d}.png", rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))
        rows.append(f"generated{index:03d},{int(rng.integers(1, GENERATED_CLASSES))}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def validate_submission(path: Path, *, input_dir: Path, images: int = 4, epsilon: int = 16, seed: int = 0,
                        policy: LimitPolicy | None = None, sandbox: SandboxKind = SandboxKind.AUTO,
                        image_size: int | None = None, metadata: Path | None = None,
                        only_present: bool = False) -> ValidationReport:
    """Check a submission folder and run it on the first ``images`` images of ``input_dir``.

    Args:
        path: The submission folder.
        input_dir: A dataset folder (e.g. ``sample_data``, whose images are 32×32).
        images: How many images to run on (≥ 1).
        epsilon: ε in 0–255 units for attacks.
        seed: Seed of the run.
        policy: Resource limits (default: the competition's).
        sandbox: How the process is isolated.
        image_size: If set, run on ``images`` generated random ``image_size``×``image_size`` images (labels
            1..1000, :func:`generate_images`) instead of ``input_dir`` (NIPS 2017 submissions take 299×299).
        metadata: The label file when it is not in ``input_dir`` (``--dataset_metadata``).
        only_present: Use the labelled images that have a PNG (``--only_present_images``).

    Returns:
        A :class:`ValidationReport`; a failed run on images of another size than the submission expects says
        which size it was given and the option to change it.
    """
    report = ValidationReport()
    try:
        submission = parse_submission(path)
    except SubmissionError as exc:
        report.problems.append(str(exc))
        return report
    report.lines.append(f"metadata: {submission.type.value}, entry point {submission.entry_point}")
    for warning in submission.warnings:
        report.lines.append(f"warning: {warning}")
    eps = parse_epsilon(epsilon)
    try:
        protections = probe(sandbox)
    except RuntimeError as exc:  # the requested sandbox cannot run here
        report.problems.append(f"{exc} (choose another --sandbox)")
        return report
    unenforced = protections.unenforced(policy or LimitPolicy())
    if unenforced:
        report.lines.append(f"note: not enforced here (no cgroup this user may create): {', '.join(unenforced)}")
    with tempfile.TemporaryDirectory(prefix="validate-") as tmp:
        if image_size is not None:
            input_dir = generate_images(Path(tmp) / "generated", count=max(1, images), size=image_size, seed=seed)
            dataset = load_dataset(input_dir, seed=seed, num_classes=GENERATED_CLASSES)
        else:
            dataset = load_dataset(input_dir, seed=seed, metadata=metadata, only_present=only_present)
        subset = replace(dataset, images=dataset.images[:max(1, images)])
        sizes = sorted({f"{r.width}×{r.height}" for r in subset.images})
        report.lines.append(f"input: {len(subset.images)} image(s) of {', '.join(sizes)} "
                            + ("generated (--image_size)" if image_size is not None else f"from {input_dir}"))
        size_hint = ("" if image_size is not None else
                     f" — the images it was given are {', '.join(sizes)}; if it expects another size (NIPS 2017 "
                     "submissions take 299×299), validate on generated images of that size: --image_size 299")
        workspace = Workspace(Path(tmp), Instance.create())
        runner = Runner(subset, workspace, seed=seed, batch_size=len(subset.images), jobs=1,
                        policy=policy or LimitPolicy(), devices=DevicePool(visible_gpus(), 1),
                        protections=protections)
        clean_versions = runner.clean_versions()
        if submission.type.is_attack:
            unit = runner.attack_units([submission], [eps])[0]
            record = runner.run_unit(unit, clean_versions)
            _report_run(report, record.run, workspace.root, size_hint)
            for image in record.images:
                if image.problem:
                    report.problems.append(f"{image.image_id}.png: {image.problem} "
                                           "(the clean image would be used)")
                elif image.note:
                    report.lines.append(f"note: {image.image_id}.png: {image.note}")
                if image.clipped_values and not image.problem:
                    report.problems.append(
                        f"{image.image_id}.png: {image.clipped_values} values outside the ε={eps} ball "
                        f"(largest violation {image.max_violation}); the referee clipped them")
            used = [i for i in record.images if not i.problem]
            changed = sum(1 for i in used if i.linf > 0)
            report.lines.append(f"attack outputs: {len(used)}/{len(record.images)} usable, {changed} differ "
                                f"from the clean image, largest L∞ distance "
                                f"{max((i.linf for i in used), default=0)} (ε = {eps})")
        else:
            assert submission.type is Track.DEFENSE
            versions = tuple(sorted(set(clean_versions.values())))
            defense_record = runner.run_unit(DefenseUnit(submission, versions, runner.version_of(submission)),
                                             clean_versions)
            _report_run(report, defense_record.run, workspace.root, size_hint)
            for note in defense_record.csv_notes:
                report.problems.append(f"output CSV: {note}")
            answers = defense_record.predictions
            missing = [a.problem for a in answers.values() if a.label is None]
            for problem in sorted(set(missing)):
                report.problems.append(f"output CSV: {missing.count(problem)} image(s): {problem}")
            correct = sum(1 for r in subset.images
                          if answers[clean_versions[r.image_id]].label == r.true_label)
            report.lines.append(f"predictions: {len(answers) - len(missing)}/{len(answers)} images labelled, "
                                f"{correct} correct on clean images")
        workspace.remove_scratch()
    return report


def _report_run(report: ValidationReport, run: RunRecord, root: Path, size_hint: str = "") -> None:
    report.lines.append(f"run: {run.seconds:.1f} s, exit code {run.exit_code}")
    if run.problem:
        log = (root / run.log).read_text(errors="replace")[-2000:] if (root / run.log).exists() else ""
        report.problems.append(f"the run failed: {run.problem}{size_hint}"
                               + (f"\n--- end of its log ---\n{log}" if log else ""))
