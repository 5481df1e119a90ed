"""Runs, pauses and the events Flux programs read: written from Flux's documented examples."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

from flux import ExecutionContext, ExecutionEventType, ExecutionState, task, workflow
from flux.clock import VirtualClock
from flux.tasks import pause

E = ExecutionEventType
SEEN: list[Any] = []


@task
async def process_data(data: str) -> str:
    return data.upper()


@workflow
async def approval_workflow(ctx: ExecutionContext[str]) -> str:
    data = await process_data(ctx.input)
    answer = await pause("manual_approval", output={"review": data})
    SEEN.append(answer)
    return f"Approved: {data}"


def types(ctx: ExecutionContext[Any]) -> list[str]:
    return [e.type.value for e in ctx.events]


def test_running_a_paused_execution_by_id_resumes_it_and_the_pause_returns_none(home: Path) -> None:
    SEEN.clear()
    ctx = approval_workflow.run("order")
    assert ctx.is_paused and ctx.state == ExecutionState.PAUSED
    done = approval_workflow.run(execution_id=ctx.execution_id)
    assert done.has_succeeded and done.output == "Approved: ORDER" and SEEN == [None]
    again = approval_workflow.run(execution_id=ctx.execution_id)  # finished: returned as it is
    assert again.output == "Approved: ORDER" and SEEN == [None]
    assert again.state == ExecutionState.COMPLETED


def test_the_pause_and_its_resume_are_flux_s_events(home: Path) -> None:
    ctx = approval_workflow.run("order")
    paused = [e for e in ctx.events if e.type == E.WORKFLOW_PAUSED]
    assert paused[-1].value == {"name": "manual_approval", "output": {"review": "ORDER"}}
    assert types(ctx) == [
        "WORKFLOW_STARTED", "TASK_STARTED", "TASK_COMPLETED", "TASK_STARTED", "TASK_PAUSED", "WORKFLOW_PAUSED",
    ]
    pause_started = ctx.events[3]
    assert pause_started.name == "pause" and pause_started.value == {
        "name": "manual_approval", "output": {"review": "ORDER"}
    }
    done = approval_workflow.resume(ctx.execution_id, "yes")
    assert types(done)[6:] == [
        "WORKFLOW_RESUMING", "WORKFLOW_RESUMED", "TASK_RESUMED", "TASK_COMPLETED", "WORKFLOW_COMPLETED",
    ]
    resuming, resumed, task_resumed, task_completed = done.events[6:10]
    assert resuming.value == resumed.value == "yes"
    assert task_resumed.value == {"name": "manual_approval", "input": "yes"}
    assert task_completed.value == "yes" and task_completed.source_id == pause_started.source_id


@workflow
async def timed(ctx: ExecutionContext[None]) -> Any:
    return await pause("cool_off", after=dt.timedelta(hours=1))


def test_a_timed_pause_shows_when_it_wakes(home: Path) -> None:
    clock = VirtualClock(start=1_800_000_000.0)
    ctx = timed.run(clock=clock)
    value = [e for e in ctx.events if e.type == E.WORKFLOW_PAUSED][-1].value
    assert value == {"name": "cool_off", "output": None, "wake_at": "2027-01-15T09:00:00+00:00"}


def test_awaiting_the_workflow_with_a_context_runs_its_whole_life_cycle(home: Path) -> None:
    ctx: ExecutionContext[str] = ExecutionContext("approval", "default", "approval_workflow", "x")
    assert not ctx.has_started and ctx.state == ExecutionState.CREATED
    result = asyncio.run(approval_workflow(ctx))
    assert result is ctx and ctx.is_paused and ctx.has_started
    result = asyncio.run(approval_workflow(ctx))  # paused: resumed, the pause returns None
    assert result.has_succeeded and result.output == "Approved: X"
    assert types(ctx)[-1] == "WORKFLOW_COMPLETED"


@task
async def charge(order_id: str, amount: float, *, currency: str = "EUR") -> str:
    return f"{order_id}:{amount}{currency}"


@workflow
async def order(ctx: ExecutionContext[dict[str, Any]]) -> str:
    return await charge(ctx.input["id"], ctx.input["amount"], currency="USD")


def test_task_started_names_the_arguments_by_parameter(home: Path) -> None:
    async def another_charge(total: float) -> str:  # a task of the same name in another module
        return str(total)

    another_charge.__module__ = "billing.elsewhere"
    task.with_options(name="charge")(another_charge)
    ctx = order.run({"id": "A-1", "amount": 9.5})
    started = next(e for e in ctx.events if e.type == E.TASK_STARTED)
    assert started.name == "charge" and started.value == {"order_id": "A-1", "amount": 9.5, "currency": "USD"}
    assert ctx.events[0].value == {"id": "A-1", "amount": 9.5}  # WORKFLOW_STARTED carries the input


FAILS = {"left": 0}


@task.with_options(retry_max_attempts=3, retry_delay=2, retry_backoff=3)
async def flaky() -> str:
    if FAILS["left"]:
        FAILS["left"] -= 1
        raise ConnectionError("try again")
    return "ok"


@workflow
async def retried(ctx: ExecutionContext[None]) -> str:
    return await flaky()


def test_retries_carry_attempt_delay_and_backoff_and_the_first_failure_is_a_retry_failure(home: Path) -> None:
    FAILS["left"] = 2
    ctx = retried.run(clock=VirtualClock())
    assert ctx.output == "ok"
    retry = [(e.type.value, e.value) for e in ctx.events if e.type.value.startswith("TASK_RETRY")]
    assert retry == [
        ("TASK_RETRY_FAILED",
         {"current_attempt": 0, "max_attempts": 3, "current_delay": 0, "backoff": 3.0, "original_attempt": True}),
        ("TASK_RETRY_STARTED", {"current_attempt": 1, "max_attempts": 3, "current_delay": 2.0, "backoff": 3.0}),
        ("TASK_RETRY_FAILED", {"current_attempt": 1, "max_attempts": 3, "current_delay": 2.0, "backoff": 3.0}),
        ("TASK_RETRY_STARTED", {"current_attempt": 2, "max_attempts": 3, "current_delay": 6.0, "backoff": 3.0}),
        ("TASK_RETRY_COMPLETED",
         {"current_attempt": 2, "max_attempts": 3, "current_delay": 6.0, "backoff": 3.0, "output": "ok"}),
    ]


GATE: dict[str, Any] = {}


@workflow
async def cancellable(ctx: ExecutionContext[None]) -> Any:
    return await pause("wait")


def test_cancelling_gives_workflow_cancelling_then_workflow_cancelled(home: Path) -> None:
    ctx = cancellable.run()
    done = cancellable.cancel(ctx.execution_id)
    assert done.is_cancelled and done.state == ExecutionState.CANCELLED
    assert types(done)[-2:] == ["WORKFLOW_CANCELLING", "WORKFLOW_CANCELLED"]


INSIDE: list[Any] = []


@task
async def looks_at_the_context() -> str:
    ctx = await ExecutionContext.get()
    INSIDE.append(("task", ctx.execution_id, ctx.workflow_name))
    return ctx.execution_id


@workflow
async def introspective(ctx: ExecutionContext[int]) -> str:
    same = await ExecutionContext.get()
    INSIDE.append(("workflow", same is ctx, ctx.has_started, ctx.has_resumed, ctx.is_resuming, ctx.is_cancelling))
    await pause("p")
    INSIDE.append(("after pause", ctx.has_resumed, ctx.is_resuming))
    return await looks_at_the_context()


def test_the_context_flux_programs_read(home: Path) -> None:
    INSIDE.clear()
    ctx = introspective.run(5)
    assert INSIDE == [("workflow", True, True, False, False, False)]
    INSIDE.clear()
    done = introspective.resume(ctx.execution_id, "go")
    # Replaying up to the pause the resume answers, the run is resuming; after it, resumed.
    assert INSIDE == [
        ("workflow", True, True, True, True, False), ("after pause", True, False),
        ("task", ctx.execution_id, "introspective"),
    ]
    assert done.output == ctx.execution_id
    assert done.workflow_name == "introspective" and done.workflow_id == "default/introspective"
    assert done.workflow_namespace == "default" and done.input == 5
    data = done.to_dict()
    assert set(data) == {
        "workflow_id", "workflow_namespace", "workflow_name", "execution_id", "input", "output", "state",
        "current_worker", "events",
    }
    assert data["state"] == "COMPLETED" and data["output"] == ctx.execution_id
    assert set(data["events"][0]) == {"type", "name", "source_id", "value", "subject", "time", "id"}
    assert json.loads(done.to_json()) == data
    assert done.summary() == {k: v for k, v in data.items() if k != "events"}


def test_execution_context_get_outside_a_workflow_is_an_execution_error() -> None:
    import pytest

    from flux.errors import ExecutionError

    with pytest.raises(ExecutionError, match="no workflow is running here"):
        asyncio.run(ExecutionContext.get())


def test_task_objects_have_flux_s_shape() -> None:
    async def fetch(url: str) -> str:
        return url

    t = task.with_options(retry_max_attempts=2, timeout=10, name="fetch_{url}")(fetch)
    assert t.func is fetch and t.name == "fetch_{url}" and t.retry_max_attempts == 2 and t.timeout == 10
    assert (t.retry_delay, t.retry_backoff, t.fallback, t.cache, t.secret_requests) == (1, 2, None, False, [])
    changed = t.with_options(retry_delay=5)
    assert changed.retry_delay == 5 and changed.retry_max_attempts == 2 and changed.timeout == 10
    assert changed.name == "fetch_{url}" and changed.func is fetch
    plain = task(fetch)
    assert plain.name == "fetch" and plain.timeout == 0 and plain.metadata is False
