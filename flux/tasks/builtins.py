"""Built-in tasks: recorded time and randomness, durable timers, composition.

Everything here goes through the engine, so replay sees the same values and the same structure:
`now()`, `uuid4()` and the random functions return what was recorded; `sleep` records its
wake-up time; `parallel`, `pipeline` and `map` are ordinary task calls in branches with stable
call ids (SPEC.md "Built-ins").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import os
import random as _random
import sys
import types
import uuid as _uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from flux._engine import traps
from flux._engine.completion import original_wait
from flux._engine.errors import EngineError, InvalidOptionError
from flux._engine.sites import FLUX_DIR

__all__ = [
    "choice",
    "idempotency_key",
    "map_task",
    "now",
    "parallel",
    "pipeline",
    "randint",
    "randrange",
    "sleep",
    "uuid4",
]

T = TypeVar("T")
_rng = _random.SystemRandom()


def _src(depth: int = 2) -> str:
    """The line of workflow code that awaits the calling built-in (`file.py:line`); for one
    made into a task of its own, the line that made it."""
    frame = sys._getframe(depth)
    name = frame.f_code.co_filename
    if "asyncio" in name or name.startswith(FLUX_DIR):
        site = traps.creation_site()
        if site is not None:
            return site
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _seconds(value: float | dt.timedelta, what: str) -> float:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidOptionError(f"{what}={value!r} must be a number of seconds or a timedelta")
    return float(value)


def idempotency_key() -> str:
    """A key for the running task call, the same on every attempt and replay: hand it to
    external systems so that a task run again after a crash does not act twice."""
    return traps.idempotency_key()


async def now() -> dt.datetime:
    """The current local time as a naive datetime (what `datetime.now()` gives), read from the
    engine's clock and recorded: replay sees the same time."""
    clock_now = traps.now_seconds
    return await traps.record_value("now", lambda: dt.datetime.fromtimestamp(clock_now() or 0.0), _src())


async def uuid4() -> _uuid.UUID:
    """A random UUID, recorded."""
    return await traps.record_value("uuid4", _uuid.uuid4, _src())


async def randint(a: int, b: int) -> int:
    """A random integer N with a <= N <= b, recorded."""
    return await traps.record_value("randint", lambda: _rng.randint(a, b), _src())


async def randrange(start: int, stop: int | None = None, step: int = 1) -> int:
    """A random element of range(start, stop, step), recorded."""
    return await traps.record_value("randrange", lambda: _rng.randrange(start, stop, step), _src())


async def choice(options: Sequence[T]) -> T:
    """A random element of a non-empty sequence, recorded."""
    return await traps.record_value("choice", lambda: _rng.choice(options), _src())


async def sleep(duration: float | dt.timedelta) -> None:
    """A durable timer: the wake-up time is recorded, so a process that dies during a one-hour
    sleep and is resumed 50 minutes later sleeps only 10 more minutes, and one resumed after the
    wake-up time does not sleep at all."""
    await traps.sleep(_seconds(duration, "duration"), _src())


async def parallel(
    *awaitables: Awaitable[T], max_concurrent: int | None = None, raise_on_error: bool = True
) -> list[T]:
    """Runs the awaitables concurrently; returns their results in the order given.

    Args:
        max_concurrent: at most this many run at once (None: all of them).
        raise_on_error: True (the default): the first failure fails the call, the others are
            cancelled (their running task bodies are recorded as cancelled) and the failure is
            raised. False: a failed awaitable's result is None and the others go on; its
            failure is still recorded on its task call.

    Raises:
        InvalidOptionError: for a bad `max_concurrent`.
    """
    if max_concurrent is not None and (
        isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1
    ):
        for aw in awaitables:
            if inspect.iscoroutine(aw):
                aw.close()
        raise InvalidOptionError(f"max_concurrent={max_concurrent!r} must be an int >= 1")
    if not awaitables:
        return []
    if not raise_on_error:
        awaitables = tuple(_none_on_error(aw) for aw in awaitables)
    limit = asyncio.Semaphore(max_concurrent) if max_concurrent else None
    failed_once = False

    async def limited(aw: Awaitable[Any]) -> Any:
        assert limit is not None
        try:
            async with limit:
                if failed_once:
                    raise asyncio.CancelledError()  # a sibling failed while this one waited its turn
                try:
                    return await aw
                except Exception:
                    note(True)  # before the slot is released, so no queued call starts after it
                    raise
        finally:
            if inspect.iscoroutine(aw) and inspect.getcoroutinestate(aw) == inspect.CORO_CREATED:
                aw.close()  # never started: nothing to record, no "never awaited" warning

    def note(failed: bool) -> None:
        nonlocal failed_once
        failed_once = failed_once or failed

    def note_failure(task: asyncio.Task[Any]) -> None:
        note(not task.cancelled() and task.exception() is not None)

    # Created in argument order: each takes the next call slot, so ids do not depend on timing.
    tasks = [asyncio.ensure_future(limited(aw) if limit else aw) for aw in awaitables]
    for t in tasks:
        t.add_done_callback(note_failure)
    try:
        await original_wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None), None)
    if failed is None:
        return [t.result() for t in tasks]
    for t in tasks:
        if not t.done():
            t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    raise cast(BaseException, failed.exception())  # `failed` was picked for having one


async def _none_on_error(aw: Awaitable[Any]) -> Any:
    try:
        return await aw
    except EngineError:
        raise  # engine trouble is never a result
    except Exception:  # noqa: BLE001 - parallel(raise_on_error=False): a failed item's result is None
        return None


async def pipeline(*steps: Callable[[Any], Awaitable[Any]], input: Any = None) -> Any:
    """Calls each step with the previous step's result, starting with `input`."""
    value = input
    for step in steps:
        value = await step(value)
    return value


def map_task(task: Callable[[Any], Awaitable[T]], items: Iterable[Any]) -> Awaitable[list[T]]:
    """`task(item)` for each item, concurrently; results in order."""
    return parallel(*(task(item) for item in items))


# Built-ins (and `parallel`'s wrappers) that run as tasks of their own take their `src` from
# the line that made them (engine/traps.py, `takes_site`).
traps.takes_site(*(f.__code__ for f in (now, uuid4, randint, randrange, choice, sleep, _none_on_error)))
traps.takes_site(*(c for c in parallel.__code__.co_consts if isinstance(c, types.CodeType) and c.co_name == "limited"))
