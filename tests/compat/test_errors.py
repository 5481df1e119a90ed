"""Flux's error-handling documentation, as programs use it: timeouts and retries are
ExecutionErrors with Flux's constructors, and an ExecutionError is never wrapped twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flux import ExecutionContext, task, workflow
from flux.clock import VirtualClock
from flux.errors import ExecutionError, ExecutionTimeoutError, RetryError


def test_constructors_and_attributes_are_flux_s() -> None:
    timeout = ExecutionTimeoutError("Task", "fetch", "fetch_1", 5)
    assert isinstance(timeout, ExecutionError) and timeout.timeout == 5
    assert str(timeout) == "Task fetch (fetch_1) timed out (5s)."
    cause = ConnectionError("down")
    retry = RetryError(cause, 3, 1, 2)
    assert isinstance(retry, ExecutionError) and retry.inner_exception is cause
    assert (retry.retry_attempts, retry.retry_delay) == (3, 1)
    plain = ExecutionError(message="boom")
    assert plain.message == "boom" and plain.inner_exception is None


@task.with_options(timeout=1)
async def slow() -> str:
    await asyncio.sleep(60)
    return "late"


@workflow
async def guarded(ctx: ExecutionContext[None]) -> str:
    try:
        return await slow()
    except ExecutionTimeoutError as err:
        return f"timed out after {err.timeout}s"


def test_except_execution_timeout_error_around_a_timed_out_task_catches_it(home: Path) -> None:
    assert guarded.run(clock=VirtualClock()).output == "timed out after 1.0s"


@workflow
async def unguarded(ctx: ExecutionContext[None]) -> str:
    return await slow()


def test_the_output_of_a_timed_out_workflow_is_the_execution_timeout_error(home: Path) -> None:
    ctx = unguarded.run(clock=VirtualClock())
    assert ctx.has_failed and isinstance(ctx.output, ExecutionTimeoutError)
    replayed = unguarded.run(execution_id=ctx.execution_id)  # rebuilt from the journal alike
    assert isinstance(replayed.output, ExecutionTimeoutError) and replayed.output.timeout == 1.0


@task
async def inner() -> None:
    raise ValueError("deep")


@task
async def outer() -> None:
    await inner()


@workflow
async def nested(ctx: ExecutionContext[None]) -> str:
    try:
        await outer()
    except ExecutionError as err:
        return f"{type(err.inner_exception).__name__}: {err.inner_exception}"
    return "no failure"


def test_a_nested_task_failure_is_not_wrapped_again(home: Path) -> None:
    ctx = nested.run()
    assert ctx.output == "ValueError: deep"
    assert nested.run(execution_id=ctx.execution_id).output == "ValueError: deep"


@task.with_options(retry_max_attempts=2, retry_delay=1)
async def always_down() -> None:
    raise ConnectionError("down")


@workflow
async def retried(ctx: ExecutionContext[None]) -> None:
    await always_down()


def test_a_task_whose_retries_are_spent_fails_with_an_execution_error_around_a_retry_error(home: Path) -> None:
    ctx = retried.run(clock=VirtualClock())
    err = ctx.output
    assert type(err) is ExecutionError and isinstance(err.inner_exception, RetryError)
    assert err.inner_exception.retry_attempts == 2 and isinstance(err.inner_exception.inner_exception, ConnectionError)
