"""OpenTelemetry spans from records (flux/tracing.py), checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk import trace as trace_sdk
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import flux.tracing
from flux import ExecutionContext, task, workflow
from flux.client import Client
from flux.tasks import call, pause, sleep

TRIES: dict[str, int] = {}


@task.with_options(retry_max_attempts=2, retry_delay=0.01)
async def flaky(key: str) -> str:
    TRIES[key] = TRIES.get(key, 0) + 1
    if TRIES[key] < 3:
        raise TimeoutError(f"try {TRIES[key]}")
    return key


@task
async def double(n: int) -> int:
    return 2 * n


@workflow
async def child(ctx: ExecutionContext[int]) -> int:
    return await double(ctx.input)


@workflow
async def traced(ctx: ExecutionContext[str]) -> int:
    await flaky(ctx.input)
    await sleep(0.01)
    await pause("go")
    return await call(child, 21)


@workflow
async def broken(ctx: ExecutionContext[None]) -> None:
    raise KeyError("gone")


@pytest.fixture
def spans() -> Any:
    exporter = InMemorySpanExporter()
    provider = trace_sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    flux.tracing.instrument(provider)
    try:
        yield exporter
    finally:
        flux.tracing.uninstrument()


def test_runs_and_task_attempts_are_spans_with_retries_and_waits_as_events(tmp_path: Path, spans: Any) -> None:
    async def go() -> str:
        client = Client(str(tmp_path / ".flux"), durability="os")
        handle = await client.start(traced, "k")
        assert str((await handle.result()).status) == "paused"
        again = await client.resume(handle.execution_id, None)
        assert (await again.result()).output == 42
        return handle.execution_id

    execution_id = asyncio.run(go())
    finished = spans.get_finished_spans()
    runs = [s for s in finished if s.name == "workflow traced"]
    assert [s.attributes["flux.resumed"] for s in runs] == [False, True]
    assert all(s.attributes["flux.execution_id"] == execution_id for s in runs)
    assert [s.attributes["flux.status"] for s in runs] == ["paused", "completed"]
    first, second = runs
    attempts = [s for s in finished if s.name == "task flaky"]
    assert [s.attributes["flux.attempt"] for s in attempts] == [0, 1, 2]  # none again from the replay
    assert all(s.parent is not None and s.parent.span_id == first.context.span_id for s in attempts)
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    [exception] = [e for e in attempts[0].events if e.name == "exception"]
    assert exception.attributes["exception.type"] == "TimeoutError"
    assert exception.attributes["exception.message"] == "try 1"
    assert attempts[0].attributes["code.file.path"].endswith("test_tracing.py")
    events = [e.name for e in first.events]
    assert events == ["flux.retry", "flux.retry", "flux.sleep", "flux.timer_fired", "flux.pause"]
    # The resumed run: the sub-workflow is a child of the task span that called it.
    [caller] = [s for s in finished if s.name == "task child"]
    assert caller.parent is not None and caller.parent.span_id == second.context.span_id
    [child_run] = [s for s in finished if s.name == "workflow child"]
    assert child_run.parent is not None and child_run.parent.span_id == caller.context.span_id
    [doubled] = [s for s in finished if s.name == "task double"]
    assert doubled.parent is not None and doubled.parent.span_id == child_run.context.span_id
    assert not [s for s in finished if s.end_time < s.start_time]


def test_a_failed_workflow_is_an_error_span_and_uninstrument_stops_tracing(tmp_path: Path, spans: Any) -> None:
    async def go(wf: Any, value: Any) -> None:
        handle = await Client(str(tmp_path / ".flux"), durability="os").start(wf, value)
        await handle.result()

    asyncio.run(go(broken, None))
    [failed] = [s for s in spans.get_finished_spans() if s.name == "workflow broken"]
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes["error.type"] == "KeyError"
    assert failed.attributes["flux.status"] == "failed"
    flux.tracing.uninstrument()
    asyncio.run(go(child, 1))
    assert [s.name for s in spans.get_finished_spans()] == ["workflow broken"]
