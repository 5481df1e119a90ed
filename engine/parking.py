"""Parking: a run whose every branch waits on the clock for long is unwound and handed back to
the store with its wake-up time, so that it holds no worker slot while it waits (SPEC.md 13.6).

`ParkingClock` is the system clock plus one rule: when everything the run has in flight is a
durable wait on the clock (a `sleep` timer, a retry's backoff: their ends are in the journal
already), no branch of the run can run before one of them ends, and the earliest wake-up is
`park_after` seconds or more away, every waiting branch is unwound with `Parked`. "Nothing else"
is judged per run (every branch of the run blocked), not per event loop: a worker's loop runs
many executions at once. Nothing is
written for it. The executor ends the run as at a pause (records already appended are made
durable, the replay snapshot saved); `parked_until` says when it is due. A run resumed later
replays the journal and waits only for what is left of each wait (SPEC.md 4.3, 4.5).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from flux._engine.calls import Parked
from flux._engine.clock import SystemClock

__all__ = ["ParkingClock"]

_IDLE_ROUNDS = 3


class ParkingClock(SystemClock):
    """The wall clock, which parks a run that only waits on it (`park_after` seconds or more)."""

    def __init__(self, park_after: float = 5.0, on_park: Callable[[float], None] | None = None) -> None:
        self.park_after = park_after
        self.on_park = on_park  # called with the wake-up time, before the run unwinds
        self.executor: Any = None  # the run's executor, whose waits this clock watches
        self.parked_until: float | None = None
        self._sleepers: dict[asyncio.Future[None], float] = {}
        self._checking = False

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._sleepers[fut] = time.time() + max(0.0, seconds)
        handle = loop.call_later(max(0.0, seconds), _wake, fut)
        self._look(loop)
        try:
            await fut
        finally:
            handle.cancel()
            self._sleepers.pop(fut, None)
            self._look(loop)

    def _look(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sleepers and not self._checking and self.parked_until is None:
            self._checking = True
            loop.call_soon(self._check, loop, 0)

    def _check(self, loop: asyncio.AbstractEventLoop, idle_rounds: int) -> None:
        executor = self.executor
        if executor is None or not self._sleepers or self.parked_until is not None:
            self._checking = False
            return
        if not executor.only_waits_on_clock:
            # A body, a write or workflow code is in flight: look again when a wait starts or
            # ends, and now and then meanwhile.
            loop.call_later(0.05, self._check, loop, 0)
            return
        if idle_rounds < _IDLE_ROUNDS:
            loop.call_soon(self._check, loop, idle_rounds + 1)
            return
        self._checking = False
        wake = min(self._sleepers.values())
        if wake - time.time() < self.park_after:
            return  # due soon: waiting here is cheaper than parking
        self.parked_until = wake
        if self.on_park is not None:
            self.on_park(wake)
        for fut in list(self._sleepers):
            if not fut.done():
                fut.set_exception(Parked())


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
