"""Durable sleeps and timed pauses on a VirtualClock: `sleep` records its wake-up time, a resume
sleeps only what is left and a finished sleep is not slept again; `pause(name, delay=...)` and
`pause(name, until=...)` continue without input only once their time has come (the real SIGKILL
tests are in tests/test_builtins_crash.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, workflow
from flux._engine.clock import iso
from flux.clock import VirtualClock
from flux.errors import ExecutionStateError, InvalidOptionError
from flux.tasks import now, parallel, pause, sleep
from tests.builtin_workflows import reset
from tests.support.journals import cut_after, records


@pytest.fixture(autouse=True)
def _reset() -> None:
    reset()


HOUR = 3600.0


@workflow
async def nap(ctx: ExecutionContext[float]) -> list[dt.datetime]:
    before = await now()
    await sleep(ctx.input)
    after = await now()
    return [before, after]


def _at(seconds: float) -> dt.datetime:
    """What `now()` gives at that epoch time: the local time, naive, as `datetime.now()`."""
    return dt.datetime.fromtimestamp(seconds)


def test_sleep_records_its_wake_up_time_and_waits_on_the_engine_clock(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    ctx = nap.run(HOUR, clock=clock)
    assert clock.now() - start == HOUR
    assert ctx.output == [_at(start), _at(start + HOUR)]
    timer = [r for r in records(ctx) if r["kind"] in ("timer_started", "timer_fired")]
    assert timer[0]["wake_at"] == start + HOUR and timer[0]["call_id"] == "2" and timer[0]["name"] == "sleep"
    assert timer[1]["at"] == iso(start + HOUR)


def test_a_sleep_resumed_50_minutes_into_an_hour_sleeps_the_remaining_10_minutes(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    first = nap.run(HOUR, clock=clock)
    cut_after(first, kind="timer_started")  # the process died during the sleep ...
    later = VirtualClock(start=start + 50 * 60)  # ... and was resumed 50 minutes later
    resumed = nap.run(execution_id=first.execution_id, clock=later)
    assert later.now() - (start + 50 * 60) == 10 * 60
    assert resumed.output == [_at(start), _at(start + HOUR)]
    recorded = records(resumed)
    assert [r["kind"] for r in recorded].count("timer_started") == 1
    assert next(r for r in recorded if r["kind"] == "timer_fired")["at"] == iso(start + HOUR)


def test_a_sleep_resumed_after_its_wake_up_time_does_not_sleep(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    first = nap.run(HOUR, clock=clock)
    cut_after(first, kind="timer_started")
    late = VirtualClock(start=start + 2 * HOUR)
    resumed = nap.run(execution_id=first.execution_id, clock=late)
    assert late.now() == start + 2 * HOUR
    assert resumed.output == [_at(start), _at(start + 2 * HOUR)]


@workflow
async def nap_then_wait(ctx: ExecutionContext[None]) -> Any:
    await sleep(dt.timedelta(minutes=30))
    return await pause("after-nap")


def test_a_finished_sleep_is_not_slept_again_on_replay_and_takes_a_timedelta(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    first = nap_then_wait.run(clock=clock)
    assert clock.now() - start == 1800
    again = VirtualClock(start=start + 1800)
    done = nap_then_wait.resume(first.execution_id, "x", clock=again)
    assert done.output == "x" and again.now() == start + 1800


@workflow
async def two_naps(ctx: ExecutionContext[None]) -> list[dt.datetime]:
    async def lane(seconds: float) -> dt.datetime:
        await sleep(seconds)
        return await now()

    return await parallel(lane(600), lane(1200))


def test_sleeps_in_parallel_branches_overlap(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    ctx = two_naps.run(clock=clock)
    assert clock.now() - start == 1200
    assert ctx.output == [_at(start + 600), _at(start + 1200)]


@pytest.mark.parametrize("bad", ["1h", float("nan"), None, True])
def test_sleep_refuses_a_duration_that_is_not_seconds_or_a_timedelta(bad: Any) -> None:
    with pytest.raises(InvalidOptionError, match="must be a number of seconds or a timedelta"):
        asyncio.run(sleep(bad))


@workflow
async def gate(ctx: ExecutionContext[None]) -> Any:
    answer = await pause("approve", delay=600)
    return {"answer": answer}


def _resume_without_input(wf: Any, execution_id: str, clock: VirtualClock) -> ExecutionContext[Any]:
    return asyncio.run(wf.run_async(None, execution_id=execution_id, resume=True, resume_has_input=False, clock=clock))


def test_a_timed_pause_continues_without_input_only_after_its_wake_up_time(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    first = gate.run(clock=clock)
    assert first.status == "paused"
    paused = records(first)[-1]
    assert paused["kind"] == "workflow_paused" and paused["wake_at"] == start + 600
    before = Path(first.journal_path).read_bytes()
    with pytest.raises(ExecutionStateError) as info:
        _resume_without_input(gate, first.execution_id, VirtualClock(start=start + 599))
    assert f"paused at 'approve' until {iso(start + 600)}" in str(info.value) and "give an input" in str(info.value)
    assert Path(first.journal_path).read_bytes() == before  # nothing written
    done = _resume_without_input(gate, first.execution_id, VirtualClock(start=start + 601))
    assert done.status == "completed" and done.output == {"answer": None}


def test_a_timed_pause_can_be_resumed_early_with_an_input(home: Path) -> None:
    clock = VirtualClock()
    first = gate.run(clock=clock)
    done = gate.resume(first.execution_id, "yes", clock=VirtualClock(start=clock.now() + 1))
    assert done.output == {"answer": "yes"}


@workflow
async def gate_until(ctx: ExecutionContext[float]) -> Any:
    return await pause("deadline", until=dt.datetime.fromtimestamp(ctx.input, dt.UTC))


def test_pause_until_records_that_time_and_refuses_until_with_delay(home: Path) -> None:
    ctx = gate_until.run(1_900_000_000.5, clock=VirtualClock())
    assert records(ctx)[-1]["wake_at"] == 1_900_000_000.5
    with pytest.raises(InvalidOptionError, match="at most one of until=, after=, on_complete="):
        asyncio.run(pause("x", until=1.0, delay=1.0))
