"""The results folder (``--output_dir``): every path and file name in it, in one place.

Layout (``docs/results_layout.md`` says what each file holds)::

    manifest.json            what the run was (:class:`harness.manifest.Manifest`)
    secret.key               the folder's secret (:mod:`harness.secret`)
    leaderboard.csv, timings.csv, accuracy_matrix.csv, targeted_hit_matrix.csv, worst_case.csv,
    per_image.parquet, per_image.csv (small competitions), attack_images.csv, runs.csv
    logs/attacks/<attack>/eps<ε>/<key[:2]>/<key[:12]>.log, logs/defenses/<defense>/<key[:2]>/<key[:12]>.log,
    logs/cluster.log         (runs stored before issue 30 keep their logs where they were written:
                             logs/attacks/<attack>/eps<ε>_<key[:12]>.log, logs/defenses/<defense>/<key[:12]>.log)
    store/                   finished units and refereed images (:class:`harness.record_store.RecordStore` owns
                             what is below)
    report/                  the HTML report (:mod:`harness.html_report`)
    tmp/                     scratch folders when there is no ``/dev/shm`` (:mod:`harness.workspace`)

Other modules ask a :class:`ResultsFolder` for a path instead of joining names themselves; the store's own keys
(below ``store/``) belong to :class:`harness.record_store.RecordStore`, so that the store can live elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.manifest import Manifest, ManifestError
from harness.record_store import RecordStore
from harness.store import LocalStore, atomic_write_text

__all__ = ["ACCURACY_MATRIX", "ATTACK_IMAGES", "LEADERBOARD", "MANIFEST", "PER_IMAGE", "PER_IMAGE_PARQUET",
           "REPORT_DIR", "RUNS", "SECRET_FILE", "TARGETED_HIT_MATRIX", "TIMINGS", "WORST_CASE", "ResultsFolder"]

MANIFEST = "manifest.json"
SECRET_FILE = "secret.key"
LEADERBOARD = "leaderboard.csv"
TIMINGS = "timings.csv"
ACCURACY_MATRIX = "accuracy_matrix.csv"
TARGETED_HIT_MATRIX = "targeted_hit_matrix.csv"
WORST_CASE = "worst_case.csv"
PER_IMAGE = "per_image.csv"
PER_IMAGE_PARQUET = "per_image.parquet"
ATTACK_IMAGES = "attack_images.csv"
RUNS = "runs.csv"
#: The report's folder.
REPORT_DIR = "report"
_LOGS = "logs"
_STORE = "store"
_SCRATCH = "tmp"
#: The tables a finished run leaves (what ``score`` and ``report`` read besides the manifest).
TABLES = (ATTACK_IMAGES, RUNS)


@dataclass(frozen=True)
class ResultsFolder:
    """One results folder.

    Attributes:
        root: The folder (``--output_dir``); nothing is created by making this object.
    """

    root: Path

    # -- files at the top ------------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        """A file at the top of the folder, by one of this module's names (:data:`LEADERBOARD`, ...)."""
        return self.root / name

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def secret(self) -> Path:
        return self.root / SECRET_FILE

    def missing_tables(self) -> list[str]:
        """Names of the tables and manifest of a finished run that are not here ([] when all are)."""
        missing = [name for name in (*TABLES, MANIFEST) if not (self.root / name).is_file()]
        if not (self.root / PER_IMAGE_PARQUET).is_file() and not (self.root / PER_IMAGE).is_file():
            missing.insert(0, PER_IMAGE_PARQUET)  # a folder written before Parquet has per_image.csv only
        return missing

    # -- the manifest ----------------------------------------------------------------------------------------
    def read_manifest(self) -> Manifest | None:
        """The folder's manifest; None when there is none.

        Raises:
            ManifestError: It exists but cannot be read, is not JSON, or does not hold a manifest this harness
                reads (:meth:`harness.manifest.Manifest.from_json`).
        """
        try:
            text = self.manifest.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{self.manifest}: unreadable ({exc})") from None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"{self.manifest}: not JSON ({exc})") from None
        return Manifest.from_json(value)

    def write_manifest(self, manifest: Manifest) -> None:
        """Write ``manifest.json`` atomically: sorted keys, indent 1, as every JSON file of the folder."""
        atomic_write_text(self.manifest, json.dumps(manifest.to_json(), indent=1, sort_keys=True) + "\n")

    # -- folders ---------------------------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.root / _LOGS

    @property
    def store_root(self) -> Path:
        return self.root / _STORE

    def store(self) -> RecordStore:
        """The store of finished work: :class:`harness.record_store.RecordStore` over a
        :class:`harness.store.LocalStore` on :attr:`store_root`."""
        return RecordStore(LocalStore(self.store_root))

    @property
    def report(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def local_scratch(self) -> Path:
        """Where scratch folders go when ``/dev/shm`` cannot be used."""
        return self.root / _SCRATCH

    def stale_temporaries(self) -> list[Path]:
        """Half-written files a killed harness left (``.<name>.<random>.tmp`` of an atomic write), anywhere."""
        return sorted(self.root.rglob(".*.tmp"))

    def discarded_by_force(self) -> tuple[Path, ...]:
        """The folders ``--force`` deletes before a run (stored work and logs)."""
        return self.store_root, self.logs

    # -- logs (names relative to the folder, as run records and ``runs.csv`` hold them) ----------------------
    # Sharded by the key's first two hex digits (256 folders), so that no folder holds more than 4,096 logs up to
    # a million batches of one attack at one ε, or of one defense. A run record names its log, so logs written
    # under the earlier names (no shard folder) stay where they are and are still found.
    @staticmethod
    def attack_log(attack: str, epsilon: int, key: str) -> str:
        """Relative name of the log of one attack batch: ``logs/attacks/<attack>/eps<ε>/<key[:2]>/<key[:12]>.log``."""
        return f"{_LOGS}/attacks/{attack}/eps{epsilon}/{key[:2]}/{key[:12]}.log"

    @staticmethod
    def defense_log(defense: str, key: str) -> str:
        """Relative name of the log of one defense batch: ``logs/defenses/<defense>/<key[:2]>/<key[:12]>.log``."""
        return f"{_LOGS}/defenses/{defense}/{key[:2]}/{key[:12]}.log"

    #: Relative name of the plain progress log of a cluster run.
    CLUSTER_LOG = f"{_LOGS}/cluster.log"

    def path(self, relative: str) -> Path:
        """The path of a relative name of this module's (a log name of a run record)."""
        return self.root / relative
