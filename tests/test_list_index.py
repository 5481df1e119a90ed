"""The file store's listing index (SPEC.md 1): listings are the same with the index, without it,
and with it torn, garbage, stale or missing lines; it is trusted only for the journal (id and
inode) it names; deletions and copies leave dead lines that are compacted away; processes making
executions at once never break a line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from flux._engine.journal import encode_line, seed_for
from flux._engine.stores import file_list_index
from flux._engine.stores.files import FileStore
from flux.retention import delete_execution, prune_store
from tests.stores.test_contract import AT, completed, header, make, started

ROOT = Path(__file__).resolve().parent.parent


def index_path(home: Path) -> Path:
    return home / "executions" / file_list_index.NAME


def created_at(n: int) -> str:
    return f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}.000000+00:00"


def build(home: Path, count: int = 30) -> None:
    """`count` (prime to 7) executions of three workflows, some made at the same moment (ties ordered by id), some
    finished, one a sub-workflow, one started by a schedule."""
    store = FileStore(home)
    for n in range(count):
        execution_id = f"e{(n * 7) % count:03d}"
        records = (started(), completed(n)) if n % 3 else (started(),)
        make(store, execution_id, *records, workflow=("alpha", "beta", "gamma")[n % 3], created=created_at(n // 2))
    child = header("child1", "beta", created_at(3))
    child["parent"] = {"execution_id": "e000", "call_id": "1"}
    store.create("child1", child, "fsync").close()
    fired = header("fired1", "alpha", created_at(4))
    fired["schedule"] = {"name": "nightly", "at": AT}
    store.create("fired1", fired, "fsync").close()


def walk(store: FileStore, **filters: Any) -> list[tuple[str, str, str, str | None, str | None]]:
    """Every row of a listing, page by page (4 a page) through cursors."""
    rows: list[tuple[str, str, str, str | None, str | None]] = []
    cursor = None
    while True:
        page = store.list(limit=4, cursor=cursor, **filters)
        rows += [(s.execution_id, s.workflow, str(s.status), s.parent, s.schedule) for s in page.items]
        if page.cursor is None:
            return rows
        cursor = page.cursor


def listings(home: Path) -> dict[str, Any]:
    """What a new FileStore lists, with every kind of filter."""
    store = FileStore(home)
    return {
        "all": [(s.execution_id, s.created, s.workflow, s.parent, s.schedule) for s in store.list().items],
        "pages": walk(store),
        "beta": walk(store, workflow="beta"),
        "completed": walk(store, status="completed"),
        "prefix": walk(store, prefix="e01"),
        "window": walk(store, created_after=created_at(3), created_before=created_at(9)),
        "first": [s.execution_id for s in store.list(limit=1).items],
    }


def index_lines(home: Path) -> list[bytes]:
    return index_path(home).read_bytes().splitlines(keepends=True)


def ids_in(home: Path) -> dict[str, int]:
    return {i: ino for i, (ino, head, _) in file_list_index.read(str(home / "executions")).entries.items() if head}


def without_index(home: Path) -> dict[str, Any]:
    saved = index_path(home).read_bytes()
    index_path(home).unlink()
    try:
        return listings(home)
    finally:
        index_path(home).write_bytes(saved)


def test_each_journal_made_adds_its_line_and_listings_are_the_same_without_the_index(tmp_path: Path) -> None:
    build(tmp_path)
    lines = index_lines(tmp_path)
    assert len(lines) == 32 and all(line.endswith(b'"}\n') for line in lines)
    journals = {p.stem: p.stat().st_ino for p in (tmp_path / "executions").glob("*.jsonl")}
    assert ids_in(tmp_path) == journals
    with_index = listings(tmp_path)
    assert with_index["beta"] and with_index["completed"] and with_index["prefix"] and with_index["window"]
    assert ("child1", "beta", "created", "e000", None) in with_index["beta"]
    assert ("fired1", "alpha", "created", None, "nightly") in with_index["pages"]
    # The first listing that read the index added the state of each settled execution it showed.
    after = index_lines(tmp_path)
    assert after[:32] == lines and len(after) == 32 + 20
    assert all(b'"status":"completed"' in line for line in after[32:])
    assert without_index(tmp_path) == with_index
    assert listings(tmp_path) == with_index
    assert index_lines(tmp_path) == after  # a listing that found every journal indexed writes nothing


def test_the_index_is_what_orders_and_filters_while_it_names_the_journal(tmp_path: Path) -> None:
    """Proof that a listing reads the index, not the headers: a line naming the journal's inode
    with another workflow is believed (the index is written only by the store)."""
    build(tmp_path)
    ino = (tmp_path / "executions" / "e005.jsonl").stat().st_ino
    line = file_list_index.live_line("e005", ino, (created_at(99), "delta", None, None))
    with open(index_path(tmp_path), "ab") as f:
        f.write(line)
    store = FileStore(tmp_path)
    assert [s.execution_id for s in store.list(workflow="delta").items] == ["e005"]
    assert [s.execution_id for s in store.list(limit=1).items] == ["e005"]  # ordered by the index's time
    # A line naming another inode (the journal replaced since) is not believed.
    with open(index_path(tmp_path), "ab") as f:
        f.write(file_list_index.live_line("e005", ino + 1, (created_at(98), "epsilon", None, None)))
    assert FileStore(tmp_path).list(workflow="epsilon").items == ()
    assert "e005" in [s.execution_id for s in FileStore(tmp_path).list(workflow="gamma").items]  # its header's


def test_a_store_without_an_index_builds_it_at_its_first_listing(tmp_path: Path) -> None:
    """A store written before the index existed: its journals are read from their headers once,
    and the index is written for the next listing."""
    folder = tmp_path / "executions"
    folder.mkdir(mode=0o700)
    for n in range(40):
        execution_id = f"old{n:02d}"
        data = encode_line(header(execution_id, ("alpha", "beta")[n % 2], created_at(n)), seed_for(execution_id))
        (folder / f"{execution_id}.jsonl").write_bytes(data)
    assert not index_path(tmp_path).exists()
    first = listings(tmp_path)
    assert len(first["all"]) == 40 and first["first"] == ["old39"]
    assert ids_in(tmp_path) == {p.stem: p.stat().st_ino for p in folder.glob("*.jsonl")}
    assert len(index_lines(tmp_path)) == 40
    assert os.stat(index_path(tmp_path)).st_mode & 0o777 == 0o600
    assert listings(tmp_path) == first
    assert len(index_lines(tmp_path)) == 40


def test_torn_and_garbage_lines_are_skipped_and_their_executions_read_from_headers(tmp_path: Path) -> None:
    build(tmp_path)
    expected = without_index(tmp_path)
    lines = index_lines(tmp_path)
    # e003's line damaged: a flipped byte in its workflow; the index ends with a torn line (a
    # power loss) and a line of garbage before it.
    target = next(n for n, line in enumerate(lines) if b'"id":"e003"' in line)
    lines[target] = lines[target].replace(b'"workflow":"', b'"workflow":"X')
    index_path(tmp_path).write_bytes(b"".join(lines) + b"\x00\x00garbage\n" + lines[0][:30])
    assert listings(tmp_path) == expected
    # The listing added e003's line again; a journal made now appends after the torn piece.
    assert "e003" in ids_in(tmp_path)
    make(FileStore(tmp_path), "late1", workflow="beta", created=created_at(50))
    assert ids_in(tmp_path).keys() >= {"e003"}
    found = listings(tmp_path)
    assert found["first"] == ["late1"] and ("late1", "beta", "created", None, None) in found["beta"]
    assert found == without_index(tmp_path)
    assert "late1" in ids_in(tmp_path)  # its line, lost to the torn piece, was added by the listing


def test_an_index_cut_at_any_byte_lists_the_same(tmp_path: Path) -> None:
    build(tmp_path, count=20)  # more than a listing reads one by one
    expected = without_index(tmp_path)
    whole = index_path(tmp_path).read_bytes()
    for cut in range(0, len(whole), 53):
        index_path(tmp_path).write_bytes(whole[:cut])
        assert listings(tmp_path) == expected, cut
        assert set(ids_in(tmp_path)) == {p.stem for p in (tmp_path / "executions").glob("*.jsonl")}


def test_deleted_executions_are_ignored_and_a_mostly_dead_index_is_compacted(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for n in range(120):
        make(store, f"d{n:03d}", started(), completed(n), workflow="alpha", created=created_at(n))
    assert len(index_lines(tmp_path)) == 120
    for n in range(0, 120, 2):
        delete_execution(f"d{n:03d}", store, sweep=False)
    # each deletion appended a line saying so
    assert len(index_lines(tmp_path)) == 180
    kept = [f"d{n:03d}" for n in range(119, 0, -2)]
    assert [s.execution_id for s in FileStore(tmp_path).list().items] == kept
    # 120 of 180 lines were dead: the index was written again with the 60 that live, each with
    # the state the listing found
    assert len(index_lines(tmp_path)) == 60
    assert all(b'"status":"completed"' in line for line in index_lines(tmp_path))
    assert ids_in(tmp_path) == {i: (tmp_path / "executions" / f"{i}.jsonl").stat().st_ino for i in kept}
    assert not (tmp_path / "executions" / ".list.new").exists()
    assert [s.execution_id for s in FileStore(tmp_path).list().items] == kept
    assert FileStore(tmp_path).list_ids() == sorted(kept)


def test_a_pruned_store_lists_what_is_left_and_its_index_is_compacted(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for n in range(100):
        make(store, f"p{n:03d}", started(), completed(n), workflow="alpha", created=created_at(n))
    for n in range(30):
        make(store, f"q{n:03d}", started(), workflow="beta", created=created_at(100 + n))
    pruned = prune_store(str(tmp_path), finished_before="1d", now=time.time() + 400 * 86400)
    assert len(pruned.deleted) == 100
    left = [f"q{n:03d}" for n in range(29, -1, -1)]
    assert [s.execution_id for s in FileStore(tmp_path).list().items] == left
    assert len(index_lines(tmp_path)) == 30  # 200 of 230 lines were dead
    assert [s.execution_id for s in FileStore(tmp_path).list(workflow="beta").items] == left
    assert FileStore(tmp_path).list(workflow="alpha").items == ()


def test_few_dead_lines_are_left_until_they_are_worth_compacting(tmp_path: Path) -> None:
    build(tmp_path)
    store = FileStore(tmp_path)
    for execution_id in ("e001", "e002", "e004"):
        store.delete(execution_id)
    before = index_lines(tmp_path)
    assert len(before) == 35
    rows = listings(tmp_path)
    assert not {"e001", "e002", "e004"} & {row[0] for row in rows["all"]}
    after = index_lines(tmp_path)  # the states of the settled ones added; nothing written again
    assert after[:35] == before and all(b'"status":"completed"' in line for line in after[35:])
    assert len(after) == 35 + 17
    assert listings(tmp_path) == rows and index_lines(tmp_path) == after


def test_an_execution_deleted_and_made_again_under_its_id_lists_as_made_again(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    make(store, "again", workflow="alpha", created=created_at(1))
    make(store, "other", workflow="alpha", created=created_at(2))
    store.delete("again")
    make(store, "again", workflow="beta", created=created_at(3))
    assert [(s.execution_id, s.workflow) for s in FileStore(tmp_path).list().items] == [
        ("again", "beta"), ("other", "alpha")
    ]
    # Its new line lost (a process killed between the journal's link and the index's append),
    # whether or not the new journal got the old inode: the deletion's line makes it read.
    lines = index_lines(tmp_path)
    assert b'"id":"again"' in lines[-1] and b'"deleted":true' in lines[-2]
    index_path(tmp_path).write_bytes(b"".join(lines[:-1]))
    assert [(s.execution_id, s.workflow) for s in FileStore(tmp_path).list().items] == [
        ("again", "beta"), ("other", "alpha")
    ]


def test_a_copied_store_lists_the_same_and_its_index_is_written_again(tmp_path: Path) -> None:
    build(tmp_path / "a", count=71)
    expected = listings(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # every journal a new inode
    assert listings(tmp_path / "b") == expected
    folder = tmp_path / "b" / "executions"
    assert ids_in(tmp_path / "b") == {p.stem: p.stat().st_ino for p in folder.glob("*.jsonl")}
    assert len(index_lines(tmp_path / "b")) == 73  # every old line was dead: written again


def test_a_line_too_long_for_one_write_is_left_out(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    make(store, "short", workflow="alpha", created=created_at(1))
    make(store, "long", workflow="w" * 5000, created=created_at(2))
    assert set(ids_in(tmp_path)) == {"short"}
    assert [s.execution_id for s in FileStore(tmp_path).list(workflow="w" * 5000).items] == ["long"]
    assert [s.execution_id for s in FileStore(tmp_path).list().items] == ["long", "short"]


def test_import_and_fork_add_their_lines(tmp_path: Path) -> None:
    from flux._engine.store import import_journal

    source = FileStore(tmp_path / "source")
    make(source, "moved", started(), completed(7), workflow="beta", created=created_at(5))
    target = FileStore(tmp_path / "target")
    import_journal(target, source.export("moved"))
    assert set(ids_in(tmp_path / "target")) == {"moved"}
    assert listings(tmp_path / "target") == without_index(tmp_path / "target")


MAKER = textwrap.dedent(
    """
    import sys
    from flux._engine.stores.files import FileStore
    home, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = FileStore(home)
    for n in range(count):
        execution_id = f"{who}{n:04d}"
        header = {"seq": 0, "kind": "header", "format": 1, "execution_id": execution_id,
                  "workflow": who * (300 + n % 700), "code": {}, "input": None,
                  "created": f"2026-01-01T00:00:00.{n:06d}+00:00"}
        store.create(execution_id, header, "os").close()
        if n % 50 == 0:
            store.list(limit=5)
    """
)


def test_processes_making_executions_at_once_keep_every_line_whole(tmp_path: Path) -> None:
    """Four processes make executions, each line 0.3 to 1 KB, and list now and then: every line
    of the index checks out, and it names every journal."""
    FileStore(tmp_path)._ensure_dirs()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    makers = [
        subprocess.Popen([sys.executable, "-c", MAKER, str(tmp_path), who, "150"], env=env)
        for who in ("a", "b", "c", "d")
    ]
    for maker in makers:
        assert maker.wait(timeout=300) == 0
    data = index_path(tmp_path).read_bytes()
    index = file_list_index.read(str(tmp_path / "executions"))
    lines = [line for line in data.splitlines() if line]  # an empty line is nothing (SPEC.md 1)
    assert data.endswith(b"\n") and index.lines == len(lines) >= 600
    assert index.good == index.lines  # no line broken by another's write
    journals = {p.stem: p.stat().st_ino for p in (tmp_path / "executions").glob("*.jsonl")}
    assert len(journals) == 600 and ids_in(tmp_path) == journals
    assert listings(tmp_path) == without_index(tmp_path)


# -- settled states ------------------------------------------------------------------------------


def damage_keeping_size_and_time(path: Path) -> None:
    """Overwrites a journal in place with bytes of the same length and puts its time back: a
    change only a reader of its bytes can see."""
    st = path.stat()
    path.write_bytes(b"x" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_ino == st.st_ino


def statuses(home: Path) -> dict[str, str]:
    return {s.execution_id: str(s.status) for s in FileStore(home).list().items}


def test_a_settled_execution_is_listed_from_its_state_in_the_index_without_reading_its_journal(
    tmp_path: Path,
) -> None:
    build(tmp_path)
    first = statuses(tmp_path)  # learns the states
    assert first["e023"] == "completed"
    journal = tmp_path / "executions" / "e023.jsonl"
    damage_keeping_size_and_time(journal)
    # The index's state names this file, size and time: the listing opens neither the journal
    # nor its summary (SPEC.md 1: what the index does not see)...
    assert statuses(tmp_path) == first
    # ...while a reader of the journal sees the damage,
    from flux._engine.errors import JournalCorruptError

    try:
        FileStore(tmp_path).read("e023")
        raise AssertionError("the damaged journal was read")
    except JournalCorruptError:
        pass
    # and without its state line the listing reads it and says so.
    kept = [line for line in index_lines(tmp_path) if not (b'"id":"e023"' in line and b'"status"' in line)]
    index_path(tmp_path).write_bytes(b"".join(kept))
    assert statuses(tmp_path)["e023"] == "damaged"


def test_a_state_counts_only_while_the_journal_is_that_file_size_and_time(tmp_path: Path) -> None:
    import asyncio

    from flux.client import Client
    from tests.test_client import ordered

    async def start(n: int) -> None:
        async with Client(str(tmp_path)) as client:
            for i in range(n):
                await (await client.start(ordered, f"s{i}", execution_id=f"s{i:02d}")).result()

    asyncio.run(start(20))  # more than a listing reads one by one: it reads the index
    assert set(statuses(tmp_path).values()) == {"paused"}
    assert sum(b'"status":"paused"' in line for line in index_lines(tmp_path)) == 20

    async def resume() -> None:
        async with Client(str(tmp_path)) as client:
            await client.resume("s03", "yes")
            await client.result("s03", timeout=10)

    asyncio.run(resume())  # the journal grew: its paused state no longer counts
    assert statuses(tmp_path)["s03"] == "completed"
    assert b'"id":"s03"' in index_lines(tmp_path)[-1] and b'"status":"completed"' in index_lines(tmp_path)[-1]
    # Touched (same bytes, another time): read again, and its state written again.
    journal = tmp_path / "executions" / "s05.jsonl"
    os.utime(journal, ns=(journal.stat().st_atime_ns, journal.stat().st_mtime_ns + 1_000_000))
    before = len(index_lines(tmp_path))
    assert statuses(tmp_path)["s05"] == "paused"
    assert len(index_lines(tmp_path)) == before + 1
    # Copied over by another file (another inode): the line does not name it.
    copy = tmp_path / "s07.copy"
    shutil.copy2(tmp_path / "executions" / "s03.jsonl", copy)
    data = copy.read_bytes()
    (tmp_path / "executions" / "s07.jsonl").unlink()
    os.rename(copy, tmp_path / "executions" / "s07.jsonl")
    assert data and statuses(tmp_path).get("s07") == "damaged"  # s03's lines under s07's name


def test_a_state_line_of_the_wrong_shape_is_not_believed(tmp_path: Path) -> None:
    build(tmp_path)
    statuses(tmp_path)
    journal = tmp_path / "executions" / "e023.jsonl"
    st = journal.stat()
    damage_keeping_size_and_time(journal)
    state = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "records": 3}
    head = {"created": created_at(7), "workflow": "gamma", "parent": None, "schedule": None}

    def listed_with(line: dict[str, Any]) -> str:
        lines = [x for x in index_lines(tmp_path) if b'"id":"e023"' not in x]
        seed = file_list_index._SEED
        line = encode_line({"id": "e023", "ino": st.st_ino, **line}, seed)
        index_path(tmp_path).write_bytes(b"".join([*lines, line]))
        return statuses(tmp_path)["e023"]

    assert listed_with({**head, **state, "status": "failed"}) == "failed"  # believed: the shape holds
    for wrong in (
        {**head, **state, "status": "running"},  # a status the journal alone does not settle
        {**head, **state, "status": "interrupted"},
        {**head, **state, "records": "3", "status": "failed"},
        {**head, "size": st.st_size, "records": 3, "status": "failed"},
        {**head, **state, "status": ["failed"]},
        {**head, **state, "status": {"failed": True}},
        {**head, **state, "status": None},
        {**head, **state, "status": "failed", "deleted": True},
        {**head, **state, "parent": 5, "status": "failed"},
    ):
        assert listed_with(wrong) == "damaged", wrong
