"""Moving a store of layout 1 (before issue 30: flat record folders, one level of image folders) to the sharded
layout 2 of :mod:`harness.record_store`, in place, through the :class:`harness.store.Store` interface.

Layout 1 → layout 2::

    images/ab/<sha256>.png                       → images/ab/cd/<sha256>.png
    attack_runs/<key>.json                       → attack_runs/<key[:2]>/<key>.json
    defense_runs/<version[:32]>/<key>.json       → defense_runs/<version[:32]>/<key[:2]>/<key>.json

Each object is renamed (:class:`harness.store.MovingStore`: one atomic rename) or, on a store without renames,
copied to its new key, then deleted from the old one; an object whose new key already holds one (the copy of an
interrupted migration, or a record written since) is only deleted from the old key. Readers try the new key, then
the old one, then the new one again until the store is marked as migrated, so no object is ever seen as absent
while it moves, and a migration killed at any point and run again ends with the same store. Contents are not
rewritten: a record keeps its schema (schema 1 is still read) and its run record keeps the log name it had (logs are
not moved). Nothing here knows what a record means; :meth:`harness.record_store.RecordStore.migrate` calls
:func:`move_legacy_objects` and then marks the layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.store import MovingStore, Store

__all__ = ["Moved", "legacy_objects", "move_legacy_objects"]

#: Length of an image's name (64 hex digits and ``.png``).
_IMAGE_NAME = 68


def _subfolders(objects: Store, folder: str) -> list[str]:
    return [name[:-1] for name in objects.list_folder(folder) if name.endswith("/")]


def legacy_objects(objects: Store) -> Iterator[tuple[str, str, str]]:
    """Every object of ``objects`` under a layout-1 key: (kind, old key, new key), kind ``image``, ``attack`` or
    ``defense``; images first (a unit's images before its record, as they were written). Each folder is listed
    when it is reached, so objects moved meanwhile are not listed twice."""
    for shard in _subfolders(objects, "images"):
        for name in objects.list_folder(f"images/{shard}"):
            if name.endswith(".png") and len(name) == _IMAGE_NAME and name.startswith(shard):
                yield "image", f"images/{shard}/{name}", f"images/{shard}/{name[2:4]}/{name}"
    for name in objects.list_folder("attack_runs"):
        if name.endswith(".json"):
            yield "attack", f"attack_runs/{name}", f"attack_runs/{name[:2]}/{name}"
    for version in _subfolders(objects, "defense_runs"):
        for name in objects.list_folder(f"defense_runs/{version}"):
            if name.endswith(".json"):
                yield "defense", f"defense_runs/{version}/{name}", f"defense_runs/{version}/{name[:2]}/{name}"


def _move(objects: Store, old: str, new: str) -> bool:
    """Move one object; False when ``old`` held nothing any more (moved by a migration beside this one)."""
    if objects.exists(new):  # a copy made before an interruption, or a newer record: the old one is redundant
        objects.delete(old)
        return True
    if isinstance(objects, MovingStore):
        try:
            objects.move(old, new)
        except FileNotFoundError:
            return objects.exists(new)
        return True
    data = objects.get(old)
    if data is None:
        return objects.exists(new)
    objects.put(new, data)  # copy, then delete: a reader finds it under one key or the other throughout
    objects.delete(old)
    return True


@dataclass
class Moved:
    """How many objects of each kind one migration moved (``image``, ``attack``, ``defense``)."""

    counts: dict[str, int] = field(default_factory=lambda: {"image": 0, "attack": 0, "defense": 0})

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line: "moved N images, M attack records and K defense records to layout 2"."""
        c = self.counts
        return (f"store: moved {c['image']} image(s), {c['attack']} attack record(s) and {c['defense']} defense "
                f"record(s) to the sharded layout 2 (nothing reruns)")


def move_legacy_objects(objects: Store) -> Moved:
    """Move every layout-1 object of ``objects`` to its layout-2 key (see the module's docstring). Idempotent;
    safe to kill at any point and run again; safe beside readers of :class:`harness.record_store.RecordStore`.

    Raises:
        OSError: A move failed (what was moved stays moved; running again resumes).
    """
    moved = Moved()
    for kind, old, new in legacy_objects(objects):
        if _move(objects, old, new):
            moved.counts[kind] += 1
    return moved
