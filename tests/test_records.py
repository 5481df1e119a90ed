"""Record kinds as classes: every record a run writes is as its kind's class declares, field for
field and in order, and a record of the wrong shape is damage with its path:line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux import ExecutionContext, Saga, task, workflow
from flux._engine import records as R
from flux._engine.errors import ExecutionError, JournalCorruptError
from flux._engine.history import History, fold
from flux._engine.journal import check_journal, encode_line, seed_for
from flux.clock import VirtualClock
from flux.tasks import call, now, pause, sleep


@task.with_options(retry_max_attempts=1, retry_delay=1)
async def flaky(x: int) -> int:
    if not FLAKY:
        FLAKY.append(1)
        raise ValueError("once")
    return x


FLAKY: list[int] = []


@task.with_options(fallback=lambda x: -x)
async def broken(x: int) -> int:
    raise RuntimeError("always")


@task
async def undo(x: Any) -> None:
    return None


@workflow
async def child(ctx: ExecutionContext[int]) -> int:
    return ctx.input + 1


@workflow
async def every_kind(ctx: ExecutionContext[int]) -> Any:
    got = await flaky(ctx.input)
    fell = await broken(2)
    if ctx.patched("new-path"):
        got += 1
    when = await now()
    await sleep(1)
    kid = await call(child, 3)
    answer = await asyncio.gather(pause("a"), pause("b"))
    try:
        async with Saga() as saga:
            await saga.step(flaky(1), compensate=undo)
            raise KeyError("compensate")
    except KeyError:
        pass
    return [got, fell, when.year > 2000, kid, answer]


def _lines(path: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]


def test_every_record_a_run_writes_is_as_its_class_declares(home: Path) -> None:
    FLAKY.clear()
    first = every_kind.run(5, clock=VirtualClock())
    assert first.status == "paused"
    every_kind.resume(first.execution_id, "A", pause="a", clock=VirtualClock())
    done = every_kind.resume(first.execution_id, "B", clock=VirtualClock())
    assert done.status == "completed", done.output
    seen = set()
    for path in [done.journal_path, *(str(p) for p in (home / "executions").glob("*-*.jsonl"))]:
        for line in _lines(path):
            line.pop("crc")
            record = R.parse(line)
            assert record.as_dict() == line  # the same fields, in the order written
            assert list(record.as_dict()) == list(line)
            seen.add(record.KIND)
    assert {
        "header",
        "workflow_started",
        "task_started",
        "task_completed",
        "attempt_failed",
        "retry_started",
        "fallback_started",
        "patched",
        "value_recorded",
        "timer_started",
        "timer_fired",
        "workflow_paused",
        "workflow_resumed",
        "workflow_suspended",
        "workflow_completed",
    } <= seen


def test_statuses_are_an_enum_of_strings() -> None:
    assert R.Status.PAUSED == "paused" and str(R.Status.PAUSED) == "paused"
    assert {s.value for s in R.Status} == {
        "created",
        "running",
        "interrupted",
        "paused",
        "completed",
        "failed",
        "cancelled",
        "sleeping",
        "diverged",
    }
    assert R.Status.COMPLETED.finished and not R.Status.PAUSED.finished
    assert R.LIFECYCLE["workflow_suspended"] is R.Status.PAUSED


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (
            {"kind": "attempt_failed", "at": "t", "call_id": "1", "attempt": "0", "error": {}, "retry_at": None},
            "'attempt' is a string",
        ),
        (
            {"kind": "timer_started", "at": "t", "call_id": "1", "name": "sleep", "wake_at": "soon", "src": "x:1"},
            "'wake_at' is a string",
        ),
        ({"kind": "workflow_paused", "at": "t", "call_id": ["1"], "name": "p", "src": "x:1"}, "'call_id' is an array"),
        ({"kind": "patched", "at": 5, "change_id": "x"}, "'at' is a number"),
        ({"kind": "workflow_completed", "at": "t"}, "without its 'value' field"),
        ({"kind": "handler", "at": "t", "call_id": "1"}, "unknown record kind 'handler'"),
        ({"kind": "cancel_requested", "at": "t", "extra": 1}, "unknown field 'extra'"),
    ],
)
def test_a_record_not_as_its_class_declares_is_damage_at_its_line(record: dict[str, Any], problem: str) -> None:
    execution_id = "e1"
    head = {
        "seq": 0,
        "kind": "header",
        "format": 1,
        "execution_id": execution_id,
        "workflow": "w",
        "code": {},
        "input": None,
        "created": "t",
    }
    data = encode_line(dict(head), seed_for(execution_id)) + encode_line({"seq": 1, **record}, seed_for(execution_id))
    read = check_journal(data, "j.jsonl", execution_id)
    with pytest.raises(JournalCorruptError, match=f"j.jsonl:2: .*{problem}"):
        History("j.jsonl", read.offsets, read.records).apply_all(read.records)


def test_a_header_with_a_code_that_is_not_an_object_is_damage() -> None:
    execution_id = "e1"
    head = {
        "seq": 0,
        "kind": "header",
        "format": 1,
        "execution_id": execution_id,
        "workflow": "w",
        "code": "x.py",
        "input": None,
        "created": "t",
    }
    with pytest.raises(JournalCorruptError, match="'code' is a string"):
        fold(check_journal(encode_line(head, seed_for(execution_id)), "j", execution_id).records)


def test_the_fold_keeps_every_waiting_pause_and_the_status() -> None:
    records = [
        {
            "seq": 0,
            "kind": "header",
            "format": 1,
            "execution_id": "e",
            "workflow": "w",
            "code": {},
            "input": None,
            "created": "t",
        },
        {"seq": 1, "kind": "workflow_started", "at": "t"},
        {"seq": 2, "kind": "workflow_paused", "at": "t", "call_id": "1.1", "name": "a", "src": "x:1"},
        {"seq": 3, "kind": "workflow_paused", "at": "t", "call_id": "2.1", "name": "b", "src": "x:2"},
        {"seq": 4, "kind": "workflow_resumed", "at": "t", "call_id": "1.1", "input": 1},
        {"seq": 5, "kind": "workflow_suspended", "at": "t", "waiting": ["2.1"]},
    ]
    history = fold(records)
    assert list(history.waiting) == ["2.1"] and history.status == R.Status.PAUSED
    assert history.calls["1.1"].resumed is not None and history.calls["1.1"].done
    bad = [*records[:5], {"seq": 5, "kind": "workflow_suspended", "at": "t", "waiting": ["1.1"]}]
    with pytest.raises(JournalCorruptError, match="not a waiting pause"):
        fold(bad)


def test_an_execution_error_round_trips_through_its_record(home: Path) -> None:
    @task
    async def boom() -> None:
        raise ValueError("no")

    @workflow
    async def fails(ctx: ExecutionContext[None]) -> None:
        await boom()

    ctx = fails.run()
    assert isinstance(ctx.output, ExecutionError)
    failed = [r for r in _lines(ctx.journal_path) if r["kind"] == "workflow_failed"][0]
    assert failed["error"]["$error"] == "flux.errors:ExecutionError"
