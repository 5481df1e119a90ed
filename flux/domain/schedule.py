"""Schedules as Flux declares them: `cron(...)`, `interval(...)`, `once(...)` (SPEC.md "Schedules").

    @workflow.with_options(schedule=cron("0 9 * * MON-FRI", timezone="Europe/Lisbon"))
    async def report(ctx): ...

A schedule object only describes when to fire and what to do with missed and overlapping
fires; a store keeps the schedule and `flux worker` fires it (flux._engine.schedules).
"""

from __future__ import annotations

import datetime as dt
import time
from enum import Enum
from typing import Any

from flux._engine import schedules as _s
from flux._engine.errors import InvalidOptionError

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "OnceSchedule",
    "Schedule",
    "ScheduleStatus",
    "ScheduleType",
    "cron",
    "interval",
    "once",
    "schedule_factory",
]


class ScheduleType(Enum):
    CRON = "cron"
    INTERVAL = "interval"
    ONCE = "once"


class ScheduleStatus(Enum):
    ACTIVE = "active"
    PAUSED = "paused"


def _epoch(value: dt.datetime | float | str, timezone: str, what: str) -> float:
    """A time as seconds since the epoch; a naive datetime is read in `timezone`."""
    if isinstance(value, bool):
        raise InvalidOptionError(f"{what}={value!r} must be a datetime, an ISO-8601 string or epoch seconds")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidOptionError(f"{what}={value!r} is not an ISO-8601 time such as '2026-12-01T09:00'") from None
    if not isinstance(value, dt.datetime):
        raise InvalidOptionError(f"{what}={value!r} must be a datetime, an ISO-8601 string or epoch seconds")
    if value.tzinfo is None:
        value = value.replace(tzinfo=_s.zone(timezone))
    return value.timestamp()


class Schedule:
    """When a workflow runs by itself, and the policies of its fires.

    Args:
        timezone: IANA name the times are read in (cron fields, naive datetimes).
        overlap: a fire due while the previous execution of the schedule is still open:
            "skip" (default: dropped), "allow" (started anyway) or "buffer_one" (started when
            the previous one finishes; one at most waits, further ones are dropped).
        missed: fires more than `grace` seconds late (no worker ran): "skip" (none run),
            "latest" (default: the latest runs once) or "all" (each runs, the newest
            `missed_limit` at most).
        missed_limit: for missed="all".
        grace: a fire at most this many seconds late is on time and always runs (default 60).
    """

    type: ScheduleType

    def __init__(
        self,
        timezone: str = "UTC",
        overlap: str = "skip",
        *,
        missed: str = "latest",
        missed_limit: int = _s.DEFAULT_MISSED_LIMIT,
        grace: float = _s.DEFAULT_GRACE,
    ) -> None:
        _s.zone(timezone)
        self.timezone = timezone
        self.overlap = overlap
        self.missed = missed
        self.missed_limit = missed_limit
        self.grace = grace
        # the same checks a stored schedule gets, now rather than when a worker starts
        _s.new_state("check", "check", {"type": "once", "at": 0.0}, now=0.0, missed=missed,
                     missed_limit=missed_limit, overlap=overlap, grace=grace)

    def spec(self, now: float | None = None) -> dict[str, Any]:
        """The stored form of when it fires."""
        raise NotImplementedError

    def policies(self) -> dict[str, Any]:
        return {"missed": self.missed, "missed_limit": self.missed_limit, "overlap": self.overlap, "grace": self.grace}

    def next_run_time(self, base_time: dt.datetime | None = None) -> dt.datetime | None:
        """The first fire after `base_time` (default: now), in the schedule's time zone."""
        base = time.time() if base_time is None else _epoch(base_time, self.timezone, "base_time")
        at = _s.next_after(self.spec(base), base)
        return None if at is None else dt.datetime.fromtimestamp(at, _s.zone(self.timezone))

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec(), **self.policies()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()!r})"


class CronSchedule(Schedule):
    """Fires at the times a five-field cron expression names, in `timezone` (DST: SPEC.md "Schedules")."""

    type = ScheduleType.CRON

    def __init__(self, cron_expression: str, timezone: str = "UTC", overlap: str = "skip", **policies: Any) -> None:
        _s.check_cron(cron_expression)
        super().__init__(timezone, overlap, **policies)
        self.cron_expression = cron_expression

    def spec(self, now: float | None = None) -> dict[str, Any]:
        return {"type": "cron", "expression": self.cron_expression, "timezone": self.timezone}


class IntervalSchedule(Schedule):
    """Fires every `seconds + minutes + hours + days + weeks`, from `start_time` (default: when
    the schedule is stored, plus one interval) until `end_time`."""

    type = ScheduleType.INTERVAL

    def __init__(
        self,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
        weeks: float = 0,
        timezone: str = "UTC",
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
        overlap: str = "skip",
        **policies: Any,
    ) -> None:
        super().__init__(timezone, overlap, **policies)
        every = dt.timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days, weeks=weeks).total_seconds()
        if not every > 0:
            raise InvalidOptionError(
                f"interval(seconds={seconds}, minutes={minutes}, hours={hours}, days={days}, weeks={weeks}): "
                "the interval must be > 0 (it must be a positive duration)"
            )
        self.interval = dt.timedelta(seconds=every)
        self.start_time = start_time
        self.end_time = end_time
        self._start = None if start_time is None else _epoch(start_time, timezone, "start_time")
        self._end = None if end_time is None else _epoch(end_time, timezone, "end_time")
        if self._start is not None and self._end is not None and self._end < self._start:
            raise InvalidOptionError("interval: end_time is before start_time")

    def spec(self, now: float | None = None) -> dict[str, Any]:
        every = self.interval.total_seconds()
        start = self._start if self._start is not None else (time.time() if now is None else now) + every
        return {"type": "interval", "seconds": every, "start": start, "end": self._end}


class OnceSchedule(Schedule):
    """Fires once, at `run_time` (a naive datetime is read in `timezone`)."""

    type = ScheduleType.ONCE

    def __init__(
        self, run_time: dt.datetime | float | str, timezone: str = "UTC", overlap: str = "skip", **policies: Any
    ) -> None:
        super().__init__(timezone, overlap, **policies)
        self.run_time = run_time
        self._at = _epoch(run_time, timezone, "once: run_time")

    def spec(self, now: float | None = None) -> dict[str, Any]:
        return {"type": "once", "at": self._at}


def cron(expression: str, timezone: str = "UTC", overlap: str = "skip", **policies: Any) -> CronSchedule:
    """A cron schedule: `cron("0 9 * * MON-FRI", timezone="Europe/Lisbon")`.

    Raises:
        InvalidOptionError: a bad expression (names the field and what it allows) or time zone.
    """
    return CronSchedule(expression, timezone, overlap, **policies)


def interval(
    seconds: float = 0,
    minutes: float = 0,
    hours: float = 0,
    days: float = 0,
    weeks: float = 0,
    timezone: str = "UTC",
    start_time: dt.datetime | None = None,
    end_time: dt.datetime | None = None,
    overlap: str = "skip",
    **policies: Any,
) -> IntervalSchedule:
    """An interval schedule: `interval(minutes=30)`."""
    return IntervalSchedule(seconds, minutes, hours, days, weeks, timezone, start_time, end_time, overlap, **policies)


def once(
    run_time: dt.datetime | float | str | None = None,
    timezone: str = "UTC",
    overlap: str = "skip",
    *,
    at: dt.datetime | float | str | None = None,
    **policies: Any,
) -> OnceSchedule:
    """A schedule that fires once: `once(at=datetime(2026, 12, 24, 18, 0))`."""
    when = at if at is not None else run_time
    if when is None:
        raise InvalidOptionError("once() needs the time to run at: once(at=datetime(...))")
    return OnceSchedule(when, timezone, overlap, **policies)


def schedule_factory(data: dict[str, Any]) -> Schedule:
    """A schedule from `to_dict()`'s form."""
    policies = {k: data[k] for k in ("missed", "missed_limit", "grace") if k in data}
    overlap = data.get("overlap", "skip")
    kind = data.get("type")
    if kind == "cron":
        return CronSchedule(data["expression"], data.get("timezone", "UTC"), overlap, **policies)
    if kind == "interval":
        return IntervalSchedule(seconds=data["seconds"], start_time=data.get("start"), end_time=data.get("end"),
                                overlap=overlap, **policies)
    if kind == "once":
        return OnceSchedule(data["at"], overlap=overlap, **policies)
    raise InvalidOptionError(f"schedule type {kind!r}: use cron, interval or once")
