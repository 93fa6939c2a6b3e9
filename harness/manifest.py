"""``manifest.json``: what a run was, as a typed, schema-versioned record (like the unit records of
:mod:`harness.records`).

Written once at the end of a run (:func:`harness.competition.run_competition`) and read back by ``score``, the
report and the checks of a reused results folder, always through :class:`Manifest` (:meth:`Manifest.to_json` /
:meth:`Manifest.from_json`; :class:`harness.results_folder.ResultsFolder` reads and writes the file). The JSON is
the one earlier harnesses wrote plus ``"schema"``; a manifest written before a field existed reads with that
field's default (before ``"schema"``: schema 0, the same layout), so every results folder made before still reads.

Sub-documents that other modules describe (``environment``, ``limits``, ``cpu_shares``, ``protections``,
``workers``, ``worker_events``, ``platform``) are kept as the JSON objects those modules give; the rest is typed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ManifestError as ManifestError  # re-exported: its old home
from harness.tracks import AttackRole, Track

__all__ = ["SCHEMA", "DatasetEntry", "Manifest", "ManifestError", "SkippedEntry", "SubmissionEntry"]

#: Version of the manifest layout; bump when a field changes meaning or shape. 0: written before this field.
SCHEMA = 1

#: Key scheme of a manifest without ``key_scheme`` (written before it was recorded).
_FIRST_KEY_SCHEME = 1


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"manifest: {name} must be a string, got {value!r}")
    return value


def _integer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"manifest: {name} must be an integer, got {value!r}")
    return value


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"manifest: {name} must be a number, got {value!r}")
    return value  # an int stays one: written back, the file keeps its bytes


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"manifest: {name} must be a JSON object, got {type(value).__name__}")
    return value


def _list(value: object, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ManifestError(f"manifest: {name} must be a list, got {type(value).__name__}")
    return value


def _optional(value: Mapping[str, Any], key: str, default: Any, parse: Any, name: str) -> Any:
    """``parse(value[key], name)``, or ``default`` when the key is absent (null counts as absent for optional
    numbers and objects, as earlier harnesses wrote it)."""
    if key not in value or value[key] is None:
        return default
    return parse(value[key], name)


@dataclass(frozen=True)
class DatasetEntry:
    """The dataset a run used (``"dataset"``).

    Attributes:
        root: Its folder.
        content_hash: SHA-256 over its labels and images (a reused results folder must hold the same).
        images: Images run on.
        label_file: The label file's name.
        targets_drawn: Target classes were drawn (the label file had none).
        targets_from_secret: The draw was seeded by the results folder's secret.
        num_classes: Classes of the draw.
        left_out: Labelled images without a PNG, left out (``--only_present_images``).
    """

    root: str = ""
    content_hash: str = ""
    images: int = 0
    label_file: str = ""
    targets_drawn: bool = False
    targets_from_secret: bool = False
    num_classes: int = 0
    left_out: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"root": self.root, "content_hash": self.content_hash, "images": self.images,
                "label_file": self.label_file, "targets_drawn": self.targets_drawn,
                "targets_from_secret": self.targets_from_secret, "num_classes": self.num_classes,
                "left_out": list(self.left_out)}

    @classmethod
    def from_json(cls, value: object) -> DatasetEntry:
        """Inverse of :meth:`to_json`; missing keys take their defaults.

        Raises:
            ManifestError: A mistyped field.
        """
        value = _object(value, "dataset")
        return cls(root=_optional(value, "root", "", _text, "dataset.root"),
                   content_hash=_optional(value, "content_hash", "", _text, "dataset.content_hash"),
                   images=_optional(value, "images", 0, _integer, "dataset.images"),
                   label_file=_optional(value, "label_file", "", _text, "dataset.label_file"),
                   targets_drawn=bool(value.get("targets_drawn", False)),
                   targets_from_secret=bool(value.get("targets_from_secret", False)),
                   num_classes=_optional(value, "num_classes", 0, _integer, "dataset.num_classes"),
                   left_out=tuple(_text(v, "dataset.left_out[]")
                                  for v in _optional(value, "left_out", [], _list, "dataset.left_out")))


@dataclass(frozen=True)
class SubmissionEntry:
    """One submission of the run (an entry of ``"submissions"``).

    Attributes:
        name: Submission (folder) name.
        track: Its track (``"type"`` in the JSON).
        entry_point: Entry point, relative to its folder.
        content_hash: SHA-256 of the folder.
        container: Docker image ("" when none).
        container_gpu: GPU docker image ("" when none).
        path: The folder.
        targets_defense: Attacks: the defense it was written against ("" when none; the key is left out then).
        role: Attacks: its :class:`~harness.tracks.AttackRole` (None when none; left out then).
        iterates: Attacks: the single-step attack this iterative one repeats ("" when none; left out then).
    """

    name: str
    track: Track
    entry_point: str = ""
    content_hash: str = ""
    container: str = ""
    container_gpu: str = ""
    path: str = ""
    targets_defense: str = ""
    role: AttackRole | None = None
    iterates: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; the optional metadata keys only when set (NIPS 2017 metadata: none)."""
        optional = {"targets_defense": self.targets_defense, "role": self.role.value if self.role else "",
                    "iterates": self.iterates}
        return {"name": self.name, "type": self.track.value, "entry_point": self.entry_point,
                "content_hash": self.content_hash, "container": self.container, "container_gpu": self.container_gpu,
                "path": self.path, **{key: text for key, text in optional.items() if text}}

    @classmethod
    def from_json(cls, value: object) -> SubmissionEntry:
        """Inverse of :meth:`to_json`; ``name`` and ``type`` are required, the rest default.

        Raises:
            ManifestError: A missing name or type, an unknown type or role, or a mistyped field.
        """
        value = _object(value, "submissions[]")
        where = f"submissions[{value.get('name')!r}]"
        try:
            track = Track(_text(value.get("type"), f"{where}.type"))
            role = AttackRole(_text(value["role"], f"{where}.role")) if value.get("role") else None
        except ValueError as exc:
            raise ManifestError(f"manifest: {where}: {exc}") from None
        strings = {key: _optional(value, key, "", _text, f"{where}.{key}")
                   for key in ("entry_point", "content_hash", "container", "container_gpu", "path",
                               "targets_defense", "iterates")}
        return cls(name=_text(value.get("name"), f"{where}.name"), track=track, role=role, **strings)


@dataclass(frozen=True)
class SkippedEntry:
    """A submission folder discovery skipped, and why (an entry of ``"skipped"``)."""

    path: str
    problem: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"path": self.path, "problem": self.problem}

    @classmethod
    def from_json(cls, value: object) -> SkippedEntry:
        """Inverse of :meth:`to_json` (raises :class:`ManifestError` on a mistyped field)."""
        value = _object(value, "skipped[]")
        return cls(path=_optional(value, "path", "", _text, "skipped[].path"),
                   problem=_optional(value, "problem", "", _text, "skipped[].problem"))


def _seconds(value: object, name: str) -> dict[str, float]:
    return {str(kind): _number(seconds, f"{name}.{kind}") for kind, seconds in _object(value, name).items()}


def _counts(value: object, name: str) -> dict[str, int]:
    return {str(kind): _integer(count, f"{name}.{kind}") for kind, count in _object(value, name).items()}


@dataclass(frozen=True)
class Manifest:
    """What a run was (``manifest.json``).

    Attributes:
        schema: :data:`SCHEMA` when written by this harness; 0 for a manifest written before the field.
        harness_version: The harness's version.
        key_scheme: The unit-key scheme (:data:`harness.library.KEY_SCHEME`); 1 for manifests before it.
        environment: The environment fingerprint (:meth:`harness.library.Fingerprint.describe`).
        seed: The run's seed.
        secret_sha256: SHA-256 of the results folder's secret.
        epsilons: ε values, 0-255 units, ascending.
        batch_size: Images per batch.
        jobs: Runs at once (None on a cluster).
        limits: The limit policy (:class:`harness.limits.LimitPolicy` as a dict).
        cpu_shares: Each parallel run's enforced CPU share (None on a cluster; [] when runs ran one at a time).
        protections: The sandbox (:meth:`harness.sandboxes.base.Protections.describe`).
        unenforced_limits: Limits the sandbox could not enforce.
        dataset: The dataset.
        submissions: The submissions that ran, in discovery order.
        skipped: Submission folders skipped, with the reason.
        executed_units: Units run now, per kind (``"attack"``, ``"defense"``).
        reused_units: Units taken from the store, per kind.
        gpus: GPUs visible to the harness.
        workers: On a cluster: worker address → its description; None otherwise (key left out).
        worker_events: On a cluster: workers that joined or left; None otherwise (key left out).
        scheduling_seconds: On a cluster: the driver's scheduling seconds per stage; None otherwise (key left
            out).
        platform: Python version and operating system.
        started: Start time, ``YYYY-MM-DDTHH:MM:SSZ``.
        wall_seconds: Wall time of the whole run.
        submission_seconds: Seconds inside the submissions' processes that ran now.
    """

    harness_version: str = ""
    key_scheme: int = _FIRST_KEY_SCHEME
    environment: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    secret_sha256: str = ""
    epsilons: tuple[int, ...] = ()
    batch_size: int | None = None
    jobs: int | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)
    cpu_shares: Sequence[Mapping[str, Any]] | None = None
    protections: Mapping[str, Any] = field(default_factory=dict)
    unenforced_limits: tuple[str, ...] = ()
    dataset: DatasetEntry = field(default_factory=DatasetEntry)
    submissions: tuple[SubmissionEntry, ...] = ()
    skipped: tuple[SkippedEntry, ...] = ()
    executed_units: Mapping[str, int] = field(default_factory=dict)
    reused_units: Mapping[str, int] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()
    workers: Mapping[str, Any] | None = None
    worker_events: Sequence[Mapping[str, Any]] | None = None
    scheduling_seconds: Mapping[str, float] | None = None
    platform: Mapping[str, Any] = field(default_factory=dict)
    started: str = ""
    wall_seconds: float = 0.0
    submission_seconds: float = 0.0
    schema: int = SCHEMA

    # -- views ------------------------------------------------------------------------------------------------
    @property
    def defenses(self) -> list[str]:
        """Defense names, in manifest order."""
        return [s.name for s in self.submissions if s.track is Track.DEFENSE]

    @property
    def attacks(self) -> list[tuple[str, Track]]:
        """(name, track) of every attack, targeted ones included, in manifest order."""
        return [(s.name, s.track) for s in self.submissions if s.track.is_attack]

    def aims(self) -> dict[str, str]:
        """Attack name → the defense it is aimed at (``targets_defense``; attacks without one are absent)."""
        return {s.name: s.targets_defense for s in self.submissions if s.targets_defense}

    # -- JSON -------------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with ``"schema"``; the cluster keys only on a cluster."""
        value: dict[str, Any] = {
            "schema": self.schema, "harness_version": self.harness_version, "key_scheme": self.key_scheme,
            "environment": dict(self.environment), "seed": self.seed, "secret_sha256": self.secret_sha256,
            "epsilons": list(self.epsilons), "batch_size": self.batch_size, "jobs": self.jobs,
            "limits": dict(self.limits),
            "cpu_shares": None if self.cpu_shares is None else [dict(share) for share in self.cpu_shares],
            "protections": dict(self.protections), "unenforced_limits": list(self.unenforced_limits),
            "dataset": self.dataset.to_json(), "submissions": [s.to_json() for s in self.submissions],
            "skipped": [s.to_json() for s in self.skipped], "executed_units": dict(self.executed_units),
            "reused_units": dict(self.reused_units), "gpus": list(self.gpus)}
        if self.workers is not None:
            value.update(workers=dict(self.workers), worker_events=[dict(e) for e in self.worker_events or ()],
                         scheduling_seconds=dict(self.scheduling_seconds or {}))
        value.update(platform=dict(self.platform), started=self.started, wall_seconds=self.wall_seconds,
                     submission_seconds=self.submission_seconds)
        return value

    @classmethod
    def from_json(cls, value: object) -> Manifest:
        """Inverse of :meth:`to_json`. Keys a manifest lacks (written before they existed) take their defaults;
        unknown keys are ignored.

        Raises:
            ManifestError: Not a JSON object, a newer schema, or a mistyped field.
        """
        value = _object(value, "the manifest")
        schema = _optional(value, "schema", 0, _integer, "schema")
        if schema > SCHEMA:
            raise ManifestError(f"manifest: schema {schema}, this harness reads schema {SCHEMA} and older; use a "
                                "newer harness")
        cluster = "workers" in value
        return cls(
            schema=schema,
            harness_version=_optional(value, "harness_version", "", _text, "harness_version"),
            key_scheme=_optional(value, "key_scheme", _FIRST_KEY_SCHEME, _integer, "key_scheme"),
            environment=_optional(value, "environment", {}, _object, "environment"),
            seed=_optional(value, "seed", None, _integer, "seed"),
            secret_sha256=_optional(value, "secret_sha256", "", _text, "secret_sha256"),
            epsilons=tuple(_integer(e, "epsilons[]") for e in _optional(value, "epsilons", [], _list, "epsilons")),
            batch_size=_optional(value, "batch_size", None, _integer, "batch_size"),
            jobs=_optional(value, "jobs", None, _integer, "jobs"),
            limits=_optional(value, "limits", {}, _object, "limits"),
            cpu_shares=_optional(value, "cpu_shares", None, _list, "cpu_shares"),
            protections=_optional(value, "protections", {}, _object, "protections"),
            unenforced_limits=tuple(_text(v, "unenforced_limits[]")
                                    for v in _optional(value, "unenforced_limits", [], _list, "unenforced_limits")),
            dataset=DatasetEntry.from_json(value.get("dataset", {})),
            submissions=tuple(SubmissionEntry.from_json(s)
                              for s in _optional(value, "submissions", [], _list, "submissions")),
            skipped=tuple(SkippedEntry.from_json(s) for s in _optional(value, "skipped", [], _list, "skipped")),
            executed_units=_optional(value, "executed_units", {}, _counts, "executed_units"),
            reused_units=_optional(value, "reused_units", {}, _counts, "reused_units"),
            gpus=tuple(_text(g, "gpus[]") for g in _optional(value, "gpus", [], _list, "gpus")),
            workers=_optional(value, "workers", {}, _object, "workers") if cluster else None,
            worker_events=_optional(value, "worker_events", [], _list, "worker_events") if cluster else None,
            scheduling_seconds=_optional(value, "scheduling_seconds", {}, _seconds, "scheduling_seconds")
            if cluster else None,
            platform=_optional(value, "platform", {}, _object, "platform"),
            started=_optional(value, "started", "", _text, "started"),
            wall_seconds=_optional(value, "wall_seconds", 0.0, _number, "wall_seconds"),
            submission_seconds=_optional(value, "submission_seconds", 0.0, _number, "submission_seconds"))
