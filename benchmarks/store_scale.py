"""What finding done work costs in a store of many records (issue 30's "store at scale"): listing done units,
reading heads, reading whole records, checking their images, and migrating a store of layout 1 in place.

    python benchmarks/store_scale.py                          # 10,000 attack + 10,000 defense records
    python benchmarks/store_scale.py --records 2000 --images 20000

Synthetic records are written into a temporary folder by the real store code (:class:`harness.record_store.
RecordStore`; writing is not timed, and skips fsync), each of ``--batch`` images chosen among ``--images`` stored
ones: half attack records (one attack per 50 records), half records of one defense version. The same records are
also written as a store of layout 1 (flat folders, schema-1 records: what a results folder of before issue 30
holds), which is read the old way (whole records) and then migrated. The page cache is warm for every figure (the
records were just written): these are CPU and system-call costs, not disk seeks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.record_store import RecordStore  # noqa: E402
from harness.records import (  # noqa: E402
    AttackUnitRecord,
    DefenseAnswer,
    DefenseUnitRecord,
    ImageVerdict,
    RunRecord,
    decode_record,
)
from harness.store import LocalStore  # noqa: E402

T = TypeVar("T")
VERSION = "f" * 64


class FastStore(LocalStore):
    """A local store that never fsyncs (writing the benchmark's records is not what it measures)."""

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        super().put(key, data, durable=False)


def sha(n: int) -> str:
    return hashlib.sha256(f"image {n}".encode()).hexdigest()


def records(count: int, images: int, batch: int) -> tuple[list[AttackUnitRecord], list[DefenseUnitRecord]]:
    run = RunRecord(exit_code=0, timed_out=False, seconds=12.5, problem="", log="logs/x.log", cpu_seconds=11.0)
    attacks, defenses = [], []
    for n in range(count // 2):
        versions = [sha((n * batch + i) % images) for i in range(batch)]
        attacks.append(AttackUnitRecord(
            key=hashlib.sha256(f"attack {n}".encode()).hexdigest()[:32], attack=f"attack{n // 50}",
            attack_hash="a" * 64, attack_type="attack", epsilon=16, run=run,
            images=tuple(ImageVerdict(f"img{(n * batch + i) % 5000}", v, "", i % 7, i % 3, 16)
                         for i, v in enumerate(versions))))
        defenses.append(DefenseUnitRecord(
            key=hashlib.sha256(f"defense {n}".encode()).hexdigest()[:32], defense="base", defense_hash="d" * 64,
            run=run, predictions={v: DefenseAnswer((n + i) % 1000, "") for i, v in enumerate(versions)}))
    return attacks, defenses


def schema1(record: AttackUnitRecord | DefenseUnitRecord) -> bytes:
    """The record as a harness before issue 30 stored it."""
    if isinstance(record, AttackUnitRecord):
        value = {"schema": 1, "key": record.key, "attack": record.attack, "attack_hash": record.attack_hash,
                 "attack_type": record.attack_type.value, "epsilon": record.epsilon, "run": record.run.to_json(),
                 "images": [image.to_json() for image in record.images]}
    else:
        value = {"schema": 1, "key": record.key, "defense": record.defense, "defense_hash": record.defense_hash,
                 "run": record.run.to_json(), "csv_notes": list(record.csv_notes),
                 "predictions": {v: a.to_json() for v, a in record.predictions.items()}}
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode()


def timed(label: str, work: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = work()
    print(f"  {label:<58} {time.perf_counter() - start:8.2f} s")
    return result


def widest_folder(root: Path) -> int:
    return max(len(os.listdir(folder)) for folder, _, _ in os.walk(root))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000, help="records in all (half attack, half defense)")
    parser.add_argument("--images", type=int, default=50000, help="stored images the records point to")
    parser.add_argument("--batch", type=int, default=100, help="images per record")
    args = parser.parse_args()
    attacks, defenses = records(args.records, args.images, args.batch)
    with tempfile.TemporaryDirectory(prefix="store_scale.") as tmp:
        new, old = Path(tmp) / "layout2", Path(tmp) / "layout1"
        store = RecordStore(FastStore(new))
        store.mark_layout()
        legacy = FastStore(old)
        written = time.perf_counter()
        for n in range(args.images):
            store.put_image(b"png", sha(n))
            legacy.put(RecordStore.legacy_image_key(sha(n)), b"png")
        for a, d in zip(attacks, defenses, strict=True):
            store.put_attack_record(a)
            store.put_defense_record(VERSION, d)
            legacy.put(RecordStore.legacy_attack_key(a.key), schema1(a))
            legacy.put(RecordStore.legacy_defense_key(VERSION, d.key), schema1(d))
        print(f"{len(attacks)} attack + {len(defenses)} defense records of {args.batch} images, {args.images} "
              f"images (written in {time.perf_counter() - written:.0f} s, not counted)")
        print(f"widest folder: layout 2 {widest_folder(new)} entries, layout 1 {widest_folder(old)} entries")
        keys = [a.key for a in attacks]

        print("layout 2 (sharded; schema 2: head line, columnar body):")
        fresh = RecordStore(FastStore(new))
        done = timed("list done units (attack_keys, defense_keys)",
                     lambda: (fresh.attack_keys(), fresh.defense_keys(VERSION)))
        assert len(done[0]) == len(attacks) and len(done[1]) == len(defenses)
        heads = timed("read heads (attack_head each, defense_heads)",
                      lambda: ([fresh.attack_head(k) for k in keys], fresh.defense_heads(VERSION)))
        assert all(heads[0]) and len(heads[1]) == len(defenses)
        full = timed("read whole records, images by folder listing (attack_records)",
                     lambda: dict(fresh.attack_records(keys)))
        assert all(full.values())
        timed("read records as columns, images by listing (attack_columns)", lambda: [
            fresh.attack_columns(k, index) for index in [fresh.images_held()] for k in keys])
        timed("read whole records, one lookup per image (attack_record each)",
              lambda: [fresh.attack_record(k) for k in keys])
        timed("read whole defense records (defense_records)", lambda: fresh.defense_records(VERSION))

        print("layout 1 (flat; schema 1: one indented JSON object), as read before issue 30:")
        def read_layout1() -> list[bool]:
            found = []
            for key in keys:
                record = decode_record((old / RecordStore.legacy_attack_key(key)).read_bytes())
                assert isinstance(record, AttackUnitRecord)
                found.append(all((old / RecordStore.legacy_image_key(i.version)).is_file() for i in record.images))
            return found

        assert all(timed("read whole records, one lookup per image", read_layout1))
        timed("read whole defense records", lambda: [
            decode_record(p.read_bytes()) for p in sorted((old / "defense_runs" / VERSION[:32]).glob("*.json"))])
        migrated = RecordStore(LocalStore(old))
        print("  " + timed("migrate in place to layout 2 (renames)", migrated.migrate)[0])
        print(f"  widest folder after: {widest_folder(old)} entries")


if __name__ == "__main__":
    main()
