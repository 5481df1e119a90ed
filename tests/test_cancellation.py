"""Cancellation in process: a paused, a running and an interrupted execution are cancelled, their
sagas compensate and WORKFLOW_CANCELLED is recorded; a finished one cannot be (`flux cancel` from
another process is tested in tests/test_builtins_crash.py)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, Saga, runner, task, workflow
from flux.errors import ExecutionStateError
from flux.tasks import parallel, pause
from tests.builtin_workflows import LOG, hang, piped, ran, reset
from tests.support.journals import cut_after, events, records
from tests.support.processes import wait_for


@pytest.fixture(autouse=True)
def _reset() -> None:
    reset()


@task
async def book(n: int) -> str:
    ran()
    LOG.append(f"book{n}")
    return f"ref{n}"


@task
async def unbook(ref: str) -> None:
    ran()
    LOG.append(f"undo:{ref}")


@workflow
async def trip(ctx: ExecutionContext[str]) -> Any:
    async with Saga() as saga:
        await saga.step(book(1), compensate=unbook)
        await saga.step(book(2), compensate=unbook)
        if ctx.input == "pause":
            answer = await pause("approve")
        else:
            answer = await parallel(hang(3), hang(4))
        await saga.step(book(5), compensate=unbook)
    return answer


def test_cancelling_a_paused_execution_compensates_and_records_workflow_cancelled(home: Path) -> None:
    first = trip.run("pause")
    assert first.status == "paused" and LOG == ["book1", "book2"]
    cancelled = trip.cancel(first.execution_id)
    assert cancelled.status == "cancelled"
    assert LOG == ["book1", "book2", "undo:ref2", "undo:ref1"]
    assert events(cancelled)[-7:] == [
        ("WORKFLOW_RESUMED", "wf"), ("WORKFLOW_CANCELLING", "wf"),
        ("TASK_STARTED", 'unbook("ref2")'), ("TASK_COMPLETED", 'unbook("ref2")'),
        ("TASK_STARTED", 'unbook("ref1")'), ("TASK_COMPLETED", 'unbook("ref1")'),
        ("WORKFLOW_CANCELLED", "wf"),
    ]
    # A later resume reports the cancellation instead of running anything.
    LOG.clear()
    again = trip.resume(first.execution_id, "approved")
    assert again.status == "cancelled" and again.is_cancelled and LOG == []
    assert records(again)[-1]["kind"] == "workflow_cancelled"
    with pytest.raises(ExecutionStateError, match="has already cancelled"):
        runner.cancel_execution(first.execution_id)


def test_cancelling_a_running_execution_through_the_api(home: Path) -> None:
    result: dict[str, ExecutionContext[Any]] = {}
    thread = threading.Thread(target=lambda: result.update(ctx=trip.run("run")))
    thread.start()
    try:
        wait_for(lambda: {"start:3", "start:4"} <= set(LOG), timeout=10, what="both hanging bodies to start")
        (execution_id,) = [p.stem for p in (home / "executions").glob("*.jsonl")]
        status = runner.cancel_execution(execution_id)
    finally:
        thread.join(timeout=30)
    assert status == "cancelled"
    ctx = result["ctx"]
    assert ctx.status == "cancelled"
    assert LOG == ["book1", "book2", "start:3", "start:4", "undo:ref2", "undo:ref1"]  # the hanging bodies never ended
    tail = events(ctx)[-7:]
    assert sorted(tail[:2]) == [("TASK_CANCELLED", "hang(3)"), ("TASK_CANCELLED", "hang(4)")]
    assert tail[2:] == [
        ("TASK_STARTED", 'unbook("ref2")'), ("TASK_COMPLETED", 'unbook("ref2")'),
        ("TASK_STARTED", 'unbook("ref1")'), ("TASK_COMPLETED", 'unbook("ref1")'),
        ("WORKFLOW_CANCELLED", "wf"),
    ]
    assert not (home / "executions" / f"{execution_id}.cancel").exists()


@task
async def charge(n: int) -> str:
    ran()
    LOG.append(f"charge-start:{n}")
    await asyncio.sleep(0.1)
    LOG.append(f"charge-end:{n}")
    return f"ref{n}"


@workflow
async def checkout(ctx: ExecutionContext[None]) -> str:
    async with Saga() as saga:
        await saga.step(book(1), compensate=unbook)
        await saga.step(charge(2), compensate=unbook)
        await saga.step(book(3), compensate=unbook)
    return "ok"


def test_cancelling_an_interrupted_execution_does_not_start_the_interrupted_call_again(home: Path) -> None:
    first = checkout.run()
    cut_after(first, kind="task_started", name="charge")  # the process died while charge(2) ran
    LOG.clear()
    cancelled = checkout.cancel(first.execution_id)
    assert cancelled.status == "cancelled"
    assert LOG == ["undo:ref1"]


def test_cancelling_a_finished_execution_is_refused(home: Path) -> None:
    done = piped.run(1)
    with pytest.raises(ExecutionStateError, match="has already completed; there is nothing to cancel"):
        runner.cancel_execution(done.execution_id)
