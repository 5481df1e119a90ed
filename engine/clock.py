"""The engine's only source of time; tests and users may swap in a `VirtualClock`.

Every time the engine writes (`at`, a retry's wake-up time) and every wait it makes (backoffs,
timeouts, durable sleeps) goes through a `Clock`, so a virtual clock makes hours pass in
microseconds while the journal records the virtual times exactly as it would real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from flux._engine.completion import original_wait

__all__ = ["Clock", "SystemClock", "VirtualClock", "finishes_within", "iso", "parse_moment", "stamper"]


class Clock(Protocol):
    """Time as the engine sees it, in seconds since the Unix epoch."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def working(self) -> contextlib.AbstractContextManager[None]:
        """Marks real work in flight (a body in a thread or a child process)."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        yield


class VirtualClock:
    """A clock whose time moves only when everything in the event loop waits on it.

    `sleep` registers a wake-up time. When the event loop has nothing else ready to run and no
    task body is running in a thread or child process, the clock jumps to the earliest wake-up
    time. `advance` moves it by hand. Time never goes backwards.

    Limit: a coroutine that waits on real I/O looks idle too, so a virtual timer may fire first;
    keep such bodies out of virtual-time tests or drive the clock with `advance`.
    """

    def __init__(self, start: float = 1_767_225_600.0, *, auto: bool = True) -> None:
        self._now = float(start)
        self._auto = auto
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._busy = 0
        self._ticking = False

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Moves time forward and wakes every sleeper that is due."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        self._wake_due()

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._order), fut))
        if self._auto and not self._ticking:
            self._ticking = True
            loop.call_soon(self._tick, loop, 0)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    def _wake_due(self) -> None:
        while self._sleepers and (self._sleepers[0][0] <= self._now or self._sleepers[0][2].done()):
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def _tick(self, loop: asyncio.AbstractEventLoop, idle_rounds: int) -> None:
        self._wake_due()
        if not self._sleepers:
            self._ticking = False
            return
        if self._busy:
            loop.call_later(0.001, self._tick, loop, 0)
            return
        ready = getattr(loop, "_ready", None)
        # Idle means: nothing else was ready the last few times this callback came round.
        idle_rounds = idle_rounds + 1 if not ready else 0
        if idle_rounds < 3:
            loop.call_soon(self._tick, loop, idle_rounds)
            return
        self._now = max(self._now, self._sleepers[0][0])
        self._wake_due()
        loop.call_soon(self._tick, loop, 0)


async def finishes_within(fut: asyncio.Future[Any], clock: Clock, timeout: float) -> bool:
    """Waits for `fut` at most `timeout` seconds of `clock`; True when it finished in time.

    Cancelling the caller cancels the wait, not `fut`.
    """
    timer = asyncio.Task(clock.sleep(timeout))
    try:
        await original_wait({fut, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
    return fut.done()


_iso_second = -1
_iso_prefix = ""


def iso(seconds: float) -> str:
    """The journal's time format: UTC ISO-8601 with microseconds.

    Every record carries one, so the date and time down to the second are formatted once per
    second and only the microseconds each time.
    """
    global _iso_second, _iso_prefix
    whole = int(seconds // 1)
    micros = int(round((seconds - whole) * 1_000_000))
    if micros >= 1_000_000:
        whole += 1
        micros -= 1_000_000
    if whole != _iso_second:
        _iso_prefix = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _iso_second = whole
    return f"{_iso_prefix}{micros:06d}+00:00"


def _system_stamp() -> str:
    """`iso(time.time())` from the integer clock: no float rounding, a third of the work."""
    global _iso_second, _iso_prefix
    ns = time.time_ns()
    whole = ns // 1_000_000_000
    if whole != _iso_second:
        _iso_prefix = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _iso_second = whole
    return f"{_iso_prefix}{ns // 1000 % 1_000_000:06d}+00:00"


def stamper(clock: Clock) -> Callable[[], str]:
    """A function giving `clock`'s current time in the journal's format (the `at` of records)."""
    if type(clock) is SystemClock:
        return _system_stamp
    return lambda: iso(clock.now())


_AGE = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_moment(text: str, now: float, where: str) -> str:
    """A moment given on the command line, in the journal's time format: an age before `now`
    (`45s`, `90m`, `12h`, `30d`, `2w`), or an ISO-8601 date or date and time (without a zone:
    UTC).

    Raises:
        ValueError: naming `where` and what is accepted.
    """
    value = text.strip()
    unit = _AGE.get(value[-1:].lower()) if value else None
    if unit is not None and value[:-1].isdigit():
        return iso(now - int(value[:-1]) * unit)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{where} {text!r}: give an age (45s, 90m, 12h, 30d, 2w) or an ISO date or time (2026-11-30, "
            "2026-11-30T08:00:00+01:00; UTC without a zone)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return iso(moment.timestamp())
