"""Retries, timeouts, fallback, rollback and sagas: exact event sequences, durable waits, bad options.

Waits run on a VirtualClock, so a ten-minute backoff takes microseconds while the journal
records the virtual times."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, Saga, task, workflow
from flux._engine.clock import VirtualClock
from flux.domain.events import ExecutionEventType as E
from flux.errors import (
    CompensationError,
    ExecutionError,
    ExecutionTimeoutError,
    FallbackError,
    InvalidOptionError,
    RetryError,
    RollbackError,
)
from flux.tasks import pause
from tests.support.journals import cut_after, every_cut, records

CALLS: list[str] = []
FAIL_UNTIL: dict[str, int] = {}


def _flaky(name: str) -> None:
    CALLS.append(name)
    left = FAIL_UNTIL.get(name, 0)
    if left:
        FAIL_UNTIL[name] = left - 1
        raise ConnectionError(f"{name} down")


@task.with_options(retry_max_attempts=3, retry_delay=600, retry_backoff=2, retry_max_delay=None)
async def fetch(x: int) -> int:
    _flaky("fetch")
    return x + 1


def fallback_value(x: int) -> int:
    CALLS.append("fallback")
    return -x


async def undo(x: int) -> None:
    CALLS.append(f"undo:{x}")


async def broken_handler(x: int) -> None:
    CALLS.append("broken_handler")
    raise RuntimeError("handler broke")


@task
async def always_fails(x: int) -> int:
    CALLS.append("always_fails")
    raise ValueError(f"bad {x}")


@task.with_options(timeout=5)
async def hangs() -> None:
    CALLS.append("hangs")
    await asyncio.Event().wait()


def runner(step: Any) -> Any:
    @workflow
    async def one(ctx: ExecutionContext[Any]) -> Any:
        return await step(ctx.input)

    return one


def kinds(ctx: ExecutionContext[Any]) -> list[tuple[str, int | None]]:
    return [(e.type.value, e.attempt) for e in ctx.events]


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    FAIL_UNTIL.clear()


def test_retry_succeeds_on_the_second_retry_with_exact_events_and_waits(home: Path) -> None:
    FAIL_UNTIL["fetch"] = 2
    clock = VirtualClock()
    start = clock.now()
    ctx = runner(fetch).run(1, clock=clock)
    assert ctx.output == 2
    assert kinds(ctx) == [
        ("WORKFLOW_STARTED", None), ("TASK_STARTED", None), ("TASK_RETRY_FAILED", 0),
        ("TASK_RETRY_STARTED", 1), ("TASK_RETRY_FAILED", 1),
        ("TASK_RETRY_STARTED", 2), ("TASK_RETRY_COMPLETED", 2), ("TASK_COMPLETED", None),
        ("WORKFLOW_COMPLETED", None),
    ]
    retry_times = [e.time for e in ctx.events if e.type == E.TASK_RETRY_STARTED]
    t0 = dt.datetime.fromtimestamp(start, dt.UTC)
    # wait before attempt k = retry_delay * retry_backoff ** (k - 1): 600 s, then 1200 s
    assert retry_times == [t0 + dt.timedelta(seconds=600), t0 + dt.timedelta(seconds=1800)]
    assert CALLS == ["fetch"] * 3


def test_all_retries_failing_gives_retry_error_with_attempts_and_last_exception(home: Path) -> None:
    FAIL_UNTIL["fetch"] = 10
    ctx = runner(fetch).run(1, clock=VirtualClock())
    assert ctx.has_failed
    err = ctx.output
    assert isinstance(err, ExecutionError) and isinstance(err.__cause__, RetryError)
    assert err.__cause__.attempts == 4 and isinstance(err.__cause__.last_exception, ConnectionError)
    assert [k for k, _ in kinds(ctx)].count("TASK_RETRY_FAILED") == 4  # the first attempt's failure too
    assert kinds(ctx)[-2:] == [("TASK_FAILED", None), ("WORKFLOW_FAILED", None)]
    assert CALLS == ["fetch"] * 4


def test_timeout_stops_an_async_task_and_names_task_call_and_limit(home: Path) -> None:
    ctx = runner(lambda _: hangs()).run(None, clock=VirtualClock())
    err = ctx.output  # an ExecutionError itself: not wrapped in another one
    assert isinstance(err, ExecutionTimeoutError)
    assert (err.task, err.call_id, err.timeout) == ("hangs", "1", 5.0)
    assert str(err) == "Task hangs (1) timed out (5s)."


def test_fallback_result_becomes_the_task_result(home: Path) -> None:
    ctx = runner(always_fails.with_options(fallback=fallback_value)).run(7, clock=VirtualClock())
    assert ctx.output == -7
    assert kinds(ctx) == [
        ("WORKFLOW_STARTED", None), ("TASK_STARTED", None), ("TASK_FALLBACK_STARTED", None),
        ("TASK_FALLBACK_COMPLETED", None), ("TASK_COMPLETED", None), ("WORKFLOW_COMPLETED", None),
    ]


def test_a_failing_fallback_is_reported_with_both_exceptions(home: Path) -> None:
    ctx = runner(always_fails.with_options(fallback=broken_handler)).run(7, clock=VirtualClock())
    err = ctx.output.__cause__
    assert isinstance(err, FallbackError)
    assert isinstance(err.original, ValueError) and isinstance(err.fallback_exception, RuntimeError)
    assert [k for k, _ in kinds(ctx)][2:5] == ["TASK_FALLBACK_STARTED", "TASK_FALLBACK_FAILED", "TASK_FAILED"]


def test_rollback_runs_and_the_task_still_fails(home: Path) -> None:
    ctx = runner(always_fails.with_options(rollback=undo)).run(3, clock=VirtualClock())
    assert ctx.has_failed and isinstance(ctx.output.__cause__, ValueError)
    assert CALLS == ["always_fails", "undo:3"]
    assert [k for k, _ in kinds(ctx)] == [
        "WORKFLOW_STARTED", "TASK_STARTED", "TASK_ROLLBACK_STARTED", "TASK_ROLLBACK_COMPLETED", "TASK_FAILED",
        "WORKFLOW_FAILED",
    ]


def test_a_failing_rollback_is_reported_with_both_exceptions(home: Path) -> None:
    ctx = runner(always_fails.with_options(rollback=broken_handler)).run(3, clock=VirtualClock())
    err = ctx.output.__cause__
    assert isinstance(err, RollbackError) and isinstance(err.rollback_exception, RuntimeError)
    assert "TASK_ROLLBACK_FAILED" in [k for k, _ in kinds(ctx)]


def test_retries_then_fallback_then_no_rollback(home: Path) -> None:
    FAIL_UNTIL["fetch"] = 10
    step = fetch.with_options(retry_max_attempts=1, fallback=fallback_value, rollback=undo)
    ctx = runner(step).run(4, clock=VirtualClock())
    assert ctx.output == -4
    assert CALLS == ["fetch", "fetch", "fallback"]  # fallback wins over rollback
    assert [k for k, _ in kinds(ctx)] == [
        "WORKFLOW_STARTED", "TASK_STARTED", "TASK_RETRY_FAILED", "TASK_RETRY_STARTED", "TASK_RETRY_FAILED",
        "TASK_FALLBACK_STARTED",
        "TASK_FALLBACK_COMPLETED", "TASK_COMPLETED", "WORKFLOW_COMPLETED",
    ]


def test_retries_then_rollback_with_retry_error(home: Path) -> None:
    FAIL_UNTIL["fetch"] = 10
    ctx = runner(fetch.with_options(retry_max_attempts=2, rollback=undo)).run(5, clock=VirtualClock())
    assert isinstance(ctx.output.__cause__, RetryError) and ctx.output.__cause__.attempts == 3
    assert CALLS == ["fetch"] * 3 + ["undo:5"]


def test_timeout_with_retries_times_out_each_attempt(home: Path) -> None:
    ctx = runner(lambda _: hangs.with_options(retry_max_attempts=2, retry_delay=1)()).run(None, clock=VirtualClock())
    err = ctx.output.__cause__
    assert isinstance(err, RetryError) and isinstance(err.last_exception, ExecutionTimeoutError)
    assert CALLS == ["hangs"] * 3


def test_with_options_keeps_the_options_not_given() -> None:
    changed = fetch.with_options(retry_delay=1)
    assert changed.task_options.retry_max_attempts == 3 and changed.task_options.retry_delay == 1
    assert fetch.task_options.retry_delay == 600


@pytest.mark.parametrize(
    "options, message",
    [
        ({"retry_max_attempts": -1}, "retry_max_attempts=-1 must be >= 0"),
        ({"retry_max_attempts": 1.5}, "retry_max_attempts=1.5 must be an int"),
        ({"retry_delay": "soon"}, "retry_delay='soon' must be a number"),
        ({"retry_delay": -2}, "retry_delay=-2 must be >= 0"),
        ({"retry_backoff": True}, "retry_backoff=True must be a number"),
        ({"timeout": -1}, "timeout=-1 must be > 0"),
        ({"timeout": -1.5}, "timeout=-1.5 must be > 0"),
        ({"fallback": 3}, "fallback=3 must be callable"),
        ({"rollback": "undo"}, "rollback='undo' must be callable"),
    ],
)
def test_bad_option_values_are_refused_when_decorating(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        task.with_options(**options)
    assert message in str(info.value)
    with pytest.raises(InvalidOptionError):
        fetch.with_options(**options)


def test_a_crash_during_a_backoff_resumes_with_only_the_remaining_wait(home: Path) -> None:
    FAIL_UNTIL["fetch"] = 1
    clock = VirtualClock()
    first = runner(fetch).run(1, clock=clock)
    cut_after(first, kind="attempt_failed")  # the process died during the 600 s wait
    later = VirtualClock(start=first.events[0].time.timestamp() + 200)  # ... and came back 200 s into it
    failed_at = first.events[0].time.timestamp()
    CALLS.clear()
    later_start = later.now()
    done = runner(fetch).run(execution_id=first.execution_id, clock=later)
    assert done.output == 2 and CALLS == ["fetch"]
    retry = next(e for e in done.events if e.type == E.TASK_RETRY_STARTED)
    assert retry.time.timestamp() == pytest.approx(failed_at + 600)
    assert later.now() - later_start == pytest.approx(400)  # only what was left of the wait


def test_a_resume_after_the_wake_up_time_does_not_wait(home: Path) -> None:
    FAIL_UNTIL["fetch"] = 1
    clock = VirtualClock()
    first = runner(fetch).run(1, clock=clock)
    cut_after(first, kind="attempt_failed")
    late = VirtualClock(start=clock.now() + 10_000)
    start = late.now()
    done = runner(fetch).run(execution_id=first.execution_id, clock=late)
    assert done.output == 2 and late.now() == start


@task.with_options(timeout=0.5)
def blocks(seconds: float, pidfile: str) -> str:
    with open(pidfile, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(seconds)
    return "finished"


@task.with_options(timeout=0.5)
def spins(pidfile: str) -> None:
    with open(pidfile, "w") as fh:
        fh.write(str(os.getpid()))
    while True:
        pass


@task.with_options(timeout=5)
def quick_sync(x: int) -> dict[str, int]:
    return {"x": x * 2}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("which", ["sleep", "busy"])
def test_a_blocking_plain_task_is_stopped_by_its_timeout(which: str, home: Path, tmp_path: Path) -> None:
    pidfile = str(tmp_path / "pid")

    @workflow
    async def blocked(ctx: ExecutionContext[None]) -> Any:
        if which == "sleep":
            return await blocks(60, pidfile)
        return await spins(pidfile)

    started = time.monotonic()
    ctx = blocked.run()
    assert time.monotonic() - started < 10
    err = ctx.output
    assert isinstance(err, ExecutionTimeoutError) and err.timeout == 0.5
    pid = int(Path(pidfile).read_text())
    assert pid != os.getpid() and _gone(pid)  # the work was really stopped


def test_a_plain_task_with_a_timeout_returns_its_value_and_raises_its_errors(home: Path) -> None:
    assert runner(quick_sync).run(4).output == {"x": 8}

    @task.with_options(timeout=5)
    def raises(x: int) -> None:
        raise KeyError(x)

    ctx = runner(raises).run(4)
    assert isinstance(ctx.output.__cause__, KeyError)


BOOKED: list[str] = []


def _step_task(n: int) -> Any:
    @task.with_options(name=f"book{n}")
    async def book(trip: dict[str, Any]) -> str:
        BOOKED.append(f"book{n}")
        if trip["fail_at"] == n:
            raise RuntimeError(f"step {n} failed")
        return f"ref{n}"

    return book


STEPS = [_step_task(n) for n in range(5)]


@task
async def cancel(ref: str) -> None:
    BOOKED.append(f"cancel:{ref}")


@workflow
async def trip(ctx: ExecutionContext[dict[str, Any]]) -> list[str]:
    refs = []
    async with Saga() as saga:
        for step in STEPS:
            refs.append(await saga.step(step(ctx.input), compensate=cancel))
            if ctx.input.get("pause_after") == len(refs):
                await pause("check")
    return refs


@pytest.mark.parametrize("fail_at", range(5))
def test_a_five_step_saga_compensates_exactly_the_completed_steps_in_reverse(fail_at: int, home: Path) -> None:
    BOOKED.clear()
    ctx = trip.run({"fail_at": fail_at})
    assert ctx.has_failed and isinstance(ctx.output.__cause__, RuntimeError)
    expected_cancels = [f"cancel:ref{n}" for n in reversed(range(fail_at))]
    assert BOOKED == [f"book{n}" for n in range(fail_at + 1)] + expected_cancels
    # Crash after each compensation record and resume: nothing recorded runs again.
    for k, kept in every_cut(ctx):
        BOOKED.clear()
        again = trip.run(execution_id=ctx.execution_id)
        assert again.has_failed
        done_before = _done(kept)
        assert not set(BOOKED) & done_before, (k, BOOKED)
        assert _done(records(ctx)) >= set(expected_cancels)


def _done(recorded: list[dict[str, Any]]) -> set[str]:
    started = {r["call_id"]: r for r in recorded if r["kind"] == "task_started"}
    out = set()
    for r in recorded:
        if r["kind"] == "task_completed":
            s = started[r["call_id"]]
            out.add(f"cancel:{s['args'][0]}" if s["name"] == "cancel" else s["name"])
    return out


def test_a_failing_compensation_does_not_stop_the_others(home: Path) -> None:
    BOOKED.clear()

    def bad_cancel(ref: str) -> None:
        BOOKED.append(f"bad:{ref}")
        raise OSError("cannot cancel")

    @workflow
    async def partial(ctx: ExecutionContext[None]) -> None:
        async with Saga() as saga:
            await saga.step(STEPS[0]({"fail_at": -1}), compensate=cancel)
            await saga.step(STEPS[1]({"fail_at": -1}), compensate=bad_cancel)
            await STEPS[2]({"fail_at": 2})

    ctx = partial.run()
    assert isinstance(ctx.output, CompensationError)
    assert isinstance(ctx.output.original, ExecutionError) and len(ctx.output.failures) == 1
    assert BOOKED == ["book0", "book1", "book2", "bad:ref1", "cancel:ref0"]


def test_a_pause_inside_a_saga_does_not_compensate(home: Path) -> None:
    BOOKED.clear()
    ctx = trip.run({"fail_at": -1, "pause_after": 2})
    assert ctx.is_paused and BOOKED == ["book0", "book1"]
    done = trip.resume(ctx.execution_id)
    assert done.output == [f"ref{n}" for n in range(5)]


def test_without_fork_a_plain_task_with_a_timeout_runs_in_an_abandoned_thread(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flux._engine.isolate

    monkeypatch.setattr(flux._engine.isolate, "CAN_FORK", False)

    @task.with_options(timeout=0.3)
    def sleepy(seconds: float) -> str:
        time.sleep(seconds)
        return "woke"

    @task.with_options(timeout=5)
    def raises_key(x: int) -> None:
        raise KeyError(x)

    started = time.monotonic()
    ctx = runner(sleepy).run(20.0)
    assert time.monotonic() - started < 15  # the 0.3 s timeout ended it, not the 20 s body
    assert isinstance(ctx.output, ExecutionTimeoutError)
    assert runner(sleepy).run(0.0).output == "woke"
    assert isinstance(runner(raises_key).run(1).output.__cause__, KeyError)
