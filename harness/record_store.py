"""What a results folder's store keeps, under which keys, as typed values: the one reader and writer of store data.

Keys (below ``store/`` of the results folder, whatever :class:`harness.store.Store` holds them)::

    images/ab/<sha256>.png                   refereed images and clean images, content-addressed
    attack_runs/<key>.json                   one attack batch (:class:`harness.records.AttackUnitRecord`)
    defense_runs/<version[:32]>/<key>.json   one defense batch (:class:`harness.records.DefenseUnitRecord`)
    clean_versions/<dataset hash>.json       image id → pixel hash of a dataset's clean images
    key_scheme.json                          the unit-key scheme the stored work was keyed with

A unit's images are put before its record, and the record is put last in one write; a record that is absent,
unreadable, of another schema, or whose images are not all there reads as absent, so the unit is redone. No
rename is needed for that, so the store may be object storage.
"""

from __future__ import annotations

import json
from typing import Any

from harness.records import AttackUnitRecord, DefenseUnitRecord, RecordError
from harness.store import Store

__all__ = ["KEY_SCHEME_KEY", "RecordStore"]

#: Key of the marker naming the unit-key scheme.
KEY_SCHEME_KEY = "key_scheme.json"


def _json_bytes(value: Any) -> bytes:
    """Sorted, indented JSON, as every JSON file of a results folder."""
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode("utf-8")


class RecordStore:
    """Typed access to a :class:`harness.store.Store` of finished work.

    Args:
        objects: Where the objects live (:class:`harness.store.LocalStore` for a results folder).
    """

    def __init__(self, objects: Store) -> None:
        self.objects = objects

    def _json(self, key: str) -> object | None:
        """The JSON value under ``key``; None when absent or unreadable."""
        data = self.objects.get(key)
        if data is None:
            return None
        try:
            value: object = json.loads(data)
        except ValueError:  # a torn or foreign object: as if absent
            return None
        return value

    # -- images ---------------------------------------------------------------------------------------------
    @staticmethod
    def image_key(sha256: str) -> str:
        """Key of the image whose pixels hash to ``sha256``."""
        return f"images/{sha256[:2]}/{sha256}.png"

    def has_image(self, sha256: str) -> bool:
        return self.objects.exists(self.image_key(sha256))

    def image(self, sha256: str) -> bytes | None:
        """The PNG bytes of an image; None when the store does not hold it."""
        return self.objects.get(self.image_key(sha256))

    def put_image(self, data: bytes, sha256: str) -> None:
        """Store PNG bytes under their hash (no-op when present; not flushed to disk: a record whose image was lost
        reads as absent and its unit is redone)."""
        if not self.has_image(sha256):
            self.objects.put(self.image_key(sha256), data, durable=False)

    # -- unit records -----------------------------------------------------------------------------------------
    @staticmethod
    def attack_key(key: str) -> str:
        return f"attack_runs/{key}.json"

    @staticmethod
    def defense_key(defense_version: str, key: str) -> str:
        return f"defense_runs/{defense_version[:32]}/{key}.json"

    def attack_record(self, key: str) -> AttackUnitRecord | None:
        """The record of attack unit ``key``; None when absent, unreadable, of another schema, or when an image it
        points to is missing (the unit is then redone)."""
        value = self._json(self.attack_key(key))
        if not isinstance(value, dict):
            return None
        try:
            record = AttackUnitRecord.from_json(value)
        except RecordError:
            return None
        return record if all(self.has_image(image.version) for image in record.images) else None

    def put_attack_record(self, record: AttackUnitRecord) -> None:
        """Store an attack unit's record (its images must be stored already)."""
        self.objects.put(self.attack_key(record.key), _json_bytes(record.to_json()))

    def defense_record(self, defense_version: str, key: str) -> DefenseUnitRecord | None:
        """The record of defense unit ``key`` of a defense version; None when absent, unreadable or of another
        schema."""
        return self._defense_record(self.defense_key(defense_version, key))

    def _defense_record(self, object_key: str) -> DefenseUnitRecord | None:
        value = self._json(object_key)
        if not isinstance(value, dict):
            return None
        try:
            return DefenseUnitRecord.from_json(value)
        except RecordError:
            return None

    def put_defense_record(self, defense_version: str, record: DefenseUnitRecord) -> None:
        """Store a defense unit's record under its defense version (:meth:`harness.execution.Runner.version_of`)."""
        self.objects.put(self.defense_key(defense_version, record.key), _json_bytes(record.to_json()))

    def defense_records(self, defense_version: str) -> list[DefenseUnitRecord]:
        """Every readable batch record of a defense version, sorted by key (unreadable ones left out)."""
        keys = self.objects.list(f"defense_runs/{defense_version[:32]}/")
        records = (self._defense_record(key) for key in keys if key.endswith(".json"))
        return [record for record in records if record is not None]

    def holds_records(self) -> bool:
        """Whether any unit record is stored (a store some run wrote into)."""
        return bool(self.objects.list("attack_runs/") or self.objects.list("defense_runs/"))

    # -- clean images -------------------------------------------------------------------------------------------
    @staticmethod
    def clean_versions_key(dataset_hash: str) -> str:
        return f"clean_versions/{dataset_hash}.json"

    def clean_versions(self, dataset_hash: str) -> dict[str, str] | None:
        """Image id → pixel hash of a dataset's clean images; None when absent, unreadable or when an image it
        names is missing."""
        value = self._json(self.clean_versions_key(dataset_hash))
        if not isinstance(value, dict):
            return None
        versions = {str(image_id): str(version) for image_id, version in value.items()}
        return versions if all(self.has_image(v) for v in versions.values()) else None

    def put_clean_versions(self, dataset_hash: str, versions: dict[str, str]) -> None:
        """Store a dataset's clean-version map (its images must be stored already)."""
        self.objects.put(self.clean_versions_key(dataset_hash), _json_bytes(versions))

    # -- key scheme ---------------------------------------------------------------------------------------------
    def key_scheme(self) -> int | None:
        """The unit-key scheme the stored work was keyed with; None without a marker, 0 for an unreadable one."""
        data = self.objects.get(KEY_SCHEME_KEY)
        if data is None:
            return None
        try:
            return int(json.loads(data)["key_scheme"])
        except (ValueError, KeyError, TypeError):
            return 0

    def put_key_scheme(self, scheme: int) -> None:
        self.objects.put(KEY_SCHEME_KEY, _json_bytes({"key_scheme": scheme}))
