"""Ownership of an execution (SPEC.md 5): one writer at a time, a stopped owner keeps its
execution, a removed lock file lets nobody in beside the owner, and a writer that lost ownership
by any other means writes nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux._engine.errors import DurabilityError, ExecutionLockedError, JournalCorruptError
from flux._engine.journal import FORMAT_VERSION, read_journal
from flux._engine.stores.files import FileStore
from flux._engine.stores.files import FileWriter as JournalWriter
from tests.conftest import flux_cmd, flux_popen
from tests.support.flows import SQUARES, flows_file
from tests.support.processes import wait_for
from tests.support.projects import count_records, only_journal, run_env, write_project

EID = "owner-1"


def _header(execution_id: str = EID) -> dict[str, Any]:
    return {"seq": 0, "kind": "header", "format": FORMAT_VERSION, "execution_id": execution_id, "workflow": "w",
            "code": {}, "input": None, "created": "2026-01-01T00:00:00.000000+00:00"}


def _resumed(tag: str) -> dict[str, Any]:
    return {"seq": 0, "kind": "workflow_resumed", "at": tag, "pid": 1, "host": "test"}


def _store(tmp_path: Path) -> FileStore:
    store = FileStore(str(tmp_path / "store"))
    store.create(EID, _header(), "os").close()
    return store


def _records(path: str) -> list[dict[str, Any]]:
    return read_journal(path, EID).records


@pytest.mark.slow
def test_a_stopped_owner_keeps_its_execution_and_finishes_after_it_continues(tmp_path: Path) -> None:
    project = write_project(tmp_path, flows_file(SQUARES))
    env = run_env(project, STEP_DELAY="0.1")
    owner = flux_popen("exec", "flows.py", "squares", "--input", "8", cwd=project, env=env)
    try:
        wait_for(lambda: count_records(project, "task_completed") >= 1, proc=owner, what="the owner to complete a task")
        journal = only_journal(project)
        os.kill(owner.pid, signal.SIGSTOP)
        try:
            before = journal.read_bytes()
            second = flux_cmd("resume", journal.stem, cwd=project, env=env)
            assert second.returncode == 2
            assert "ExecutionLockedError" in second.stderr and f"pid {owner.pid}" in second.stderr
            assert journal.read_bytes() == before  # the refused resumer wrote nothing
        finally:
            os.kill(owner.pid, signal.SIGCONT)
        out, err = owner.communicate(timeout=60)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    assert owner.returncode == 0, err
    assert f"output: {sum(i * i for i in range(8))}" in out
    records = read_journal(str(journal), journal.stem).records
    assert [r["kind"] for r in records].count("workflow_resumed") == 0
    assert records[-1]["kind"] == "workflow_completed"


def test_removing_or_replacing_the_lock_file_of_an_owned_execution_lets_nobody_in(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lock = os.path.join(store.dir, EID + ".lock")
    lease = store.acquire(EID, "os")
    try:
        os.unlink(lock)
        with pytest.raises(ExecutionLockedError):
            store.acquire(EID, "os")
        with open(lock + ".new", "wb") as fh:
            fh.write(b"{}")
        os.replace(lock + ".new", lock)
        with pytest.raises(ExecutionLockedError):
            store.acquire(EID, "os")
    finally:
        lease.close()
    store.acquire(EID, "os").close()  # free again once the owner let go


def test_a_writer_that_lost_ownership_writes_nothing_and_stays_stopped(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lease = store.acquire(EID, "fsync")
    path = lease.read.path
    # A process that opened the journal as owner and lost the lock without knowing it.
    stale = JournalWriter.open(read_journal(path, EID), EID, "fsync", path[:-6] + ".torn")
    try:
        lease.writer.append(_resumed("owner"))
        lease.writer.sync()
        before = Path(path).read_bytes()
        stale.append(_resumed("stale"))
        with pytest.raises(DurabilityError, match="another process wrote to it"):
            stale.sync()
        assert Path(path).read_bytes() == before
        with pytest.raises(DurabilityError):
            stale.append(_resumed("stale again"))
        lease.writer.append(_resumed("owner again"))
        lease.writer.sync()
    finally:
        stale.close()
        lease.close()
    assert [r.get("at") for r in _records(path)[1:]] == ["owner", "owner again"]


def test_an_owner_stops_when_someone_else_appended_to_its_journal(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lease = store.acquire(EID, "fsync")
    path = lease.read.path
    intruder = JournalWriter.open(read_journal(path, EID), EID, "fsync", path[:-6] + ".torn")
    try:
        intruder.append(_resumed("intruder"))
        intruder.sync()
        lease.writer.append(_resumed("owner"))
        with pytest.raises(DurabilityError, match=f"left it at {lease.read.valid_size}"):
            lease.writer.sync()
    finally:
        intruder.close()
        lease.close()
    assert [r.get("at") for r in _records(path)[1:]] == ["intruder"]


def test_a_journal_without_a_complete_header_is_damage_and_left_alone(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = Path(store.journal_path(EID))
    cut = path.read_bytes()[:40]
    path.write_bytes(cut)
    with pytest.raises(JournalCorruptError, match="no complete header") as info:
        store.acquire(EID, "os")
    assert info.value.line == 1
    assert path.read_bytes() == cut
    assert not os.path.exists(str(path)[:-6] + ".torn")


def test_the_lock_file_names_the_owner(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lease = store.acquire(EID, "os")
    try:
        holder = orjson.loads(Path(store.dir, EID + ".lock").read_bytes())
        assert holder["pid"] == os.getpid()
        with pytest.raises(ExecutionLockedError, match=f"pid {os.getpid()}"):
            store.acquire(EID, "os")
    finally:
        lease.close()


def test_the_lock_file_is_overwritten_whole_whatever_it_held_before(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lock = Path(store.dir, EID + ".lock")
    for before in (b'{"pid": 1, "host": "' + b"h" * 1000 + b'"}', b"{}", b""):
        lock.write_bytes(before)
        lease = store.acquire(EID, "os")
        try:
            data = lock.read_bytes()
            assert len(data) == 256 and orjson.loads(data)["pid"] == os.getpid(), before[:20]
        finally:
            lease.close()
