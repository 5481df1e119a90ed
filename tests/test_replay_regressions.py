"""Replay cases that once went wrong: nested task calls, a cancelled pause replayed, several
pauses waiting at once, and cancellation of a workflow whose sub-workflow runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, Saga, runner, task, workflow
from flux.client import Client
from flux.debug import replay
from flux.errors import ExecutionStateError
from flux.golden import replay_one
from flux.recover import recover_store
from flux.tasks import call, now, pause, sleep
from tests.support.cli import invoke
from tests.support.journals import cut_after, records

RAN: list[str] = []


# -- a task whose body calls tasks, sleep and now ------------------------------------------------


@task
async def inner(x: int) -> int:
    RAN.append(f"inner {x}")
    return x + 1


@task
async def outer(x: int) -> int:
    RAN.append(f"outer {x}")
    first = await inner(x)
    stamp = await now()
    await sleep(0)
    return first + (0 if stamp.year > 2000 else 1)


@workflow
async def nested(ctx: ExecutionContext[int]) -> int:
    value = await outer(ctx.input)
    answer = await pause("more")
    return value + answer


def test_a_task_whose_body_awaited_tasks_sleep_and_now_resumes_after_a_pause(home: Path) -> None:
    RAN.clear()
    first = nested.run(1)
    assert first.status == "paused"
    calls = {r["call_id"]: r["kind"] for r in records(first.journal_path) if "call_id" in r}
    assert calls["1.1"] == "task_completed" and calls["1.2"] == "value_recorded" and calls["1.3"] == "timer_fired"
    RAN.clear()
    done = nested.resume(first.execution_id, 10)
    assert done.status == "completed" and done.output == 12
    assert RAN == []  # the outer call's recorded result came back; nothing ran again
    report = replay(done.journal_path)
    assert report.divergence is None and report.matches, report.note


def test_a_crash_after_such_a_task_resumes_and_recovers(home: Path) -> None:
    first = nested.run(2)
    # The process died right after the outer task's result was written.
    cut_after(first, kind="task_completed", call_id="1")
    RAN.clear()
    [row] = recover_store(str(home))
    assert row.error is None and row.status == "paused", row.error
    assert RAN == []
    assert nested.resume(first.execution_id, 5).output == 8


@task.with_options(retry_max_attempts=2, retry_delay=0)
async def outer_that_retries(x: int) -> int:
    value = await inner(x)
    if len([r for r in RAN if r.startswith("inner")]) < 2:
        raise ValueError("first attempt fails after its nested call")
    return value


@workflow
async def retried(ctx: ExecutionContext[int]) -> int:
    value = await outer_that_retries(ctx.input)
    await pause("after")
    return value


def test_a_retry_runs_the_nested_calls_of_its_own_attempt_and_replays(home: Path) -> None:
    RAN.clear()
    first = retried.run(3)
    assert first.status == "paused", first.output
    started = [r["call_id"] for r in records(first.journal_path) if r["kind"] == "task_started"]
    assert started == ["1", "1.1", "1.a1.1"]  # the retry's nested call has an id of its own
    assert retried.resume(first.execution_id, None).output == 4


# -- a cancelled pause, replayed -----------------------------------------------------------------


@task
async def book(x: int) -> str:
    return f"booked {x}"


@task
async def unbook(ref: str) -> str:
    RAN.append(f"unbook {ref}")
    return "undone"


@workflow
async def approval(ctx: ExecutionContext[int]) -> str:
    async with Saga() as saga:
        ref = await saga.step(book(ctx.input), compensate=unbook)
        await pause("approve")
        return ref


def test_a_cancelled_pause_replays_as_recorded_everywhere(home: Path) -> None:
    RAN.clear()
    first = approval.run(4)
    assert first.status == "paused"
    assert runner.cancel_execution(first.execution_id) == "cancelled"
    assert RAN == ["unbook booked 4"]
    kinds = [r["kind"] for r in records(first.journal_path)]
    assert kinds[-1] == "workflow_cancelled" and "cancel_requested" in kinds
    report = replay(first.journal_path)
    assert report.divergence is None and report.matches and report.status == "cancelled", report.note
    assert replay_one(first.journal_path).ok
    result = invoke("replay", first.execution_id, "--store", str(home))
    assert result.exit_code == 0, result.output


# -- several pauses waiting at once --------------------------------------------------------------


@workflow
async def two_gates(ctx: ExecutionContext[None]) -> list[Any]:
    return list(await asyncio.gather(pause("a"), pause("b")))


def test_two_pauses_wait_at_once_and_each_gets_its_own_answer(home: Path) -> None:
    first = two_gates.run()
    assert first.status == "paused"
    view = Client(str(home)).view(first.execution_id)
    assert sorted(w.name for w in view.waiting) == ["a", "b"]
    # Without a name, the resume is refused: one input cannot answer two pauses.
    refused = invoke("resume", first.execution_id, "--input", '"x"')
    assert refused.exit_code == 2 and "ExecutionStateError" in refused.output and "2 pauses" in refused.output
    assert Client(str(home)).view(first.execution_id).status == "paused"
    with pytest.raises(ExecutionStateError, match="no pause 'c'"):
        two_gates.resume(first.execution_id, "x", pause="c")
    after_a = invoke("resume", first.execution_id, "--input", '"for a"', "--pause", "a")
    assert after_a.exit_code == 0, after_a.output
    assert "status: paused" in after_a.output
    assert [w.name for w in Client(str(home)).view(first.execution_id).waiting] == ["b"]
    assert records(first.journal_path)[-1]["kind"] == "workflow_suspended"
    done = two_gates.resume(first.execution_id, "for b")  # the only one left: no name needed
    assert done.status == "completed" and done.output == ["for a", "for b"]
    assert replay(done.journal_path).matches


# -- cancelling a parent whose sub-workflow runs -------------------------------------------------


@task
async def slow_step(x: int) -> int:
    await asyncio.sleep(30)
    return x


@workflow
async def slow_kid(ctx: ExecutionContext[int]) -> int:
    async with Saga() as saga:
        await saga.step(book(ctx.input), compensate=unbook)
        return await slow_step(ctx.input)


@workflow
async def waits_for_kid(ctx: ExecutionContext[int]) -> int:
    return await call(slow_kid, ctx.input)


@workflow
async def kid_at_gate(ctx: ExecutionContext[int]) -> Any:
    async with Saga() as saga:
        await saga.step(book(ctx.input), compensate=unbook)
        return await pause("gate")


@workflow
async def parent_of_gate(ctx: ExecutionContext[int]) -> Any:
    return await call(kid_at_gate, ctx.input)


def test_cancelling_a_running_parent_cancels_its_running_child(home: Path) -> None:
    RAN.clear()

    async def scenario() -> tuple[str, str]:
        async with Client(str(home)) as client:
            handle = await client.start(waits_for_kid, 5)
            child_id = f"{handle.execution_id}-1"
            for _ in range(500):  # until the child's slow task body runs
                if client.store.exists(child_id) and any(
                    r["kind"] == "task_started" and r["name"] == "slow_step"
                    for r in client.store.read(child_id).records
                ):
                    break
                await asyncio.sleep(0.01)
            status = await client.cancel(handle.execution_id)
            return status, child_id

    status, child_id = asyncio.run(scenario())
    assert status == "cancelled"
    child = records(home / "executions" / f"{child_id}.jsonl")
    assert child[-1]["kind"] == "workflow_cancelled"
    assert any(r["kind"] == "task_cancelled" for r in child)
    assert RAN == ["unbook booked 5"]  # the child's saga compensated
    assert recover_store(str(home)) == []  # nothing is left for recovery to run


def test_cancelling_a_paused_parent_cancels_the_child_it_waits_in(home: Path) -> None:
    RAN.clear()
    first = parent_of_gate.run(6)
    assert first.status == "paused"
    assert runner.cancel_execution(first.execution_id) == "cancelled"
    child = records(home / "executions" / f"{first.execution_id}-1.jsonl")
    assert child[-1]["kind"] == "workflow_cancelled"
    assert RAN == ["unbook booked 6"]
    parent_records = records(first.journal_path)
    assert parent_records[-1]["kind"] == "workflow_cancelled"
    assert replay(first.journal_path).matches
