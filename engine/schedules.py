"""Schedules: when they fire (cron, interval, once), how a store keeps them, and the one fire
algorithm every worker runs (SPEC.md "Schedules"). Only this module decides which fires start.

A fire is idempotent because its execution id is derived from the schedule's name and the fire
time (`fire_id`): a store never makes a second execution of an id, so two workers, a restart or
a crash between starting a fire and recording it can never start one fire twice. A schedule's
`next_fire` only moves past a fire once that fire's execution exists (or a policy dropped it),
so a fire due while a worker ran is never skipped.

    Book                      the schedules of one store
    ├── FileBook              <home>/schedules/<name>.json, atomic replace under one flock
    ├── MemoryBook            a dict, for the memory store
    └── PgBook                flux.schedules, one row each (engine/stores/pg_schedules.py)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from flux._engine import faults as _faults
from flux._engine.errors import (
    ExecutionExistsError,
    InvalidOptionError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    StoreError,
)

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

__all__ = [
    "MISSED",
    "OVERLAP",
    "Book",
    "FileBook",
    "MemoryBook",
    "check_name",
    "check_spec",
    "fire_due",
    "fire_id",
    "fires_between",
    "new_state",
    "next_after",
    "trigger",
]

MISSED = ("skip", "latest", "all")
OVERLAP = ("allow", "skip", "buffer_one")
FINISHED = ("completed", "failed", "cancelled", "diverged", "damaged")
DEFAULT_GRACE = 60.0
DEFAULT_MISSED_LIMIT = 10
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_SCAN_LIMIT = 100_000  # fires looked at in one catch-up at most (a per-second schedule: a day)


# -- names and ids -----------------------------------------------------------------------------


def check_name(name: str) -> str:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidOptionError(
            f"schedule name {name!r}: use 1 to 40 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


def _stamp(at: float) -> str:
    """A fire time in an execution id: UTC, to the second, milliseconds when it has any."""
    whole = math.floor(at)
    ms = round((at - whole) * 1000)
    if ms == 1000:
        whole, ms = whole + 1, 0
    text = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y%m%dT%H%M%S")
    return text + (f"{ms:03d}" if ms else "") + "Z"


def fire_id(name: str, at: float) -> str:
    """The execution id of the fire of schedule `name` at `at` (SPEC.md "Schedules")."""
    return f"{name}-{_stamp(at)}"


def trigger_id(name: str, at: float) -> str:
    """The execution id of a fire asked for by hand (`flux schedule trigger`) at `at`."""
    return f"{name}-{_stamp(at)}-now"


# -- specs: when a schedule fires ---------------------------------------------------------------

_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_ALLOWED = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31 (or L)",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday)",
}


def zone(name: str) -> ZoneInfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # here: `flux exec` lists no schedule

    if not isinstance(name, str) or not name or name == "local":
        raise InvalidOptionError(f"timezone={name!r}: give an IANA time zone name such as 'Europe/Lisbon' or 'UTC'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidOptionError(
            f"Invalid timezone {name!r}: timezone={name!r} is not a known IANA time zone (e.g. 'Europe/Lisbon', 'UTC')"
        ) from None


# The nicknames cron implementations accept, as the five fields they stand for.
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def five_fields(expression: str) -> str:
    """The expression with a nickname (`@daily`, `@hourly`, ...) spelled out."""
    return _NICKNAMES.get(expression.strip().lower(), expression)


def check_cron(expression: str) -> str:
    """Raises InvalidOptionError naming the field that is wrong and what it allows."""
    from cronsim import CronSim, CronSimError

    bad = f"Invalid cron expression: cron({expression!r})"
    if not isinstance(expression, str):
        raise InvalidOptionError(f"{bad}: the expression must be a str such as '0 9 * * MON-FRI'")
    if expression.strip().startswith("@") and expression.strip().lower() not in _NICKNAMES:
        raise InvalidOptionError(
            f"{bad}: not a known nickname; give one of {', '.join(_NICKNAMES)} or five fields"
        )
    expression = five_fields(expression)
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidOptionError(
            f"{bad}: {len(fields)} fields; give 5: minute hour day-of-month month day-of-week"
        )
    try:
        CronSim(expression, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    except CronSimError as err:
        text = str(err).lower()
        for i, field in enumerate(_FIELDS):
            if field in text or field.replace("-", " ") in text:
                raise InvalidOptionError(
                    f"{bad}: field {i + 1} ({field}) {fields[i]!r} is not valid; "
                    f"a {field} is {_ALLOWED[field]}, with * , - / (e.g. '*/15')"
                ) from None
        raise InvalidOptionError(f"{bad}: {err}") from None
    return expression


def check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec as stored (cron, interval or once), checked."""
    kind = spec.get("type")
    if kind == "cron":
        check_cron(spec["expression"])
        zone(spec.get("timezone", "UTC"))
    elif kind == "interval":
        seconds = spec.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0 or math.isinf(seconds):
            raise InvalidOptionError(f"interval: every={seconds!r} seconds must be a finite number > 0")
        if not isinstance(spec.get("start"), (int, float)):
            raise InvalidOptionError("interval: the schedule needs a start time")
        end = spec.get("end")
        if end is not None and end < spec["start"]:
            raise InvalidOptionError("interval: end_time is before start_time")
    elif kind == "once":
        if not isinstance(spec.get("at"), (int, float)):
            raise InvalidOptionError("once: the schedule needs the time to run at")
    else:
        raise InvalidOptionError(f"schedule type {kind!r}: use cron, interval or once")
    return spec


def _cron_iter(spec: dict[str, Any], t: float, reverse: bool) -> Iterator[float]:
    from cronsim import CronSim

    start = dt.datetime.fromtimestamp(t, zone(spec.get("timezone", "UTC")))
    for when in CronSim(five_fields(spec["expression"]), start, reverse=reverse):
        yield when.timestamp()


def next_after(spec: dict[str, Any], t: float) -> float | None:
    """The first fire strictly after `t`, or None when the schedule fires no more."""
    kind = spec["type"]
    if kind == "once":
        return float(spec["at"]) if spec["at"] > t else None
    if kind == "interval":
        start, every, end = float(spec["start"]), float(spec["seconds"]), spec.get("end")
        k = 0 if t < start else math.floor((t - start) / every) + 1
        at: float = start + k * every
        while at <= t:  # float rounding
            k += 1
            at = start + k * every
        return None if end is not None and at > end else at
    return next(_cron_iter(spec, t, reverse=False), None)


def fires_between(spec: dict[str, Any], lo: float, hi: float, limit: int = _SCAN_LIMIT) -> list[float]:
    """The fires f with lo <= f <= hi, oldest first, at most `limit` (the newest ones)."""
    if hi < lo:
        return []
    kind = spec["type"]
    out: list[float] = []
    if kind == "cron":
        for at in _cron_iter(spec, hi + 0.001, reverse=True):  # newest first
            if at < lo or len(out) >= limit:
                break
            if at <= hi:
                out.append(at)
        out.reverse()
        return out
    if kind == "interval":
        start, every, end = float(spec["start"]), float(spec["seconds"]), spec.get("end")
        if end is not None:
            hi = min(hi, float(end))
        first = max(0, math.ceil((lo - start) / every - 1e-9))
        last = math.floor((hi - start) / every + 1e-9)
        return [start + k * every for k in range(max(first, last - limit + 1), last + 1)]
    nxt = next_after(spec, lo - 1e-6)
    while nxt is not None and nxt <= hi:
        out.append(nxt)
        if len(out) > limit:
            out.pop(0)
        nxt = next_after(spec, nxt)
    return out


# -- a schedule's state ---------------------------------------------------------------------------


def new_state(
    name: str,
    workflow: str,
    spec: dict[str, Any],
    *,
    now: float,
    input: Any = None,
    missed: str = "latest",
    missed_limit: int = DEFAULT_MISSED_LIMIT,
    overlap: str = "skip",
    grace: float = DEFAULT_GRACE,
    paused: bool = False,
    auto: bool = False,
) -> dict[str, Any]:
    """A new schedule as a book keeps it. `input` is the workflow input in the journal's form."""
    check_name(name)
    check_spec(spec)
    if missed not in MISSED:
        raise InvalidOptionError(f"missed={missed!r}: use one of {', '.join(MISSED)}")
    if overlap not in OVERLAP:
        raise InvalidOptionError(f"overlap={overlap!r}: use one of {', '.join(OVERLAP)}")
    if isinstance(missed_limit, bool) or not isinstance(missed_limit, int) or missed_limit < 1:
        raise InvalidOptionError(f"missed_limit={missed_limit!r} must be an int >= 1")
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
        raise InvalidOptionError(f"grace={grace!r} must be a number of seconds >= 0")
    first = next_after(spec, now) if spec["type"] != "once" else float(spec["at"])
    return {
        "name": name,
        "workflow": workflow,
        "spec": spec,
        "input": input,
        "missed": missed,
        "missed_limit": missed_limit,
        "overlap": overlap,
        "grace": float(grace),
        "paused": paused,
        "auto": auto,
        "next_fire": first,
        "last_fire": None,
        "last_execution": None,
        "buffered": None,
        "fires": 0,
        "created": now,
    }


# -- books: where schedules are kept ------------------------------------------------------------


class Book(Protocol):
    """The schedules of one store."""

    def create(self, state: dict[str, Any]) -> None:
        """Adds a schedule; ScheduleExistsError when one of that name exists."""
        ...

    def get(self, name: str) -> dict[str, Any]: ...

    def all(self) -> list[dict[str, Any]]: ...

    def delete(self, name: str) -> None: ...

    def update(
        self, name: str, *, skip_locked: bool = False
    ) -> contextlib.AbstractContextManager[dict[str, Any] | None]:
        """Holds the schedule against every other process while the block runs and writes the
        dict back when the block ends without an error. With `skip_locked`, a schedule another
        process holds yields None at once. ScheduleNotFoundError when there is none."""
        ...

    def due(self, now: float) -> list[str]:
        """Names of the schedules not paused with a fire due at `now` or a buffered fire."""
        ...

    def next_due(self) -> float | None:
        """The earliest `next_fire` of the schedules not paused."""
        ...


def _is_due(state: dict[str, Any], now: float) -> bool:
    if state.get("paused"):
        return False
    nxt = state.get("next_fire")
    return (nxt is not None and nxt <= now) or state.get("buffered") is not None


class MemoryBook:
    """Schedules of the memory store: one process only."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    def create(self, state: dict[str, Any]) -> None:
        with self._lock:
            if state["name"] in self._items:
                raise ScheduleExistsError(state["name"], "memory")
            self._items[state["name"]] = orjson.loads(orjson.dumps(state))

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._items:
                raise ScheduleNotFoundError(name, "memory")
            found: dict[str, Any] = orjson.loads(orjson.dumps(self._items[name]))
            return found

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.get(n) for n in sorted(self._items)]

    def delete(self, name: str) -> None:
        with self._lock:
            if self._items.pop(name, None) is None:
                raise ScheduleNotFoundError(name, "memory")

    @contextlib.contextmanager
    def update(self, name: str, *, skip_locked: bool = False) -> Iterator[dict[str, Any] | None]:
        with self._lock:
            state = self.get(name)
            yield state
            self._items[name] = orjson.loads(orjson.dumps(state))

    def due(self, now: float) -> list[str]:
        with self._lock:
            return [n for n, s in sorted(self._items.items()) if _is_due(s, now)]

    def next_due(self) -> float | None:
        with self._lock:
            times = [
                s["next_fire"] for s in self._items.values() if not s.get("paused") and s.get("next_fire") is not None
            ]
            return min(times) if times else None


class FileBook:
    """`<home>/schedules/<name>.json`, each replaced atomically (write, fsync, rename, fsync of the
    folder) while `<home>/schedules/.lock` is flock'ed: any number of processes read and change
    schedules without losing an update; a reader never sees half a file."""

    def __init__(self, home: str) -> None:
        self.dir = os.path.join(home, "schedules")

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, check_name(name) + ".json")

    @contextlib.contextmanager
    def _locked(self, *, blocking: bool = True) -> Iterator[bool]:
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise StoreError(f"{self.dir}: cannot open the schedules ({err.strerror})") from err
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the flock

    def _read(self, name: str) -> dict[str, Any]:
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                data: dict[str, Any] = orjson.loads(f.read())
                return data
        except FileNotFoundError:
            raise ScheduleNotFoundError(name, self.dir) from None
        except (OSError, orjson.JSONDecodeError) as err:
            raise StoreError(f"{path}: cannot read the schedule ({err}); delete the file and create it again") from err

    def _write(self, state: dict[str, Any]) -> None:
        path = self._path(state["name"])
        tmp = path + ".new"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, orjson.dumps(state, option=orjson.OPT_SORT_KEYS) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as err:
            raise StoreError(f"{path}: cannot write the schedule ({err.strerror})") from err

    def create(self, state: dict[str, Any]) -> None:
        with self._locked():
            if os.path.exists(self._path(state["name"])):
                raise ScheduleExistsError(state["name"], self.dir)
            self._write(state)

    def get(self, name: str) -> dict[str, Any]:
        return self._read(name)

    def _names(self) -> list[str]:
        try:
            files = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(f[:-5] for f in files if f.endswith(".json") and _NAME_RE.fullmatch(f[:-5]))

    def all(self) -> list[dict[str, Any]]:
        out = []
        for name in self._names():
            with contextlib.suppress(ScheduleNotFoundError):
                out.append(self._read(name))
        return out

    def delete(self, name: str) -> None:
        with self._locked():
            try:
                os.unlink(self._path(name))
            except FileNotFoundError:
                raise ScheduleNotFoundError(name, self.dir) from None

    @contextlib.contextmanager
    def update(self, name: str, *, skip_locked: bool = False) -> Iterator[dict[str, Any] | None]:
        with self._locked(blocking=not skip_locked) as held:
            if not held:
                yield None
                return
            state = self._read(name)
            before = orjson.dumps(state, option=orjson.OPT_SORT_KEYS)
            yield state
            if orjson.dumps(state, option=orjson.OPT_SORT_KEYS) != before:
                self._write(state)

    def due(self, now: float) -> list[str]:
        return [s["name"] for s in self.all() if _is_due(s, now)]

    def next_due(self) -> float | None:
        times = [s["next_fire"] for s in self.all() if not s.get("paused") and s.get("next_fire") is not None]
        return min(times) if times else None


# -- the fire algorithm (SPEC.md "Schedules") ----------------------------------------------------------

# start(execution_id, workflow, input, schedule_record) -> None; raises ExecutionExistsError when
# the execution exists already (the fire was started before).
Starter = Callable[[str, str, Any, dict[str, Any]], None]
# status(execution_id) -> its status, or None when there is no such execution.
StatusOf = Callable[[str], "str | None"]


def _plan(state: dict[str, Any], now: float) -> list[float]:
    """The due fires that the missed-fire policy keeps, oldest first."""
    nxt = state.get("next_fire")
    if nxt is None or nxt > now:
        return []
    spec, grace = state["spec"], state["grace"]
    on_time = fires_between(spec, max(nxt, now - grace), now)
    edge = (on_time[0] if on_time else now - grace) - 1e-6
    policy = state["missed"]
    if nxt > edge or policy == "skip":
        missed: list[float] = []
    elif policy == "latest":
        missed = [] if on_time else fires_between(spec, nxt, edge, 1)
    else:
        missed = fires_between(spec, nxt, edge, int(state["missed_limit"]))
    return missed + on_time


def _open(state: dict[str, Any], status_of: StatusOf) -> bool:
    last = state.get("last_execution")
    if last is None:
        return False
    status = status_of(last)
    return status is not None and status not in FINISHED


def fire_due(
    book: Book,
    now: float,
    workflows: set[str],
    start: Starter,
    status_of: StatusOf,
    *,
    on_fire: Callable[[str, float], None] | None = None,
) -> list[str]:
    """Starts every fire due at `now` of the schedules of `workflows`; returns the execution ids
    started. Each schedule is held while its fires start, and its state written after."""
    started: list[str] = []
    for name in book.due(now):
        with contextlib.suppress(ScheduleNotFoundError), book.update(name, skip_locked=True) as state:
            if state is None or state["workflow"] not in workflows or not _is_due(state, now):
                continue
            started += _fire(state, now, start, status_of, on_fire)
    return started


def _fire(
    state: dict[str, Any], now: float, start: Starter, status_of: StatusOf, on_fire: Callable[[str, float], None] | None
) -> list[str]:
    started: list[str] = []

    def go(at: float) -> None:
        execution_id = fire_id(state["name"], at)
        try:
            start(execution_id, state["workflow"], state["input"], {"name": state["name"], "at": at})
        except ExecutionExistsError:
            pass  # started before this process stopped short of recording it: never twice
        else:
            started.append(execution_id)
        if _faults.ACTIVE:
            _faults.reach("schedule_fired", None)
        if on_fire is not None:
            on_fire(execution_id, at)
        state["last_execution"] = execution_id
        state["last_fire"] = at
        state["fires"] = int(state.get("fires", 0)) + 1

    overlap = state["overlap"]
    buffered = state.get("buffered")
    if buffered is not None and not _open(state, status_of):
        state["buffered"] = None
        go(buffered)
    for at in _plan(state, now):
        if overlap == "allow" or not _open(state, status_of):
            go(at)
        elif overlap == "buffer_one" and state.get("buffered") is None:
            state["buffered"] = at
        # else: skipped (overlap "skip", or the buffer holds a fire already)
    if state.get("next_fire") is not None and state["next_fire"] <= now:
        state["next_fire"] = next_after(state["spec"], now)
    return started


def trigger(book: Book, name: str, now: float, start: Starter) -> str:
    """Starts one execution of schedule `name` now, outside its times (`flux schedule trigger`)."""
    with book.update(name) as state:
        assert state is not None
        execution_id = trigger_id(name, now)
        start(execution_id, state["workflow"], state["input"], {"name": name, "at": now, "trigger": True})
        state["last_execution"] = execution_id
        return execution_id


def spec_hash(state: dict[str, Any]) -> str:
    """What an automatic schedule was declared as: a changed declaration replaces it."""
    keys = ("workflow", "spec", "input", "missed", "missed_limit", "overlap", "grace")
    return hashlib.sha256(orjson.dumps({k: state.get(k) for k in keys}, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
