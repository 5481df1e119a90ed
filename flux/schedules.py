"""Schedules of a store: create, list, pause, resume, trigger and delete them, and the
`Scheduler` that `flux worker` runs to fire them (SPEC.md "Schedules").

The fire algorithm itself (which fires start, idempotent ids, policies) is the engine's
(flux._engine.schedules); this module supplies what it needs from `flux`: the workflows'
code, the clock, and how an execution is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from flux._engine import schedules as engine
from flux._engine.calls import RunRequest
from flux._engine.clock import Clock, SystemClock, iso
from flux._engine.codec import decode, encode
from flux._engine.errors import FluxError, InvalidOptionError, StoreError
from flux._engine.executor import Executor
from flux._engine.store import Store, open_store
from flux.domain.schedule import Schedule, cron, interval, once
from flux.workflow import Workflow

__all__ = [
    "Scheduler",
    "build_schedule",
    "create_schedule",
    "delete_schedule",
    "get_schedule",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "trigger_schedule",
    "upcoming",
]

log = logging.getLogger("flux")


def book_of(store: Store) -> engine.Book:
    book: engine.Book | None = store.schedules
    if book is None:
        raise StoreError(f"{store.url}: this store keeps no schedules")
    return book


def _state(
    name: str, workflow: str, schedule: Schedule, input: Any, now: float, *, paused: bool = False, auto: bool = False
) -> dict[str, Any]:
    if not isinstance(schedule, Schedule):
        raise InvalidOptionError(
            f"schedule={schedule!r} must be cron(...), interval(...) or once(...) of flux.domain.schedule"
        )
    return engine.new_state(
        name, workflow, schedule.spec(now), now=now, input=encode(input, "schedule input"),
        missed=schedule.missed, missed_limit=schedule.missed_limit, overlap=schedule.overlap, grace=schedule.grace,
        paused=paused, auto=auto,
    )


_LONGEST = 5200 * 604800.0  # 100 years, about: fire times stay far inside what datetime can show


def _every(text: str | float, name: str) -> float:
    """An interval as `flux schedule create --interval` takes it: 30s, 15m, 2h, 1d, 1w (a bare
    number, or a number given as one, is seconds), at most 5200w."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not math.isfinite(text) or text <= 0:
            raise InvalidOptionError(f"{name} {text!r}: give a number of seconds > 0, or 30s, 15m, 2h, 1d or 1w")
        seconds = float(text)
    else:
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*", text) if isinstance(text, str) else None
        if found is None:
            raise InvalidOptionError(f"{name} {text!r}: give a number with a unit, such as 30s, 15m, 2h, 1d or 1w")
        seconds = float(found.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[found.group(2) or "s"]
    if seconds > _LONGEST:
        raise InvalidOptionError(f"{name} {text!r}: too long; give at most 5200w (100 years)")
    return seconds


def build_schedule(
    *,
    cron_expr: str | None = None,
    every: str | float | None = None,
    at: str | None = None,
    timezone: str = "UTC",
    overlap: str = "skip",
    missed: str = "latest",
    missed_limit: int = engine.DEFAULT_MISSED_LIMIT,
    grace: float = engine.DEFAULT_GRACE,
    flag: str = "--",
) -> Schedule:
    """The schedule `flux schedule create` (and `POST /api/v1/schedules`) describes: exactly one
    of a cron expression, an interval (30s, 15m, 2h, 1d, 1w) or a time to fire once at (ISO-8601,
    read in `timezone` when it has no offset). Errors name the option as `flag` + its name
    (`--cron` on the command line, `cron` in the API).

    Raises:
        InvalidOptionError: naming the option that is wrong and what it allows.
    """
    given = [x for x in (cron_expr, every, at) if x is not None]
    if len(given) != 1:
        raise InvalidOptionError(f"give exactly one of {flag}cron, {flag}interval or {flag}at")
    policies: dict[str, Any] = {"missed": missed, "missed_limit": missed_limit, "grace": grace}
    if cron_expr is not None:
        return cron(cron_expr, timezone, overlap, **policies)
    if every is not None:
        return interval(seconds=_every(every, f"{flag}interval"), timezone=timezone, overlap=overlap, **policies)
    if not isinstance(at, str):
        raise InvalidOptionError(f"{flag}at {at!r}: give an ISO-8601 time such as '2026-12-01T09:00'")
    try:
        dt.datetime.fromisoformat(at)
    except ValueError:
        raise InvalidOptionError(f"{flag}at {at!r} is not an ISO-8601 time such as '2026-12-01T09:00'") from None
    return once(at=at, timezone=timezone, overlap=overlap, **policies)


def upcoming(state: dict[str, Any], count: int = 5) -> list[float]:
    """A stored schedule's next `count` fire times (epoch seconds, oldest first): its
    `next_fire` (what `flux schedule list` shows; a past one is due and not fired yet), then the
    fires after it as the fire algorithm computes them. None while the schedule is paused (a
    resume starts again from the first fire after it)."""
    if state.get("paused") or count <= 0:
        return []
    out: list[float] = []
    at = state.get("next_fire")
    while at is not None and len(out) < count:
        out.append(float(at))
        at = engine.next_after(state["spec"], at)
    return out


def create_schedule(
    store: Any, name: str, workflow: str, schedule: Schedule, input: Any = None, *, paused: bool = False,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Stores a new schedule of `workflow` (a workflow name) and returns it.

    Raises:
        ScheduleExistsError, InvalidOptionError (a bad name or policy), EncodeError (the input).
    """
    opened = open_store(store)
    state = _state(name, workflow, schedule, input, (clock or SystemClock()).now(), paused=paused)
    book_of(opened).create(state)
    return state


def get_schedule(store: Any, name: str) -> dict[str, Any]:
    return book_of(open_store(store)).get(engine.check_name(name))


def list_schedules(store: Any) -> list[dict[str, Any]]:
    return book_of(open_store(store)).all()


def delete_schedule(store: Any, name: str) -> None:
    """Deletes a schedule; the executions it started stay."""
    book_of(open_store(store)).delete(engine.check_name(name))


def pause_schedule(store: Any, name: str) -> dict[str, Any]:
    """Stops a schedule's fires (a buffered fire stays buffered) until `resume_schedule`."""
    with book_of(open_store(store)).update(engine.check_name(name)) as state:
        assert state is not None
        state["paused"] = True
        return dict(state)


def resume_schedule(store: Any, name: str, *, clock: Clock | None = None) -> dict[str, Any]:
    """Fires a paused schedule again from now on: fires that fell in the pause are not made up."""
    now = (clock or SystemClock()).now()
    with book_of(open_store(store)).update(engine.check_name(name)) as state:
        assert state is not None
        if state.get("paused"):
            state["paused"] = False
            if state["spec"]["type"] != "once" or (state.get("next_fire") or 0) <= now:
                state["next_fire"] = engine.next_after(state["spec"], now)
        return dict(state)


def trigger_schedule(
    store: Any,
    name: str,
    workflows: Sequence[Workflow] = (),
    *,
    clock: Clock | None = None,
    durability: str = "fsync",
) -> str:
    """Starts one execution of the schedule now (its id ends in `-now`); a worker runs it.
    The workflow's code must be importable here, or given in `workflows`."""
    opened = open_store(store)
    sched = Scheduler(opened, workflows, clock=clock, durability=durability, register=False)
    return engine.trigger(book_of(opened), engine.check_name(name), sched.clock.now(), sched.start)


class Scheduler:
    """Fires the due schedules of `workflows` in one store. `flux worker` runs one; any number of
    schedulers (in any number of processes) may fire one store at once.

    Args:
        store: a store.
        workflows: the workflows whose schedules are fired; their `schedule=` options are stored
            as automatic schedules (named after the workflow) unless `register` is False.
        clock: `now` of fires (a `VirtualClock` in tests).
    """

    def __init__(
        self,
        store: Any,
        workflows: Sequence[Workflow],
        *,
        clock: Clock | None = None,
        durability: str = "fsync",
        register: bool = True,
        poll: float = 1.0,
    ) -> None:
        self.store = open_store(store)
        self.book = book_of(self.store)
        self.workflows = {wf.name: wf for wf in workflows}
        self.clock: Clock = clock or SystemClock()
        self.durability = durability
        self.poll = poll
        self.fired: list[str] = []
        if register:
            self.register()

    def register(self) -> list[str]:
        """Stores the `schedule=` option of each workflow as the automatic schedule named after
        it. A schedule whose declaration changed is replaced (its pause kept); one whose
        declaration is the same is left as it is, so restarting workers never moves its fires."""
        done = []
        now = self.clock.now()
        for wf in self.workflows.values():
            declared = wf.options.get("schedule")
            if declared is None:
                continue
            state = _state(wf.name, wf.name, declared, None, now, auto=True)
            state["declared"] = engine.spec_hash({**state, "spec": declared.spec(0.0)})
            try:
                self.book.create(state)
            except FluxError:
                with self.book.update(wf.name) as old:
                    assert old is not None
                    if old.get("declared") != state["declared"]:
                        state["paused"] = bool(old.get("paused"))
                        state["last_execution"] = old.get("last_execution")
                        old.clear()
                        old.update(state)
                        log.info("schedule %s: its declaration changed; replaced", wf.name)
            done.append(wf.name)
        return done

    def start(self, execution_id: str, workflow: str, input: Any, fire: dict[str, Any]) -> None:
        """Creates the execution of one fire (its header records the fire); a worker runs it."""
        wf = self.workflows.get(workflow)
        if wf is None:
            from flux.loader import registered

            found = registered(workflow)
            if not found:
                raise InvalidOptionError(
                    f"schedule {fire['name']!r}: workflow {workflow!r} is not loaded here; "
                    "give the file that defines it (flux schedule trigger NAME FILE)"
                )
            wf = found[-1]
        from flux.loader import code_of
        from flux.options import uses_output_storage

        request = RunRequest(
            execution_id=execution_id,
            workflow_name=wf.name,
            code=code_of(wf),
            input=decode(input),
            create=True,
            durability=self.durability,
            blob_output=uses_output_storage(wf.options),
            schedule={**fire, "at": iso(fire["at"])},
        )
        executor = Executor(self.store, request, self.clock)
        executor.open()
        assert executor.lease is not None
        executor.lease.close()  # created and unowned: runnable by any worker

    def status_of(self, execution_id: str) -> str | None:
        if not self.store.exists(execution_id):
            return None
        return str(self.store.summary(execution_id).status)

    def tick(self) -> float | None:
        """Starts every fire due now; returns when the next one is due (None: none is)."""
        started = engine.fire_due(self.book, self.clock.now(), set(self.workflows), self.start, self.status_of)
        self.fired += started
        for execution_id in started:
            log.info("schedule fire: execution %s started", execution_id)
        return self.book.next_due()

    async def run(self, stop: asyncio.Event) -> None:
        """Fires schedules until `stop` is set: at each due time, and every `poll` seconds to
        see schedules that other processes created, resumed or changed."""
        while not stop.is_set():
            try:
                due = await asyncio.to_thread(self.tick)
            except FluxError as err:
                log.warning("schedules: cannot fire (%s)", err)
                due = None
            wait = self.poll if due is None else min(self.poll, max(0.0, due - self.clock.now()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.001))
