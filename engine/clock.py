"""The engine's only source of time; tests and users may swap in their own."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "iso"]


class Clock(Protocol):
    """Time as the engine sees it, in seconds since the Unix epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> float:
        return time.time()


def iso(seconds: float) -> str:
    """The journal's time format: UTC ISO-8601 with microseconds."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="microseconds")
