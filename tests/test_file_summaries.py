"""The file store's summaries (SPEC.md 1): every status lists the same from a summary as from the
journal read whole; a summary older than its journal is read on from where it ends; a summary that
does not describe the journal (garbage, another execution's, a longer journal's, a journal changed
in place) is ignored; torn and damaged tails list as the journal says; delete removes summaries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from flux._engine.journal import encode_line, seed_for
from flux._engine.records import Status
from flux._engine.stores.file_summaries import load
from flux._engine.stores.files import FileStore
from tests.stores.test_contract import AT, completed, header, make, started, task_completed, task_started

PAUSED = {"seq": 0, "kind": "workflow_paused", "at": AT, "call_id": "1", "name": "p", "src": "x:1"}
FAILED = {"seq": 0, "kind": "workflow_failed", "at": AT, "error": {"$error": "builtins:ValueError", "msg": "no"}}
CANCELLED = {"seq": 0, "kind": "workflow_cancelled", "at": AT}


def statuses(home: Path) -> dict[str, tuple[str, int]]:
    """Each execution's (status, records) as a new FileStore lists it."""
    return {s.execution_id: (str(s.status), s.records) for s in FileStore(home).list().items}


def summary_file(home: Path, execution_id: str) -> Path:
    return home / "executions" / f"{execution_id}.summary"


def append_lines(home: Path, execution_id: str, *records: dict[str, Any]) -> None:
    """Appends records as a writer that died before its summary was written leaves them."""
    path = home / "executions" / f"{execution_id}.jsonl"
    seq = len(path.read_bytes().splitlines())
    with open(path, "ab") as f:
        for i, record in enumerate(records):
            f.write(encode_line({**record, "seq": seq + i}, seed_for(execution_id)))


def test_every_status_lists_the_same_from_its_summary_as_from_the_journal(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    make(store, "created1")
    make(store, "done1", started(), completed(3))
    make(store, "failed1", started(), FAILED)
    make(store, "paused1", started(), PAUSED)
    make(store, "cancelled1", started(), CANCELLED)
    make(store, "gone1", started())  # its owner went away while it ran
    make(store, "diverged1", started())
    store.mark_diverged("diverged1", {"message": "changed"})
    make(store, "damaged1", started(), completed(1))
    expected = {
        "created1": ("created", 1), "done1": ("completed", 3), "failed1": ("failed", 3), "paused1": ("paused", 3),
        "cancelled1": ("cancelled", 3), "gone1": ("interrupted", 2), "diverged1": ("diverged", 2),
        "damaged1": ("damaged", 0),
    }
    kept = {p.stem for p in (tmp_path / "executions").glob("*.summary")}
    # Written by each writer that wrote a status; a created one has no status record to keep.
    assert kept == set(expected) - {"created1"}
    journal = tmp_path / "executions" / "damaged1.jsonl"
    data = journal.read_bytes()
    journal.write_bytes(data[:40] + b"X" + data[41:])  # same size, changed in place
    assert statuses(tmp_path) == expected
    for p in (tmp_path / "executions").glob("*.summary"):
        p.unlink()
    assert statuses(tmp_path) == expected  # read whole: the same


def test_a_summary_older_than_its_journal_is_read_on_from_where_it_ends(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    make(store, "a", started(), PAUSED)
    before = load(str(summary_file(tmp_path, "a")), "a")
    assert before is not None and before.status == "paused" and before.records == 3
    # a crash between these appends and the summary the writer would have written
    resumed = {"seq": 0, "kind": "workflow_resumed", "at": AT, "call_id": "1", "input": 1}
    append_lines(tmp_path, "a", resumed, task_started("2"), task_completed("2", 5))
    assert statuses(tmp_path)["a"] == ("interrupted", 6)  # running, nobody owns it
    append_lines(tmp_path, "a", completed(5))
    assert statuses(tmp_path)["a"] == ("completed", 7)
    after = load(str(summary_file(tmp_path, "a")), "a")  # the listing kept what it learnt
    assert after is not None and (after.status, after.records) == ("completed", 7)
    assert after.size == (tmp_path / "executions" / "a.jsonl").stat().st_size


def test_a_summary_that_does_not_describe_the_journal_is_ignored(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    make(store, "a", started(), PAUSED)
    make(store, "b", started(), completed(1))
    journal = tmp_path / "executions" / "a.jsonl"
    good = summary_file(tmp_path, "a").read_bytes()
    for bad in (b"", b"garbage\n", good[:-5], good.replace(b'"paused"', b'"failed"'),
                summary_file(tmp_path, "b").read_bytes()):  # another execution's: its checksum differs
        summary_file(tmp_path, "a").write_bytes(bad)
        assert statuses(tmp_path)["a"] == ("paused", 3), bad
    # a summary of a longer journal than the one there now (the journal cut back)
    lines = journal.read_bytes().splitlines(keepends=True)
    summary_file(tmp_path, "a").write_bytes(good)
    journal.write_bytes(b"".join(lines[:2]))
    assert statuses(tmp_path)["a"] == ("interrupted", 2)
    # a journal replaced by another file of the same size and last line
    make(store, "c", started(), completed(1))
    other = tmp_path / "executions" / "c.jsonl"
    data = other.read_bytes()
    other.unlink()
    other.write_bytes(data[:20] + b"\x00" + data[21:])  # a new inode: read whole, and damaged
    assert statuses(tmp_path)["c"][0] == "damaged"


def test_torn_and_damaged_tails_after_a_summary_list_as_the_journal_says(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for name in ("torn", "hole", "bad"):
        make(store, name, started(), completed(1))
    with open(tmp_path / "executions" / "torn.jsonl", "ab") as f:
        f.write(b'{"seq":3,"kind":"workflow_st')  # an incomplete last line: ignored
    line = encode_line({"seq": 3, "kind": "workflow_started", "at": AT}, seed_for("hole"))
    with open(tmp_path / "executions" / "hole.jsonl", "ab") as f:
        f.write(b"\x00" * 64 + line)  # a page never written: a torn tail too (SPEC.md 2.2)
    with open(tmp_path / "executions" / "bad.jsonl", "ab") as f:
        f.write(b'{"seq":3,"kind":"workflow_started","crc":"00000000"}\n')
    listed = statuses(tmp_path)
    assert listed["torn"] == listed["hole"] == ("completed", 3)
    assert listed["bad"] == ("damaged", 0)
    problem = next(s.problem for s in FileStore(tmp_path).list().items if s.execution_id == "bad")
    assert "bad.jsonl:4" in problem and "checksum" in problem


def test_a_listing_with_a_summary_reads_the_journal_only_past_it(tmp_path: Path) -> None:
    """Not a speed test (benchmarks/bench_list.py measures that): the middle of a long journal
    is made unreadable in place, its time put back, and the listing still shows the summary's
    status, so the listing did not read it. Read whole (no summary), the damage is found."""
    store = FileStore(tmp_path)
    calls = [r for i in range(2000) for r in (task_started(str(i)), task_completed(str(i), i))]
    make(store, "long", started(), *calls, completed(0))
    journal = tmp_path / "executions" / "long.jsonl"
    st = journal.stat()
    data = bytearray(journal.read_bytes())
    data[len(data) // 2] ^= 0x01
    journal.write_bytes(bytes(data))
    os.utime(journal, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert statuses(tmp_path)["long"] == ("completed", 4003)
    summary_file(tmp_path, "long").unlink()
    assert statuses(tmp_path)["long"] == ("damaged", 0)


def test_a_run_that_owns_its_journal_lists_as_running_and_readers_keep_no_summary(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    lease = store.create("run1", header("run1"), "fsync")
    try:
        lease.writer.append(started())
        lease.writer.sync()
        assert statuses(tmp_path)["run1"] == ("running", 2)
        assert not summary_file(tmp_path, "run1").exists()
    finally:
        lease.close()
    assert load(str(summary_file(tmp_path, "run1")), "run1") is not None  # its writer kept one
    assert statuses(tmp_path)["run1"] == ("interrupted", 2)


def test_delete_removes_the_summary_and_a_temporary_file_an_older_writer_left(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    make(store, "a", started(), completed(1))
    make(store, "b", started(), completed(1))
    (tmp_path / "executions" / "a.summary.new").write_bytes(b"half")  # older writers renamed one into place
    store.delete("a")
    assert sorted(p.name for p in (tmp_path / "executions").iterdir() if p.name.startswith("a.")) == []
    assert orjson.loads(summary_file(tmp_path, "b").read_bytes())["status"] == "completed"
    assert Status(statuses(tmp_path)["b"][0]) == Status.COMPLETED


def test_a_summary_is_rewritten_in_place_and_cut_to_its_new_length(tmp_path: Path) -> None:
    """No temporary file and no rename (each a directory change): the same file is overwritten."""
    store = FileStore(tmp_path)
    make(store, "a", started(), PAUSED)
    path = summary_file(tmp_path, "a")
    path.write_bytes(path.read_bytes() + b"x" * 500)  # longer than any summary: it must be cut
    first = path.stat()
    lease = store.acquire("a", "fsync")
    try:
        lease.writer.append({"seq": 0, "kind": "workflow_resumed", "at": AT, "call_id": "1", "input": 1})
        lease.writer.append(completed(2))
        lease.writer.sync()
    finally:
        lease.close()
    again = path.stat()
    assert again.st_ino == first.st_ino and again.st_size < first.st_size - 400
    kept = load(str(path), "a")
    assert kept is not None and kept.status == "completed" and kept.records == 5
    assert sorted(p.name for p in (tmp_path / "executions").iterdir()) == [".list", "a.jsonl", "a.lock", "a.summary"]


def test_a_summary_half_overwritten_is_a_miss_and_lists_as_the_journal_says(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    make(store, "a", started(), PAUSED)
    make(store, "b", started(), completed(1))
    a, b = summary_file(tmp_path, "a"), summary_file(tmp_path, "b")
    a.write_bytes(b.read_bytes()[:40] + a.read_bytes()[40:])  # one writer's bytes over another's
    assert load(str(a), "a") is None
    assert statuses(tmp_path)["a"] == ("paused", 3)


def test_a_summary_that_is_a_link_is_never_written_through(tmp_path: Path) -> None:
    """A hard or symbolic link planted under a summary's name leaves the file it names as it
    was; the execution still lists as its journal says."""
    store = FileStore(tmp_path)
    make(store, "a", started())
    make(store, "b", started())
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"keep me\n")
    for execution_id in ("a", "b"):
        summary_file(tmp_path, execution_id).unlink()
    os.link(outside, summary_file(tmp_path, "a"))
    os.symlink(outside, summary_file(tmp_path, "b"))
    for execution_id in ("a", "b"):
        lease = store.acquire(execution_id, "fsync")
        try:
            lease.writer.append(completed(1))
            lease.writer.sync()
        finally:
            lease.close()
    assert outside.read_bytes() == b"keep me\n"
    assert statuses(tmp_path)["a"] == ("completed", 3) and statuses(tmp_path)["b"] == ("completed", 3)
