"""What a results folder's store keeps, under which keys, as typed values: the one reader and writer of store data.

Keys (below ``store/`` of the results folder, whatever :class:`harness.store.Store` holds them), layout
:data:`LAYOUT` (2)::

    images/ab/cd/<sha256>.png                    refereed and clean images, content-addressed (ab, cd: its first
                                                 four hex digits)
    attack_runs/<key[:2]>/<key>.json             one attack batch (:class:`harness.records.AttackUnitRecord`)
    defense_runs/<version[:32]>/<key[:2]>/<key>.json
                                                 one defense batch (:class:`harness.records.DefenseUnitRecord`)
    clean_versions/<dataset hash>.json           image id → pixel hash of a dataset's clean images
    key_scheme.json                              the unit-key scheme the stored work was keyed with
    layout.json                                  {"layout": 2}: every object is under the keys above

No folder holds more than 4,096 entries up to 268 M images (65,536 image folders), 1 M attack batches and 1 M
batches per defense version (256 folders of each). Layout 1 (before issue 30, no ``layout.json``) kept images under
``images/ab/<sha256>.png``, attack records under ``attack_runs/<key>.json`` and defense records under
``defense_runs/<version[:32]>/<key>.json``; :meth:`RecordStore.migrate` moves them in place, and until a store says
layout 2 every read falls back to those keys, so a store of layout 1 (or one half migrated) is read whole.

A unit's images are put before its record, and the record is put last in one write; a record that is absent,
unreadable, of another schema, or whose images are not all there reads as absent, so the unit is redone. No
rename is needed for that, so the store may be object storage. A record's head (:class:`harness.records.AttackHead`,
:class:`harness.records.DefenseHead`) is read without its body (:meth:`RecordStore.attack_head`,
:meth:`RecordStore.defense_heads`), so that a resume reads a body only for a unit it reuses.
"""

from __future__ import annotations

import json
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from harness.records import (
    AttackHead,
    AttackUnitRecord,
    DefenseHead,
    DefenseUnitRecord,
    Head,
    Record,
    RecordError,
    decode_columns,
    decode_head,
    decode_record,
    encode_record,
)
from harness.store import MovingStore, Store
from harness.store_migration import move_legacy_objects

__all__ = ["HEAD_BYTES", "KEY_SCHEME_KEY", "LAYOUT", "LAYOUT_KEY", "ImageIndex", "RecordStore"]

#: Key of the marker naming the unit-key scheme.
KEY_SCHEME_KEY = "key_scheme.json"
#: Key of the marker naming the store's layout.
LAYOUT_KEY = "layout.json"
#: The layout this module writes (see the module's docstring); a store without a marker is of layout 1.
LAYOUT = 2
#: How many bytes of a record are read for its head (a head is ~0.5-2 KB; a longer one is read with the record).
HEAD_BYTES = 16384

_Head = TypeVar("_Head", AttackHead, DefenseHead)


def _json_bytes(value: Any) -> bytes:
    """Sorted, indented JSON, as every JSON file of a results folder."""
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _image_bits(sha256: str) -> int:
    """The 64 bits of an image hash after its folder's 16 (what a folder listing is remembered by)."""
    return int(sha256[4:20], 16)


class RecordStore:
    """Typed access to a :class:`harness.store.Store` of finished work.

    Thread-safe (it keeps no state but whether the store is marked as migrated).

    Args:
        objects: Where the objects live (:class:`harness.store.LocalStore` for a results folder).
    """

    def __init__(self, objects: Store) -> None:
        self.objects = objects
        self._migrated = False  # True once layout.json says LAYOUT: no fallback to layout 1's keys

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

    # -- layout -----------------------------------------------------------------------------------------------
    def layout(self) -> int:
        """The store's layout: :data:`LAYOUT` when ``layout.json`` says so, 1 without a marker (a store of layout
        1, or a new one nothing marked yet), 0 for an unreadable marker."""
        if self._migrated:
            return LAYOUT
        data = self.objects.get(LAYOUT_KEY)
        if data is None:
            return 1
        try:
            layout = int(json.loads(data)["layout"])
        except (ValueError, KeyError, TypeError):
            return 0
        if layout == LAYOUT:
            self._migrated = True
        return layout

    def _fallback(self) -> bool:
        """Whether reads may find an object under layout 1's key (the store is not marked as migrated)."""
        return self.layout() != LAYOUT

    def _get(self, key: str, old_key: str, max_bytes: int | None = None) -> bytes | None:
        """The object under ``key``, or under layout 1's ``old_key`` while the store may hold one there. The new
        key is tried again after the old one, so an object moved in between (a migration running beside this
        reader) is found."""
        data = self.objects.get(key, max_bytes=max_bytes)
        if data is None and self._fallback():
            data = self.objects.get(old_key, max_bytes=max_bytes)
            if data is None:
                data = self.objects.get(key, max_bytes=max_bytes)
        return data

    def _exists(self, key: str, old_key: str) -> bool:
        if self.objects.exists(key):
            return True
        return self._fallback() and (self.objects.exists(old_key) or self.objects.exists(key))

    # -- images ---------------------------------------------------------------------------------------------
    @staticmethod
    def image_key(sha256: str) -> str:
        """Key of the image whose pixels hash to ``sha256`` (64 hex digits)."""
        return f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.png"

    @staticmethod
    def legacy_image_key(sha256: str) -> str:
        """Layout 1's key of that image."""
        return f"images/{sha256[:2]}/{sha256}.png"

    def has_image(self, sha256: str) -> bool:
        """Whether the store holds the image (one lookup)."""
        return self._exists(self.image_key(sha256), self.legacy_image_key(sha256))

    def images_held(self) -> ImageIndex:
        """A checker of many images at once by folder listings (:class:`ImageIndex`); use one per pass."""
        return ImageIndex(self)

    def image(self, sha256: str) -> bytes | None:
        """The PNG bytes of an image; None when the store does not hold it."""
        return self._get(self.image_key(sha256), self.legacy_image_key(sha256))

    def put_image(self, data: bytes, sha256: str) -> None:
        """Store PNG bytes under their hash (no-op when present; not flushed to disk: a record whose image was lost
        reads as absent and its unit is redone)."""
        if not self.has_image(sha256):
            self.objects.put(self.image_key(sha256), data, durable=False)

    # -- unit records -----------------------------------------------------------------------------------------
    @staticmethod
    def attack_key(key: str) -> str:
        """Store key of attack unit ``key``'s record."""
        return f"attack_runs/{key[:2]}/{key}.json"

    @staticmethod
    def defense_key(defense_version: str, key: str) -> str:
        """Store key of defense unit ``key``'s record, for a defense version (its content hash with the
        environment's: :meth:`harness.execution.Runner.version_of`)."""
        return f"defense_runs/{defense_version[:32]}/{key[:2]}/{key}.json"

    @staticmethod
    def legacy_attack_key(key: str) -> str:
        return f"attack_runs/{key}.json"

    @staticmethod
    def legacy_defense_key(defense_version: str, key: str) -> str:
        return f"defense_runs/{defense_version[:32]}/{key}.json"

    def _keys_in(self, folder: str) -> list[str]:
        """Unit keys of the records in ``folder`` (``attack_runs`` or ``defense_runs/<version>``): layout 1's
        (directly in it) listed first, then the shards', so a record moved between the two listings is seen."""
        top = self.objects.list_folder(folder)
        keys = {name[:-5] for name in top if name.endswith(".json")} if self._fallback() else set()
        for shard in top:
            if shard.endswith("/") and len(shard) == 3:
                keys.update(name[:-5] for name in self.objects.list_folder(folder + "/" + shard[:2])
                            if name.endswith(".json"))
        return sorted(keys)

    def attack_keys(self) -> list[str]:
        """Keys of every stored attack record, sorted (readable or not: a listing, nothing is read)."""
        return self._keys_in("attack_runs")

    def defense_keys(self, defense_version: str) -> list[str]:
        """Keys of every stored record of a defense version, sorted (a listing, nothing is read)."""
        return self._keys_in(f"defense_runs/{defense_version[:32]}")

    def _head(self, key: str, old_key: str, kind: type[_Head]) -> _Head | None:
        """The head of the record under ``key`` (or layout 1's ``old_key``): its first line only for schema 2,
        the whole record for schema 1 or a head longer than :data:`HEAD_BYTES`; None when it is absent, unreadable
        or of another kind."""
        data = self._get(key, old_key, max_bytes=HEAD_BYTES)
        if data is None:
            return None
        try:
            head = decode_head(data)
            if head is None:
                whole = self._get(key, old_key)
                head = None if whole is None else decode_record(whole).head
        except RecordError:
            return None
        return head if isinstance(head, kind) else None

    def _record(self, key: str, old_key: str) -> Record | None:
        data = self._get(key, old_key)
        if data is None:
            return None
        try:
            return decode_record(data)
        except RecordError:
            return None

    def attack_head(self, key: str) -> AttackHead | None:
        """The head of attack unit ``key``'s record (no verdicts parsed, images not checked); None when absent or
        unreadable. A head does not say the record is whole: :meth:`attack_record` reads it as absent when its
        body is unreadable or an image it points to is missing."""
        return self._head(self.attack_key(key), self.legacy_attack_key(key), AttackHead)

    def attack_record(self, key: str, images: ImageIndex | None = None) -> AttackUnitRecord | None:
        """The record of attack unit ``key``; None when absent, unreadable, of another schema, or when an image it
        points to is missing (the unit is then redone).

        Args:
            key: The unit's key.
            images: Check its images with this index (:meth:`images_held`: one listing per image folder for many
                records) instead of one lookup per image.
        """
        record = self._record(self.attack_key(key), self.legacy_attack_key(key))
        if not isinstance(record, AttackUnitRecord):
            return None
        held = self.has_image if images is None else images.holds
        return record if all(held(image.version) for image in record.images) else None

    def attack_records(self, keys: Iterable[str]) -> Iterator[tuple[str, AttackUnitRecord | None]]:
        """(key, :meth:`attack_record`) for each of ``keys``, one at a time, their images checked by one listing
        per image folder (an :class:`ImageIndex` made for this pass): what a resume of many units reads."""
        images = self.images_held()
        for key in keys:
            yield key, self.attack_record(key, images)

    def _columns(self, key: str, old_key: str) -> tuple[Head, dict[str, list[Any]]] | None:
        data = self._get(key, old_key)
        if data is None:
            return None
        try:
            return decode_columns(data)
        except RecordError:
            return None

    def attack_columns(self, key: str, images: ImageIndex | None = None, *, check_images: bool = True
                       ) -> tuple[AttackHead, dict[str, list[Any]]] | None:
        """Attack unit ``key``'s head and verdicts as columns (:func:`harness.records.decode_columns`: no object
        per image); None when :meth:`attack_record` would be None (absent, unreadable, an image missing).

        Args:
            key: The unit's key.
            images: As for :meth:`attack_record`.
            check_images: False: the verdicts whether or not the images are still held (tabulating a finished
                run needs the verdicts only; a rerun is what needs the images).
        """
        found = self._columns(self.attack_key(key), self.legacy_attack_key(key))
        if found is None or not isinstance(found[0], AttackHead):
            return None
        if not check_images:
            return found[0], found[1]
        held = self.has_image if images is None else images.holds
        return (found[0], found[1]) if all(held(version) for version in found[1]["version"]) else None

    def put_attack_record(self, record: AttackUnitRecord) -> None:
        """Store an attack unit's record (its images must be stored already)."""
        self.objects.put(self.attack_key(record.key), encode_record(record))

    def defense_head(self, defense_version: str, key: str) -> DefenseHead | None:
        """The head of defense unit ``key``'s record of a defense version; None when absent or unreadable."""
        return self._head(self.defense_key(defense_version, key), self.legacy_defense_key(defense_version, key),
                          DefenseHead)

    def defense_record(self, defense_version: str, key: str) -> DefenseUnitRecord | None:
        """The record of defense unit ``key`` of a defense version; None when absent, unreadable or of another
        schema."""
        record = self._record(self.defense_key(defense_version, key), self.legacy_defense_key(defense_version, key))
        return record if isinstance(record, DefenseUnitRecord) else None

    def defense_columns(self, defense_version: str, key: str) -> tuple[DefenseHead, dict[str, list[Any]]] | None:
        """Defense unit ``key``'s head and answers as columns (``versions``, ``labels``, ``problems``,
        ``csv_notes``: :func:`harness.records.decode_columns`); None when absent or unreadable."""
        found = self._columns(self.defense_key(defense_version, key), self.legacy_defense_key(defense_version, key))
        if found is None or not isinstance(found[0], DefenseHead):
            return None
        return found[0], found[1]

    def put_defense_record(self, defense_version: str, record: DefenseUnitRecord) -> None:
        """Store a defense unit's record under its defense version (:meth:`harness.execution.Runner.version_of`)."""
        self.objects.put(self.defense_key(defense_version, record.key), encode_record(record))

    def defense_heads(self, defense_version: str) -> list[DefenseHead]:
        """The head of every readable record of a defense version, sorted by key (bodies not read)."""
        heads = (self.defense_head(defense_version, key) for key in self.defense_keys(defense_version))
        return [head for head in heads if head is not None]

    def defense_records(self, defense_version: str) -> list[DefenseUnitRecord]:
        """Every readable batch record of a defense version, sorted by key (unreadable ones left out)."""
        return list(self.iter_defense_records(defense_version))

    def iter_defense_records(self, defense_version: str) -> Iterator[DefenseUnitRecord]:
        """:meth:`defense_records` one at a time (one record in memory)."""
        for key in self.defense_keys(defense_version):
            record = self.defense_record(defense_version, key)
            if record is not None:
                yield record

    def holds_records(self) -> bool:
        """Whether any unit record is stored (a store some run wrote into)."""
        return bool(self.objects.list_folder("attack_runs") or self.objects.list_folder("defense_runs"))

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
        images = self.images_held()
        return versions if all(images.holds(v) for v in versions.values()) else None

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

    # -- migration ----------------------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Bring the store to :data:`LAYOUT` in place, then mark it so (``layout.json``): every layout-1 object is
        moved to its sharded key (:func:`harness.store_migration.move_legacy_objects`: idempotent, safe to kill and
        run again, readers see every object throughout). Cheap for a store already marked (one read); a new or
        empty store is only marked. Call it when a competition, ``score`` or ``report`` opens a results folder.

        Returns:
            One line saying what was moved ([] when nothing was).

        Raises:
            RecordError: The store says a later layout than this harness reads (it is left as it is).
            OSError: A move failed (what was moved stays moved; the store is still read whole).
        """
        layout = self.layout()
        if layout == LAYOUT:
            return []
        if layout > LAYOUT:
            raise RecordError(f"the store is of layout {layout} (layout.json); this harness reads layouts 1 to "
                              f"{LAYOUT}: use a later harness, or --force to recompute it")
        moved = move_legacy_objects(self.objects)
        self.mark_layout()
        return [moved.summary()] if moved.total else []

    def mark_layout(self) -> None:
        """Write ``layout.json`` saying :data:`LAYOUT` (every object is under this layout's keys)."""
        if isinstance(self.objects, MovingStore):
            self.objects.sync()
        self.objects.put(LAYOUT_KEY, _json_bytes({"layout": LAYOUT}))
        self._migrated = True


class ImageIndex:
    """Which images a store holds, checked by listing image folders: the first check of an image lists its folder
    (``images/ab/cd``) and remembers its images (8 bytes each), later checks in that folder cost nothing, so
    checking the images of many records costs one listing per folder instead of one lookup per image (at the NIPS
    2017 final round's size, 65,536 listings instead of 780,000 lookups). An image the listing does not hold is
    looked up before it is called missing (it may have been put since). An image removed after its folder was
    listed still counts as held: use one index per pass (a resume), not for a whole run. Thread-safe.

    Args:
        store: The store whose images are checked.
    """

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._listed: dict[str, array[int]] = {}  # image folder → sorted 64-bit parts of the hashes it holds

    def _listing(self, folder: str) -> array[int]:
        listed = self._listed.get(folder)
        if listed is None:
            names = self._store.objects.list_folder(folder)
            listed = array("Q", sorted(_image_bits(name) for name in names
                                       if name.endswith(".png") and len(name) == 68))
            with self._lock:
                listed = self._listed.setdefault(folder, listed)
        return listed

    def holds(self, sha256: str) -> bool:
        """Whether the store holds the image whose pixels hash to ``sha256`` (64 hex digits)."""
        listed = self._listing(f"images/{sha256[:2]}/{sha256[2:4]}")
        bits = _image_bits(sha256)
        at = bisect_left(listed, bits)
        if at < len(listed) and listed[at] == bits:
            return True
        return self._store.has_image(sha256)  # put since the listing, or under layout 1's key
