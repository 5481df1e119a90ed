"""Schedules a workflow can declare (`@workflow.with_options(schedule=cron("0 9 * * MON-FRI"))`).

This engine has no server that starts executions on a timer: a schedule is checked when the
decorator runs, kept on the workflow (`wf.schedule`), and can say when it would run next
(`next_run_time`); something outside (cron, systemd, a loop in a service) starts the runs.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from enum import Enum
from typing import Any

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
    DISABLED = "disabled"


class Schedule:
    """When a workflow should run. `overlap` is "skip" (a run is not started while the previous
    one still runs) or "allow"."""

    type: ScheduleType

    def __init__(self, timezone: str = "UTC", overlap: str = "skip") -> None:
        if overlap not in ("skip", "allow"):
            raise ValueError(f"overlap={overlap!r} must be 'skip' or 'allow'")
        try:
            self.tz = zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"Invalid timezone '{timezone}': {err}") from None
        self.timezone = timezone
        self.overlap = overlap

    def next_run_time(self, base_time: dt.datetime | None = None) -> dt.datetime | None:
        """The first time after `base_time` (default: now) when it should run, or None."""
        raise NotImplementedError

    def should_run(self, current_time: dt.datetime) -> bool:
        """Whether a run is due at `current_time` (within the minute)."""
        due = self.next_run_time(current_time - dt.timedelta(minutes=1))
        return due is not None and due <= current_time

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type.value, "timezone": self.timezone, "overlap": self.overlap}

    def _base(self, base_time: dt.datetime | None) -> dt.datetime:
        base = base_time or dt.datetime.now(dt.UTC)
        if base.tzinfo is None:
            base = base.replace(tzinfo=dt.UTC)
        return base.astimezone(self.tz)


_NAMES = {
    3: {n: i for i, n in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)},
    4: {n: i for i, n in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])},
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


def _cron_field(text: str, index: int, expression: str) -> set[int]:
    low, high = _RANGES[index]
    names = _NAMES.get(index, {})
    out: set[int] = set()

    def number(token: str) -> int:
        value = names.get(token.upper())
        if value is None:
            if not token.isdigit():
                raise ValueError(f"Invalid cron expression: {expression}")
            value = int(token)
        if not low <= value <= high:
            raise ValueError(f"Invalid cron expression: {expression} ({token} is outside {low}-{high})")
        return value

    for part in text.split(","):
        step = 1
        if "/" in part:
            part, _, step_text = part.partition("/")
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"Invalid cron expression: {expression}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, _, b = part.partition("-")
            start, end = number(a), number(b)
        else:
            start = number(part)
            end = high if step > 1 else start
        if start > end:
            raise ValueError(f"Invalid cron expression: {expression}")
        out.update(range(start, end + 1, step))
    if index == 4 and 7 in out:
        out = (out - {7}) | {0}
    return out


class CronSchedule(Schedule):
    """Five cron fields (minute hour day-of-month month day-of-week; names such as MON and JAN,
    ranges, lists and steps) or a macro such as `@daily`, in `timezone`."""

    type = ScheduleType.CRON

    def __init__(self, cron_expression: str, timezone: str = "UTC", overlap: str = "skip") -> None:
        super().__init__(timezone, overlap)
        if not isinstance(cron_expression, str):
            raise ValueError(f"Invalid cron expression: {cron_expression!r}")
        fields = _MACROS.get(cron_expression.strip(), cron_expression).split()
        if len(fields) != 5:
            raise ValueError(f"Invalid cron expression: {cron_expression} (expected 5 fields)")
        self.cron_expression = cron_expression
        self._sets = [_cron_field(f, i, cron_expression) for i, f in enumerate(fields)]
        self._any_day = fields[2] == "*" or fields[4] == "*"

    def _day_matches(self, day: dt.datetime) -> bool:
        dom, dow = day.day in self._sets[2], (day.isoweekday() % 7) in self._sets[4]
        return (dom and dow) if self._any_day else (dom or dow)

    def next_run_time(self, base_time: dt.datetime | None = None) -> dt.datetime | None:
        minutes, hours, _, months, _ = self._sets
        t = self._base(base_time).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        limit = t + dt.timedelta(days=366 * 5)
        while t < limit:
            if t.month not in months or not self._day_matches(t):
                t = (t + dt.timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in hours:
                t = (t + dt.timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in minutes:
                t += dt.timedelta(minutes=1)
                continue
            return t
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "cron_expression": self.cron_expression}


class IntervalSchedule(Schedule):
    """Every `interval`, from `start_time` (default: when asked) until `end_time`."""

    type = ScheduleType.INTERVAL

    def __init__(
        self,
        interval: dt.timedelta,
        timezone: str = "UTC",
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
        overlap: str = "skip",
    ) -> None:
        super().__init__(timezone, overlap)
        if not isinstance(interval, dt.timedelta) or interval.total_seconds() <= 0:
            raise ValueError(f"interval={interval!r} must be a positive duration")
        if start_time is not None and end_time is not None and end_time <= start_time:
            raise ValueError("end_time must be after start_time")
        self.interval = interval
        self.start_time = start_time
        self.end_time = end_time

    def next_run_time(self, base_time: dt.datetime | None = None) -> dt.datetime | None:
        base = self._base(base_time)
        if self.start_time is None:
            due = base + self.interval
        else:
            start = self._base(self.start_time)
            if base < start:
                due = start
            else:
                steps = int((base - start) / self.interval) + 1
                due = start + steps * self.interval
        if self.end_time is not None and due > self._base(self.end_time):
            return None
        return due

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "interval_seconds": self.interval.total_seconds()}


class OnceSchedule(Schedule):
    """Once, at `run_time` (a naive time is taken in `timezone`)."""

    type = ScheduleType.ONCE

    def __init__(self, run_time: dt.datetime, timezone: str = "UTC", overlap: str = "skip") -> None:
        super().__init__(timezone, overlap)
        if not isinstance(run_time, dt.datetime):
            raise ValueError(f"run_time={run_time!r} must be a datetime")
        self.run_time = run_time if run_time.tzinfo is not None else run_time.replace(tzinfo=self.tz)

    def next_run_time(self, base_time: dt.datetime | None = None) -> dt.datetime | None:
        return self.run_time if self.run_time > self._base(base_time) else None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "run_time": self.run_time.isoformat()}


def cron(expression: str, timezone: str = "UTC", overlap: str = "skip") -> CronSchedule:
    """A cron schedule, e.g. `cron("0 9 * * MON-FRI")`.

    Raises:
        ValueError: for an invalid expression, timezone or overlap policy.
    """
    return CronSchedule(expression, timezone, overlap)


def interval(
    seconds: int = 0,
    minutes: int = 0,
    hours: int = 0,
    days: int = 0,
    weeks: int = 0,
    timezone: str = "UTC",
    start_time: dt.datetime | None = None,
    end_time: dt.datetime | None = None,
    overlap: str = "skip",
) -> IntervalSchedule:
    """An interval schedule, e.g. `interval(minutes=30)`.

    Raises:
        ValueError: when the interval is not positive, or for a bad timezone or window.
    """
    span = dt.timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days, weeks=weeks)
    return IntervalSchedule(span, timezone, start_time, end_time, overlap)


def once(run_time: dt.datetime, timezone: str = "UTC", overlap: str = "skip") -> OnceSchedule:
    """A schedule that runs once, at `run_time`."""
    return OnceSchedule(run_time, timezone, overlap)


def schedule_factory(data: dict[str, Any]) -> Schedule:
    """A schedule from its `to_dict()` form.

    Raises:
        ValueError: for an unknown type.
    """
    kind = data.get("type")
    tz = data.get("timezone", "UTC")
    overlap = data.get("overlap", "skip")
    if kind == "cron":
        return CronSchedule(data["cron_expression"], tz, overlap)
    if kind == "interval":
        return IntervalSchedule(dt.timedelta(seconds=data["interval_seconds"]), tz, overlap=overlap)
    if kind == "once":
        return OnceSchedule(dt.datetime.fromisoformat(data["run_time"]), tz, overlap)
    raise ValueError(f"unknown schedule type {kind!r}: use cron, interval or once")
