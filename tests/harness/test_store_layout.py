"""The store at scale (issue 30): sharded keys so that no folder holds more than 4,096 entries, record heads read
without bodies, an image check by folder listings, and the in-place migration of a store of layout 1 (the
committed ``tests/fixtures/results_4fe88fa``): every object moved, idempotent, safe to kill and resume, readers
seeing every unit throughout."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from harness.record_store import LAYOUT, LAYOUT_KEY, RecordStore
from harness.records import AttackUnitRecord, DefenseAnswer, DefenseUnitRecord, ImageVerdict, RecordError, RunRecord
from harness.results_folder import ResultsFolder
from harness.store import LocalStore, MovingStore, Store
from harness.store_migration import legacy_objects

FIXTURE_STORE = Path(__file__).resolve().parents[1] / "fixtures" / "results_4fe88fa" / "results" / "store"
RUN = RunRecord(exit_code=0, timed_out=False, seconds=1.5, problem="", log="logs/x.log")
LIMIT = 4096


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def attack(key: str, versions: list[str]) -> AttackUnitRecord:
    return AttackUnitRecord(key=key, attack="a", attack_hash="h" * 64, attack_type="attack", epsilon=16, run=RUN,
                            images=tuple(ImageVerdict(f"img{i}", v, "", 0, 0, 16) for i, v in enumerate(versions)))


def defense(key: str, versions: list[str]) -> DefenseUnitRecord:
    return DefenseUnitRecord(key=key, defense="d", defense_hash="h" * 64, run=RUN,
                             predictions={v: DefenseAnswer(i % 10, "") for i, v in enumerate(versions)})


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- sharding ---------------------------------------------------------------------------------------------------

def test_keys_are_sharded_by_their_leading_hex_digits() -> None:
    s = sha(1)
    assert RecordStore.image_key(s) == f"images/{s[:2]}/{s[2:4]}/{s}.png"
    assert RecordStore.attack_key("0123" + "f" * 28) == f"attack_runs/01/0123{'f' * 28}.json"
    assert RecordStore.defense_key("v" * 64, "9a" + "0" * 30) == f"defense_runs/{'v' * 32}/9a/9a{'0' * 30}.json"
    key = "c4" + "e" * 30
    assert ResultsFolder.attack_log("fgsm", 16, key) == f"logs/attacks/fgsm/eps16/c4/{key[:12]}.log"
    assert ResultsFolder.defense_log("base", key) == f"logs/defenses/base/c4/{key[:12]}.log"


def test_no_folder_holds_more_than_4096_entries(tmp_path: Path) -> None:
    """5,000 images and 3,000 records: layout 1 put 5,000 entries in ``attack_runs/``; layout 2's widest folder
    is a fan-out of at most 256."""
    store = RecordStore(LocalStore(tmp_path))
    versions = [sha(n) for n in range(5000)]
    for version in versions:
        store.put_image(b"png", version)
    for n in range(1500):
        store.put_attack_record(attack(f"{n:032x}"[::-1], versions[n:n + 2]))
        store.put_defense_record("f" * 64, defense(f"{n + 7:032x}"[::-1], versions[n:n + 2]))
    widest = max(len(os.listdir(folder)) for folder, _, _ in os.walk(tmp_path))
    assert widest <= 256 < LIMIT
    assert len(os.listdir(tmp_path / "images")) == 256 and len(os.listdir(tmp_path / "attack_runs")) == 256
    assert len(store.attack_keys()) == 1500 and len(store.defense_keys("f" * 64)) == 1500
    assert all(store.has_image(v) for v in versions)


# -- heads ------------------------------------------------------------------------------------------------------

class CountingStore(LocalStore):
    """A local store that counts the bytes it reads and the lookups it makes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read = 0
        self.lookups = 0

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes | None:
        data = super().get(key, max_bytes=max_bytes)
        self.read += len(data or b"")
        return data

    def exists(self, key: str) -> bool:
        self.lookups += 1
        return super().exists(key)


def test_a_head_is_read_without_its_body(tmp_path: Path) -> None:
    objects = CountingStore(tmp_path)
    store = RecordStore(objects)
    store.mark_layout()
    versions = [sha(n) for n in range(300)]
    record = attack("ab" + "1" * 30, versions)
    store.put_attack_record(record)
    size = (tmp_path / store.attack_key(record.key)).stat().st_size
    objects.read = 0
    assert store.attack_head(record.key) == record.head and record.head.images == 300
    assert objects.read < size / 10  # the first line only
    assert store.attack_record(record.key) is None  # its images are not stored
    for version in versions:
        store.put_image(b"png", version)
    assert store.attack_record(record.key) == record
    store.put_defense_record("e" * 64, defense("cd" + "2" * 30, versions))
    (head,) = store.defense_heads("e" * 64)
    assert head.predictions == 300 and head.key == "cd" + "2" * 30 and head.run == RUN


def test_records_are_read_as_columns_with_their_images_checked(tmp_path: Path) -> None:
    store = RecordStore(LocalStore(tmp_path))
    versions = [sha(n) for n in range(4)]
    record, other = attack("ab" + "3" * 30, versions), defense("cd" + "4" * 30, versions)
    store.put_attack_record(record)
    store.put_defense_record("e" * 64, other)
    assert store.attack_columns(record.key) is None  # its images are not stored: as attack_record
    for version in versions:
        store.put_image(b"png", version)
    assert store.attack_columns(record.key, store.images_held()) == (record.head, record.body_json())
    assert store.defense_columns("e" * 64, other.key) == (other.head, other.body_json())
    assert store.defense_columns("e" * 64, record.key) is None and store.attack_columns(other.key) is None


def test_a_record_with_a_corrupt_body_has_a_head_but_reads_as_absent(tmp_path: Path) -> None:
    store = RecordStore(LocalStore(tmp_path))
    versions = [sha(n) for n in range(3)]
    for version in versions:
        store.put_image(b"png", version)
    record, other = attack("aa" + "0" * 30, versions), defense("bb" + "0" * 30, versions)
    store.put_attack_record(record)
    store.put_defense_record("e" * 64, other)
    for key in (store.attack_key(record.key), store.defense_key("e" * 64, other.key)):
        path = tmp_path / key
        path.write_bytes(path.read_bytes()[:-20])  # the body torn
    assert store.attack_head(record.key) == record.head and store.attack_record(record.key) is None
    assert store.defense_heads("e" * 64) == [other.head] and store.defense_records("e" * 64) == []
    assert store.defense_record("e" * 64, other.key) is None
    (tmp_path / store.attack_key(record.key)).write_bytes(b'{"schema": 2, "kind": "attack"}\n{}\n')
    assert store.attack_head(record.key) is None  # a head missing its fields: no head


def test_images_are_checked_by_one_listing_per_folder(tmp_path: Path) -> None:
    objects = CountingStore(tmp_path)
    store = RecordStore(objects)
    store.mark_layout()
    versions = [sha(n) for n in range(2000)]
    for version in versions:
        store.put_image(b"png", version)
    records = [attack(f"{n:032x}", versions[n * 100:(n + 1) * 100]) for n in range(20)]
    for record in records:
        store.put_attack_record(record)
    objects.lookups = 0
    assert dict(store.attack_records(r.key for r in records)) == {r.key: r for r in records}
    assert objects.lookups == 0  # 2,000 images checked by listing their folders, no lookup per image
    assert [store.attack_record(r.key) for r in records[:2]] == records[:2] and objects.lookups == 200  # one by one
    os.remove(tmp_path / store.image_key(versions[150]))  # lost: its record reads as absent, the unit is redone
    assert dict(store.attack_records([records[1].key, records[2].key])) == {records[1].key: None,
                                                                             records[2].key: records[2]}
    assert store.attack_record(records[1].key) is None
    index = store.images_held()
    assert not index.holds(versions[150])
    store.put_image(b"png", versions[150])  # put after its folder was listed: looked up, found
    assert index.holds(versions[150]) and store.attack_record(records[1].key, index) == records[1]
    assert store.clean_versions("d" * 64) is None
    store.put_clean_versions("d" * 64, {f"img{n}": v for n, v in enumerate(versions)})
    objects.lookups = 0
    assert store.clean_versions("d" * 64) is not None and objects.lookups == 0


# -- migration --------------------------------------------------------------------------------------------------

def fixture_store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(FIXTURE_STORE, root)
    return root


def contents(store: RecordStore) -> tuple[object, ...]:
    """Everything a reader gets from the fixture's store: records, defense records, every image."""
    attacks = {key: store.attack_record(key) for key in store.attack_keys()}
    defenses = {v: store.defense_records(v) for v in ("7e90356f48b8a12055dc1dbc38ef8650",
                                                      "dc184e9d45b1da72382d43b08a88b7a0")}
    images = {v: store.image(v) for r in attacks.values() if r is not None for v in (i.version for i in r.images)}
    clean = store.clean_versions("8eae685830af798ef615211333c1c0016a425ede2a40798376107cbbf19c654e")
    return attacks, defenses, images, clean


def test_the_4fe88fa_store_is_read_then_migrated_in_place(tmp_path: Path) -> None:
    root = fixture_store(tmp_path)
    store = RecordStore(LocalStore(root))
    assert store.layout() == 1
    before = contents(store)
    attacks, defenses, images, clean = before
    assert len(attacks) == 6 and all(attacks.values()) and [len(d) for d in defenses.values()] == [5, 5]
    assert all(images.values()) and clean is not None  # layout 1 is read whole before it is migrated
    old = tree(root)
    assert store.migrate() == ["store: moved 20 image(s), 6 attack record(s) and 10 defense record(s) to the "
                               "sharded layout 2 (nothing reruns)"]
    assert store.layout() == LAYOUT and list(legacy_objects(store.objects)) == []
    after = tree(root)
    assert after.pop(LAYOUT_KEY) == b'{\n "layout": 2\n}\n'
    assert sorted(after.values()) == sorted(old.values())  # every object moved, none rewritten
    assert all(len(key.split("/")) == 4 for key in after if key.startswith("images/"))
    assert all(len(key.split("/")) == 3 for key in after if key.startswith("attack_runs/"))
    assert all(len(key.split("/")) == 4 for key in after if key.startswith("defense_runs/"))
    assert contents(RecordStore(LocalStore(root))) == before
    assert store.migrate() == [] and tree(root) == dict(after, **{LAYOUT_KEY: b'{\n "layout": 2\n}\n'})


class Killed(Exception):
    pass


class DyingStore(LocalStore):
    """A local store whose process is killed after ``moves`` renames."""

    def __init__(self, root: Path, moves: int) -> None:
        super().__init__(root)
        self.left = moves

    def _step(self) -> None:
        if self.left == 0:
            raise Killed()
        self.left -= 1

    def move(self, source: str, target: str) -> None:
        self._step()
        super().move(source, target)


class DyingCopyStore(LocalStore):
    """A store without renames (as object storage), killed after ``steps`` puts or deletes."""

    def __init__(self, root: Path, steps: int) -> None:
        super().__init__(root)
        self.left = steps

    def _step(self) -> None:
        if self.left == 0:
            raise Killed()
        self.left -= 1

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self._step()
        super().put(key, data, durable=durable)

    def delete(self, key: str) -> None:
        self._step()
        super().delete(key)


def as_store(objects: LocalStore) -> Store:
    """``objects`` seen through the plain interface: no renames."""

    class Plain:
        put, get, exists, list, list_folder, delete = (objects.put, objects.get, objects.exists, objects.list,
                                                       objects.list_folder, objects.delete)

    plain = Plain()
    assert isinstance(plain, Store) and not isinstance(plain, MovingStore)
    return plain


@pytest.mark.parametrize("renames", [True, False], ids=["move", "copy-then-delete"])
def test_a_killed_migration_loses_nothing_and_resumes_to_the_same_store(tmp_path: Path, renames: bool) -> None:
    reference_root = fixture_store(tmp_path / "reference")
    RecordStore(LocalStore(reference_root)).migrate()
    reference = tree(reference_root)
    expected = contents(RecordStore(LocalStore(reference_root)))
    steps = 36 if renames else 72  # 36 objects: one rename each, or a copy and a delete
    for k in range(0, steps + (0 if renames else 1), 1 if renames else 3):  # copy: the marker's put too
        root = fixture_store(tmp_path / f"k{k}")
        dying: Store = DyingStore(root, k) if renames else as_store(DyingCopyStore(root, k))
        with pytest.raises(Killed):
            RecordStore(dying).migrate()
        assert not (root / LAYOUT_KEY).exists()
        assert contents(RecordStore(LocalStore(root))) == expected, k  # no unit absent while half moved
        resumed = RecordStore(LocalStore(root))
        assert bool(resumed.migrate()) == (k < 72 or renames)  # resumed: moves what was left, if anything
        assert resumed.layout() == LAYOUT
        assert tree(root) == reference, k


def test_a_reader_finds_an_object_moved_while_it_looks(tmp_path: Path) -> None:
    """Between a reader's miss at the new key and its look at the old one, a migration moves the object: the
    reader looks at the new key again."""
    root = fixture_store(tmp_path)
    (key, *_), = [sorted(p.stem for p in (root / "attack_runs").glob("*.json"))]
    record = RecordStore(LocalStore(root)).attack_record(key)

    class Racing(LocalStore):
        def get(self, k: str, *, max_bytes: int | None = None) -> bytes | None:
            if k == f"attack_runs/{key}.json" and (root / k).exists():
                self.move(k, RecordStore.attack_key(key))  # the migration beside this reader
            return super().get(k, max_bytes=max_bytes)

    assert record is not None and RecordStore(Racing(root)).attack_record(key) == record


def test_a_store_of_a_later_layout_is_refused_and_a_new_one_only_marked(tmp_path: Path) -> None:
    fresh = RecordStore(LocalStore(tmp_path / "new"))
    assert fresh.migrate() == [] and fresh.layout() == LAYOUT and tree(tmp_path / "new") == {
        LAYOUT_KEY: b'{\n "layout": 2\n}\n'}
    later = LocalStore(tmp_path / "later")
    later.put(LAYOUT_KEY, b'{"layout": 3}')
    with pytest.raises(RecordError, match="layout 3"):
        RecordStore(later).migrate()
    assert tree(tmp_path / "later") == {LAYOUT_KEY: b'{"layout": 3}'}


def test_a_migrated_store_no_longer_looks_under_layout_1_keys(tmp_path: Path) -> None:
    objects = CountingStore(tmp_path)
    store = RecordStore(objects)
    store.migrate()
    objects.lookups = 0
    assert not store.has_image(sha(1)) and objects.lookups == 1
    stray = LocalStore(tmp_path)
    stray.put(RecordStore.legacy_attack_key("ab" * 16), b"{}")  # a layout-1 key after the marker: not read
    assert store.attack_keys() == [] and store.attack_head("ab" * 16) is None


# -- the local store's new operations ---------------------------------------------------------------------------

def test_local_store_lists_a_folder_deletes_and_moves(tmp_path: Path) -> None:
    local = LocalStore(tmp_path)
    assert isinstance(local, MovingStore)
    for key in ("a/b/c.json", "a/d.json", "a/.e.json.x.tmp"):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"x\ny")
    assert local.list_folder("a") == ["b/", "d.json"] and local.list_folder("") == ["a/"]
    assert local.list_folder("nothing") == [] and local.list_folder("a/d.json") == []
    assert local.get("a/d.json", max_bytes=100) == b"x\n" and local.get("a/d.json", max_bytes=1) == b"x"
    local.move("a/d.json", "f/g/d.json")
    assert not local.exists("a/d.json") and local.get("f/g/d.json") == b"x\ny"
    with pytest.raises(FileNotFoundError):
        local.move("a/d.json", "f/g/d.json")
    local.delete("f/g/d.json")
    local.delete("f/g/d.json")  # nothing there: nothing done
    assert local.list("") == ["a/b/c.json"]
