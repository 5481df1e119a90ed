"""Replay snapshots (SPEC.md 2.3): a paused run saves its replay index, a resume reads only what
follows it, and nothing about the journal's checks or a run's result depends on the snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux import ExecutionContext, task, workflow
from flux._engine.clock import VirtualClock
from flux._engine.errors import JournalCorruptError
from flux._engine.history import CallHistory
from flux._engine.history import History as ReplayIndex
from flux._engine.journal import encode_line_body, read_journal, seed_for
from flux._engine.snapshot import Snapshot
from flux._engine.stores.files import FileStore
from flux.errors import ExecutionError
from flux.tasks import now, pause, sleep

RAN: list[str] = []


@task
async def double(x: int) -> int:
    RAN.append(f"double {x}")
    return 2 * x


@task
async def refuse(x: int) -> int:
    RAN.append(f"refuse {x}")
    raise ValueError(f"no {x}")


@task.with_options(retry_max_attempts=2, retry_delay=5)
async def flaky(x: int) -> int:
    RAN.append(f"flaky {x}")
    if sum(1 for r in RAN if r == f"flaky {x}") < 2:
        raise ConnectionError("try again")
    return x


@task.with_options(fallback=lambda x: -x)
async def with_fallback(x: int) -> int:
    RAN.append(f"with_fallback {x}")
    raise RuntimeError("down")


@workflow
async def varied(ctx: ExecutionContext[int]) -> dict[str, Any]:
    """Every kind of call a replay index keeps: tasks that completed, failed, retried, fell back,
    ran in parallel; a recorded value; a durable timer; a change marker; pauses resumed."""
    out: dict[str, Any] = {"doubled": [await double(i) for i in range(ctx.input)]}
    try:
        await refuse(1)
    except ExecutionError as err:
        out["refused"] = str(err.inner_exception)
    out["flaky"] = await flaky(3)
    out["fallback"] = await with_fallback(4)
    out["parallel"] = list(await asyncio.gather(*(double(10 + i) for i in range(3))))
    out["year"] = (await now()).year
    await sleep(30)
    out["patched"] = ctx.patched("v2")
    out["first"] = await pause("first")
    out["second"] = await pause("second")
    out["last"] = await double(100)
    return out


def _journal(home: Path, execution_id: str) -> Path:
    return home / "executions" / f"{execution_id}.jsonl"


def _snapshot(home: Path, execution_id: str) -> Path:
    return home / "executions" / f"{execution_id}.index"


def _index_state(index: ReplayIndex) -> dict[str, Any]:
    # Every slot but the journal's source, which must be the index's own, and `rare`, whose
    # fields are compared one by one: a slot left unset fails here.
    assert all(c.source is index.source for c in index.calls.values())
    plain = [s for s in CallHistory.__slots__ if s not in ("source", "rare")]
    calls = {
        call_id: (
            *(getattr(c, s) for s in plain),
            c.resumed, c.failures, c.retries, c.handlers, c.cancelled, c.child,
        )
        for call_id, c in index.calls.items()
    }
    return {
        "calls": calls, "pending_pause": index.pending_pause, "final": index.final, "markers": index.markers,
        "cancel_requested": index.cancel_requested, "status": index.status, "next_seq": index.next_seq,
    }


def _paused_twice(home: Path) -> str:
    """An execution of `varied` paused at its second pause; returns its id."""
    RAN.clear()
    clock = VirtualClock()
    first = varied.run(3, store=str(home), clock=clock)
    assert first.is_paused
    again = varied.resume(first.execution_id, "one", store=str(home), clock=clock)
    assert again.is_paused
    return first.execution_id


def test_the_index_restored_from_a_snapshot_equals_the_index_read_from_the_journal(tmp_path: Path) -> None:
    execution_id = _paused_twice(tmp_path)
    path = str(_journal(tmp_path, execution_id))
    assert _snapshot(tmp_path, execution_id).exists()

    full = ReplayIndex(path)
    read = read_journal(path, execution_id, visit=full.apply_all)
    full.journal = read.records

    snapshot = Snapshot.parse(_snapshot(tmp_path, execution_id).read_bytes(), execution_id)
    assert snapshot is not None and snapshot.size == read.valid_size and snapshot.records == len(read.records)
    restored = ReplayIndex(path)
    restored.journal = read.records
    snapshot.restore(restored)

    assert _index_state(restored) == _index_state(full)
    kinds = {c.kind for c in full.calls.values()}
    assert kinds == {"task", "value", "timer", "pause"}
    assert any(c.failures for c in full.calls.values()) and any(c.handlers for c in full.calls.values())
    assert any(c.resumed for c in full.calls.values()) and any(c.end == "task_failed" for c in full.calls.values())
    # A call's records are parsed from the journal on demand, whichever way the index was built.
    for call_id, call in restored.calls.items():
        assert call.start == full.calls[call_id].start and call.start["call_id"] == call_id
        assert call.outcome == full.calls[call_id].outcome


def test_resuming_with_or_without_the_snapshot_gives_the_same_run(tmp_path: Path) -> None:
    with_snapshot = tmp_path / "with"
    without = tmp_path / "without"
    results = []
    for home in (with_snapshot, without):
        execution_id = _paused_twice(home)
        if home == without:
            _snapshot(home, execution_id).unlink()
        RAN.clear()
        done = varied.resume(execution_id, "two", store=str(home), clock=VirtualClock())
        assert done.has_succeeded, done.output
        assert RAN == ["double 100"]  # nothing recorded ran again
        lines = [orjson.loads(line) for line in _journal(home, execution_id).read_bytes().splitlines()]
        results.append((done.output, [(r["seq"], r["kind"], r.get("call_id")) for r in lines], len(done.events)))
        assert not _snapshot(home, execution_id).exists()  # finished: the snapshot is removed
    assert results[0] == results[1]
    assert results[0][0]["second"] == "two" and results[0][0]["first"] == "one"


@pytest.mark.parametrize(
    "damage",
    [
        b"not json",
        b"",
        b'{"snapshot": 99}',
        b'{"snapshot":1,"execution_id":"someone-else","size":1,"records":1,"prefix_crc":0,"calls":[],"markers":[]}',
        b"flip",  # one bit of a value in an otherwise good snapshot
    ],
)
def test_a_damaged_or_foreign_snapshot_is_ignored(tmp_path: Path, damage: bytes) -> None:
    execution_id = _paused_twice(tmp_path)
    path = _snapshot(tmp_path, execution_id)
    if damage == b"flip":
        good = path.read_bytes()
        at = good.index(b'"double",[2],null,4,') + len(b'"double",[2],null,')
        damage = good[:at] + b"5" + good[at + 1 :]  # double(2) "returned" 5
        assert Snapshot.parse(good, execution_id) is not None
        assert Snapshot.parse(damage, execution_id) is None
    path.write_bytes(damage)
    done = varied.resume(execution_id, "two", store=str(tmp_path), clock=VirtualClock())
    assert done.has_succeeded and done.output["second"] == "two"


@pytest.mark.parametrize(
    "row",
    [
        b'"not a row"',
        b'["1","task","1","double",[0],null,0,"task_completed",4,null]',  # seq as a string
        b'["1","task",1,"double",[0],null,0,"task_completed",99999,null]',  # ends past the prefix
        b'["1","nothing",1,"double",[0],null,0,"task_completed",4,null]',  # an unknown kind
        b'["1","task",1,"double",[0],null,0,"task_completed",4,"rare"]',
        b'["1","task",1,"double"]',
    ],
)
def test_a_sealed_snapshot_with_a_row_of_another_shape_is_not_used(tmp_path: Path, row: bytes) -> None:
    """Rows are checked as the index is built from them: one that is not of the shape written
    (sealed with a good checksum all the same) leaves the index untouched and the journal is
    read whole."""
    execution_id = _paused_twice(tmp_path)
    path = _snapshot(tmp_path, execution_id)
    state = orjson.loads(path.read_bytes())
    del state["crc"]
    state["calls"][0] = orjson.loads(row)
    forged = encode_line_body(orjson.dumps(state), seed_for(execution_id))
    snapshot = Snapshot.parse(forged, execution_id)
    assert snapshot is not None  # its seal and its outline check out: only its rows are wrong
    index = ReplayIndex(str(path))
    assert snapshot.restore(index) is False and index.calls == {}
    path.write_bytes(forged)
    done = varied.resume(execution_id, "two", store=str(tmp_path), clock=VirtualClock())
    assert done.has_succeeded and done.output["doubled"] == [0, 2, 4] and done.output["second"] == "two"


def test_a_snapshot_whose_calls_lie_is_not_used_once_the_journal_changed(tmp_path: Path) -> None:
    """The snapshot vouches for the exact bytes it was built from: change one byte of the
    journal's prefix and the whole journal is checked again, which names the damaged line."""
    execution_id = _paused_twice(tmp_path)
    path = _journal(tmp_path, execution_id)
    data = bytearray(path.read_bytes())
    line = data.index(b'"name":"double"')
    data[line + 9] = ord("D")  # "Double": the line's checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError) as caught:
        varied.resume(execution_id, "two", store=str(tmp_path), clock=VirtualClock())
    assert caught.value.line == bytes(data[:line]).count(b"\n") + 1
    assert "checksum mismatch" in str(caught.value)


def test_lines_after_the_snapshot_are_checked_and_named_by_their_line(tmp_path: Path) -> None:
    execution_id = _paused_twice(tmp_path)
    path = _journal(tmp_path, execution_id)
    before = path.read_bytes()
    snapshot = Snapshot.parse(_snapshot(tmp_path, execution_id).read_bytes(), execution_id)
    assert snapshot is not None and snapshot.size == len(before)
    lines = before.count(b"\n")
    path.write_bytes(before + b'{"seq":%d,"kind":"task_started","crc":"00000000"}\n' % lines)
    with pytest.raises(JournalCorruptError) as caught:
        varied.resume(execution_id, "two", store=str(tmp_path), clock=VirtualClock())
    assert (caught.value.line, caught.value.offset) == (lines + 1, len(before))
    assert "checksum mismatch" in str(caught.value)


def test_a_resume_after_a_crash_uses_the_snapshot_of_the_last_pause(tmp_path: Path) -> None:
    """The execution went on after the snapshot was saved and died: the snapshot still covers
    the journal's prefix, and what follows is read from the journal."""
    execution_id = _paused_twice(tmp_path)
    path = _journal(tmp_path, execution_id)
    store = FileStore(str(tmp_path))
    lease = store.acquire(execution_id, "fsync")
    lease.writer.append({"seq": 0, "kind": "workflow_resumed", "at": "2026-01-01T00:00:00.000000+00:00",
                         "call_id": lease.read.records[-1]["call_id"], "input": "two"})
    lease.writer.sync()
    lease.close()
    before = path.read_bytes()
    done = varied.resume(execution_id, None, store=str(tmp_path), clock=VirtualClock())
    assert done.has_succeeded and done.output["second"] == "two"
    assert path.read_bytes().startswith(before)


def test_a_snapshot_that_is_a_symbolic_link_is_neither_read_nor_written_through(tmp_path: Path) -> None:
    home = tmp_path / "store"
    first = varied.run(3, store=str(home), clock=VirtualClock())
    real = _snapshot(home, first.execution_id)
    # A lying snapshot outside the store, sealed with a good checksum: double(0) "returned" 999.
    body = real.read_bytes()
    body = body[: body.rindex(b',"crc":"')] + b"}"
    lie = encode_line_body(
        body.replace(b'"double",[0],null,0,', b'"double",[0],null,999,'), seed_for(first.execution_id)
    )
    assert Snapshot.parse(lie, first.execution_id) is not None and lie != real.read_bytes()
    target = tmp_path / "outside.index"
    target.write_bytes(lie)
    real.unlink()
    real.symlink_to(target)
    again = varied.resume(first.execution_id, "one", store=str(home), clock=VirtualClock())
    assert again.is_paused
    done = varied.resume(first.execution_id, "two", store=str(home), clock=VirtualClock())
    assert done.output["doubled"] == [0, 2, 4]
    assert target.read_bytes() == lie  # the link was replaced, its target never written
