"""Retries users expect: by exception type (retry_on, non_retryable), a maximum delay, jitter
that a resumed run keeps, and Flux's meaning of retry_max_attempts (retries after the first
attempt). Time is virtual: the waits are read from the engine's clock and the journal."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import flux
from flux import ExecutionContext, task, workflow
from flux.clock import VirtualClock
from flux.errors import ExecutionError, RetryError
from tests.support.journals import keep_lines, records

CALLS: list[str] = []
RAISE: dict[str, type[Exception]] = {}


async def _fails(name: str) -> str:
    CALLS.append(name)
    raise RAISE.get(name, ConnectionError)(name)


@task.with_options(retry_max_attempts=3, retry_delay=1, retry_on=(ConnectionError, TimeoutError))
async def only_network(x: int) -> str:
    return await _fails("only_network")


@task.with_options(retry_max_attempts=3, retry_delay=1, non_retryable=KeyError)
async def not_key_errors(x: int) -> str:
    return await _fails("not_key_errors")


@workflow
async def run_one(ctx: ExecutionContext[str]) -> Any:
    step = {"only_network": only_network, "not_key_errors": not_key_errors}[ctx.input]
    return await step(1)


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    RAISE.clear()


def test_retry_max_attempts_counts_retries_after_the_first_attempt(home: Path) -> None:
    ctx = run_one.run("only_network", clock=VirtualClock())
    assert CALLS == ["only_network"] * 4  # 1 + retry_max_attempts
    assert isinstance(ctx.output, ExecutionError) and isinstance(ctx.output.inner_exception, RetryError)
    assert ctx.output.inner_exception.attempts == 4


@pytest.mark.parametrize(
    ("name", "error", "calls"),
    [
        ("only_network", ValueError, 1),  # not in retry_on: fails at once
        ("only_network", TimeoutError, 4),
        ("not_key_errors", KeyError, 1),  # non_retryable
        ("not_key_errors", ValueError, 4),
    ],
)
def test_errors_are_retried_by_type(home: Path, name: str, error: type[Exception], calls: int) -> None:
    RAISE[name] = error
    ctx = run_one.run(name, clock=VirtualClock())
    assert len(CALLS) == calls
    inner = ctx.output.inner_exception
    if calls == 1:
        assert type(inner) is error  # not retried: the failure itself, no RetryError
    else:
        assert isinstance(inner, RetryError) and type(inner.inner_exception) is error


@task.with_options(retry_max_attempts=5, retry_delay=100, retry_backoff=10, retry_max_delay=2000)
async def capped(x: int) -> str:
    return await _fails("capped")


@task.with_options(retry_max_attempts=5, retry_delay=100, retry_backoff=10)
async def default_cap(x: int) -> str:
    return await _fails("default_cap")


@workflow
async def backoff(ctx: ExecutionContext[str]) -> Any:
    return await {"capped": capped, "default_cap": default_cap}[ctx.input](1)


def _delays(ctx: ExecutionContext[Any]) -> list[float]:
    return [r["delay"] for r in records(ctx) if r["kind"] == "attempt_failed" and "delay" in r]


def test_the_wait_grows_by_the_backoff_up_to_the_maximum_delay(home: Path) -> None:
    assert _delays(backoff.run("capped", clock=VirtualClock())) == [100, 1000, 2000, 2000, 2000]
    assert _delays(backoff.run("default_cap", clock=VirtualClock())) == [100, 600, 600, 600, 600]  # Flux's cap


@task.with_options(retry_max_attempts=4, retry_delay=60, retry_backoff=1, retry_jitter=0.5)
async def jittery(x: int) -> str:
    CALLS.append("jittery")
    if len(CALLS) < 4:
        raise ConnectionError("later")
    return "done"


@workflow
async def jittered(ctx: ExecutionContext[None]) -> Any:
    return await jittery(1)


def test_jitter_draws_each_wait_and_a_resumed_run_waits_what_was_recorded(home: Path) -> None:
    clock = VirtualClock()
    ctx = jittered.run(clock=clock)
    delays = _delays(ctx)
    assert ctx.output == "done" and len(delays) == 3
    assert all(30 <= d <= 60 for d in delays) and len(set(delays)) > 1
    # Cut the journal right after the first failure and resume on a clock set back to that
    # moment: the retry starts exactly the recorded delay later, whatever a new draw would give.
    first_failure = next(r for r in records(ctx) if r["kind"] == "attempt_failed")
    keep_lines(ctx, first_failure["seq"] + 1)
    CALLS[:] = ["jittery"]  # the first attempt ran already
    failed_at = first_failure["retry_at"] - delays[0]
    done = jittered.run(execution_id=ctx.execution_id, clock=VirtualClock(start=failed_at))
    assert done.output == "done"
    retry = next(r for r in records(done) if r["kind"] == "retry_started")
    expected = dt.datetime.fromtimestamp(failed_at + delays[0], dt.UTC)
    assert retry["attempt"] == 1 and dt.datetime.fromisoformat(retry["at"]) == expected
    assert _delays(done)[0] == delays[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry_jitter": 1.5}, "retry_jitter=1.5 must be between 0 and 1"),
        ({"retry_max_delay": -1}, "retry_max_delay=-1 must be >= 0"),
        ({"retry_on": "ConnectionError"}, "retry_on='ConnectionError' must be an exception type"),
        ({"non_retryable": (KeyError, 3)}, "non_retryable=.* must be an exception type"),
    ],
)
def test_bad_retry_options_are_refused_when_decorating(options: dict[str, Any], message: str) -> None:
    with pytest.raises(flux.errors.InvalidOptionError, match=message):
        task.with_options(**options)(_fails)


def test_help_of_task_lists_every_option_with_its_meaning() -> None:
    text = flux.task.__doc__ or ""
    from flux.task import _TASK_OPTIONS

    for option in _TASK_OPTIONS:
        assert f"    {option}:" in text or f"{option}:" in text, option
    assert "retry_max_attempts: int = 0" in text and "the first attempt and 3 retries" in text
    assert "retry_jitter" in (flux.task.with_options.__doc__ or "")
