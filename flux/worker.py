"""`flux worker`: runs whatever executions of a store are ready, many at once, until stopped
(SPEC.md 13.5).

On a PostgreSQL store a worker claims runnable executions of the workflows it loaded (its
queues, `FOR UPDATE SKIP LOCKED`), renews their leases, reaps the expired leases of others,
parks runs that only wait on the clock (they hold no slot until due) and marks diverged the
runs its code no longer replays. Any number of workers on any number of machines share a store.

On a directory of files a worker continues interrupted executions, wakes timed pauses that are
due, runs detached starts and cancellations asked for executions nobody runs: the store recovers
by itself after a reboot. The file locks keep any number of workers (and `flux resume`, `flux
recover`) from running one execution twice.

Every worker also fires the schedules of the workflows it loaded (SPEC.md "Schedules"): each fire makes an
execution that the store's workers then run like any other.

SIGTERM or SIGINT stops claiming at once; runs in flight are stopped without writing (as at
Ctrl-C: an open call stays open, as after a crash) and their leases handed back, so another
worker takes them over without waiting for the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flux._engine.calls import RunRequest
from flux._engine.errors import (
    DurabilityError,
    ExecutionLockedError,
    ExecutionNotFoundError,
    FluxError,
    NondeterminismError,
    OwnershipLostError,
    StoreError,
)
from flux._engine.executor import Executor, waiting_pauses
from flux._engine.history import History
from flux._engine.pacing import collector_paced
from flux._engine.parking import ParkingClock
from flux._engine.records import Status
from flux._engine.store import Store, open_store
from flux._engine.stores.pg_fleet import Claim, FleetMixin
from flux.client import check_durability
from flux.loader import load_recorded
from flux.options import uses_output_storage
from flux.schedules import Scheduler
from flux.workflow import Workflow

__all__ = ["Worker", "WorkerStats", "divergence_of", "serve"]

log = logging.getLogger("flux")

_BATCH = 64  # executions claimed at most per claim statement


@dataclass
class WorkerStats:
    """What a worker did, for logs and tests."""

    claimed: int = 0
    finished: int = 0
    paused: int = 0
    parked: int = 0
    diverged: int = 0
    errors: int = 0
    skipped: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def divergence_of(err: NondeterminismError) -> dict[str, Any]:
    """A diverged run as kept for `flux show`: the message and both sides of the call."""
    return {
        "message": str(err),
        "recorded": err.recorded,
        "current": err.current,
        "at": time.time(),
    }


class Worker:
    """Runs the ready executions of one store with the workflows it was given.

    Args:
        store: a store (a directory, a URL, a store object).
        workflows: the workflows this worker may run (an execution of another is never claimed).
        concurrency: executions run at once.
        queues: the queues claimed from (PostgreSQL).
        durability: of the runs ("fsync" or "os").
        park_after: a run that only waits on the clock for this many seconds or more is parked
            (PostgreSQL).
        poll: the longest pause between two looks for work when idle, in seconds.
    """

    def __init__(
        self,
        store: Any,
        workflows: Sequence[Workflow],
        *,
        concurrency: int = 256,
        queues: Sequence[str] = ("default",),
        durability: str | None = None,
        park_after: float = 5.0,
        poll: float = 0.25,
    ) -> None:
        from flux._engine.errors import InvalidOptionError

        if concurrency < 1:
            raise InvalidOptionError(f"concurrency={concurrency} must be >= 1")
        if not workflows:
            raise InvalidOptionError("a worker needs at least one workflow to run")
        self.store: Store = open_store(store)
        self.workflows = {wf.name: wf for wf in workflows}
        self.concurrency = concurrency
        self.queues = list(queues)
        self.durability = check_durability(durability)
        self.park_after = park_after
        self.poll = poll
        self.stats = WorkerStats()
        self.fleet = isinstance(self.store, FleetMixin)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._freed = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._files = _FileWork(self.store, set(self.workflows)) if not self.fleet else None
        self.scheduler: Scheduler | None = None
        if self.store.schedules is not None:
            self.scheduler = Scheduler(self.store, list(workflows), durability=self.durability)

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> WorkerStats:
        """Runs until `stop` is set; then stops the runs in flight and hands them back."""
        # Runs start and end all the time here: the collector keeps the pace of running runs
        # (SPEC.md 7) for as long as the worker does, rather than going back to Python's own
        # each time none is running, which collects at once everything made since.
        with collector_paced():
            return await self._serve(stop)

    async def _serve(self, stop: asyncio.Event | None) -> WorkerStats:
        self._stop = stop = stop or asyncio.Event()
        housekeeping = asyncio.create_task(self._housekeeping(stop)) if self.fleet else None
        firing = asyncio.create_task(self.scheduler.run(stop)) if self.scheduler is not None else None
        if self.fleet:
            loop = asyncio.get_running_loop()
            self.store.listen(lambda: loop.call_soon_threadsafe(self._freed.set))  # type: ignore[attr-defined]
        delay = 0.01
        try:
            while not stop.is_set():
                free = self.concurrency - len(self._running)
                asked = min(free, _BATCH)
                claims, due = await self._claim(asked)
                for claim in claims:
                    if claim.execution_id in self._running:
                        self.stats.skipped += 1
                        continue
                    self.stats.claimed += 1
                    self._running[claim.execution_id] = asyncio.create_task(self._run_claim(claim))
                if claims and len(claims) == asked:
                    delay = 0.01
                    if len(self._running) < self.concurrency:
                        await asyncio.sleep(0)
                        continue
                elif claims:
                    delay = 0.01
                else:
                    delay = min(delay * 2, self.poll)
                wait = delay if due is None else max(0.0, min(delay, due))
                if len(self._running) >= self.concurrency:
                    wait = self.poll
                self._freed.clear()
                await _first_of(wait, stop, self._freed)
        finally:
            if firing is not None:
                firing.cancel()
                with contextlib.suppress(BaseException):
                    await firing
            if housekeeping is not None:
                housekeeping.cancel()
                with contextlib.suppress(BaseException):
                    await housekeeping
            await self._shut_down()
        return self.stats

    async def _claim(self, n: int) -> tuple[list[Claim], float | None]:
        try:
            if self.fleet:
                return await asyncio.to_thread(self.store.claim, self.queues, list(self.workflows), n)  # type: ignore[attr-defined]
            assert self._files is not None
            return await asyncio.to_thread(self._files.find, n, set(self._running))
        except FluxError as err:  # the database is away: look again later
            log.warning("worker: cannot look for work (%s)", err)
            return [], self.poll

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Every lease/2: reap expired leases (any worker does; no leader) and send a heartbeat."""
        store: Any = self.store
        while not stop.is_set():
            try:
                reaped = await asyncio.to_thread(store.reap)
                if reaped:
                    log.info("worker: %d expired leases handed back", len(reaped))
                await asyncio.to_thread(
                    store.heartbeat, self.queues, list(self.workflows), self.concurrency, len(self._running)
                )
            except FluxError as err:
                log.warning("worker: housekeeping failed (%s)", err)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=store.lease / 2)

    async def _shut_down(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.fleet:
            with contextlib.suppress(FluxError):
                await asyncio.to_thread(self.store.retire)  # type: ignore[attr-defined]

    # -- one execution ----------------------------------------------------------------------------

    async def _run_claim(self, claim: Claim) -> None:
        try:
            await self._execute(claim)
        except NondeterminismError as err:
            self.stats.diverged += 1
            log.warning("execution %s diverged from the code and is stopped: %s", claim.execution_id, err)
            with contextlib.suppress(FluxError):
                self.store.mark_diverged(claim.execution_id, divergence_of(err))
        except (ExecutionLockedError, OwnershipLostError, ExecutionNotFoundError) as err:
            self.stats.skipped += 1  # another process has it: it runs there
            log.info("execution %s: %s: %s", claim.execution_id, type(err).__name__, err)
        except asyncio.CancelledError:
            raise
        except (StoreError, DurabilityError) as err:
            # The database went away in the middle: the run stopped without writing more; it is
            # runnable again as soon as the database answers.
            self.stats.errors += 1
            log.warning("execution %s stopped: %s: %s", claim.execution_id, type(err).__name__, err)
            self._retry_later(claim, 1.0)
        except Exception as err:  # noqa: BLE001 - one execution's trouble never stops the worker
            self.stats.errors += 1
            log.warning("execution %s could not be run: %s: %s", claim.execution_id, type(err).__name__, err)
            self._retry_later(claim, 30.0)
        finally:
            if self.fleet and self.store.is_claimed(claim.execution_id):  # type: ignore[attr-defined]
                with contextlib.suppress(FluxError):  # never taken by a run: hand it back
                    self.store.unclaim(claim.execution_id, claim.epoch)  # type: ignore[attr-defined]
            self._running.pop(claim.execution_id, None)
            self._freed.set()

    def _retry_later(self, claim: Claim, delay: float) -> None:
        with contextlib.suppress(FluxError):
            if self.fleet:
                store: Any = self.store
                if store.is_claimed(claim.execution_id):  # it failed before its run took the claim
                    store.unclaim(claim.execution_id, claim.epoch, time.time() + delay, at_once=False)
                else:
                    store.schedule(claim.execution_id, None, delay=delay)
            elif self._files is not None:
                self._files.later(claim.execution_id, time.time() + delay)

    async def _execute(self, claim: Claim) -> None:
        store = self.store
        header = store.header(claim.execution_id)
        wf, aliases = load_recorded(header.get("code") or {}, str(header.get("workflow", "")))
        request: dict[str, Any] = {
            "execution_id": claim.execution_id,
            "workflow_name": wf.name,
            "durability": self.durability,
            "aliases": aliases,
            "blob_output": uses_output_storage(wf.options),
        }
        if claim.cancel_requested:
            request["cancel"] = True
        elif claim.status == Status.PAUSED:
            due, later = self._due_pause(claim.execution_id)
            if due is None:
                self._release_claim(claim, later)
                return
            request.update(resume=True, resume_has_input=False, resume_pause=due)
        clock = ParkingClock(self.park_after) if self.fleet else None
        executor = Executor(store, RunRequest(**request), clock)
        if clock is not None:
            clock.executor = executor
        opened = executor.open()
        if clock is not None and executor.lease is not None:
            lease: Any = executor.lease
            clock.on_park = lambda wake: lease.park(str(Status.SLEEPING), wake)
        ctx = await wf._drive(executor, opened)
        if clock is not None and clock.parked_until is not None:
            self.stats.parked += 1
            log.info(
                "execution %s parked until %s",
                claim.execution_id,
                time.strftime("%H:%M:%S", time.localtime(clock.parked_until)),
            )
            return
        status = str(ctx.status)
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        if status == Status.PAUSED:
            self.stats.paused += 1
            _, later = self._due_pause(claim.execution_id)
            if later is not None:
                if self.fleet:
                    store.schedule(claim.execution_id, later)  # type: ignore[attr-defined]
                elif self._files is not None:
                    self._files.later(claim.execution_id, later)
        else:
            self.stats.finished += 1

    def _due_pause(self, execution_id: str) -> tuple[Any, float | None]:
        """The waiting timed pause that is due (its route or call id), and else the earliest
        wake-up time of the timed ones."""
        history = History(self.store.describe(execution_id))
        read = self.store.read(execution_id, visit=history.apply_all)
        history.journal = read.records
        if history.status != Status.PAUSED:
            return None, None
        timed = [w for w in waiting_pauses(self.store, history) if w.wake_at is not None]
        now = time.time()
        for w in sorted(timed, key=lambda w: w.wake_at or 0.0):
            if (w.wake_at or 0.0) <= now:
                return (w.route if len(w.route) > 1 else w.call_id), None
        return None, min((w.wake_at for w in timed if w.wake_at is not None), default=None)

    def _release_claim(self, claim: Claim, wake_at: float | None) -> None:
        if self.fleet:
            self.store.unclaim(claim.execution_id, claim.epoch, wake_at, at_once=False)  # type: ignore[attr-defined]
        elif self._files is not None and wake_at is not None:
            self._files.later(claim.execution_id, wake_at)


async def _first_of(timeout: float, *events: asyncio.Event) -> None:
    """Waits until one of `events` is set, or `timeout` seconds."""
    if timeout <= 0 or any(e.is_set() for e in events):
        await asyncio.sleep(0)
        return
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


class _FileWork:
    """Work in a directory store: executions nobody runs that are interrupted, created (a
    detached start), asked to cancel, or paused at a timed pause that is due. Journals are read
    again only when they changed."""

    def __init__(self, store: Store, workflows: set[str]) -> None:
        self.store = store
        self.workflows = workflows
        self._seen: dict[str, tuple[Any, Any]] = {}  # id -> (journal's stat key, summary)
        self._not_before: dict[str, float] = {}  # id -> wake-up time or retry time

    def later(self, execution_id: str, at: float) -> None:
        self._not_before[execution_id] = at

    def _key(self, execution_id: str) -> Any:
        try:
            st = os.stat(self.store.describe(execution_id))
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, self.store.cancel_requested(execution_id))

    def _wake_of(self, execution_id: str) -> float | None:
        """The earliest wake-up time of the timed pauses a paused execution waits at."""
        history = History(self.store.describe(execution_id))
        try:
            read = self.store.read(execution_id, visit=history.apply_all)
        except FluxError:
            return None
        history.journal = read.records
        wakes = [w.wake_at for w in waiting_pauses(self.store, history) if w.wake_at is not None]
        return min(wakes) if wakes else None

    def find(self, n: int, running: set[str]) -> tuple[list[Claim], float | None]:
        now = time.time()
        found: list[Claim] = []
        next_due: float | None = None
        for execution_id in self.store.list_ids():
            if len(found) >= n:
                break
            if execution_id in running:
                continue
            key = self._key(execution_id)
            cached = self._seen.get(execution_id)
            if cached is None or cached[0] != key:
                summary = self.store.summary(execution_id)
                self._seen[execution_id] = (key, summary)
                self._not_before.pop(execution_id, None)
                if summary.status == Status.PAUSED and summary.workflow in self.workflows:
                    wake = self._wake_of(execution_id)
                    if wake is not None:
                        self._not_before[execution_id] = wake
            else:
                summary = cached[1]
            if key is None or summary.workflow not in self.workflows or summary.parent is not None:
                continue
            status = str(summary.status)
            cancel = bool(key[2])
            if status in ("completed", "failed", "cancelled", "damaged", "diverged"):
                continue
            at = self._not_before.get(execution_id)
            if at is not None and at > now and not cancel:
                next_due = at if next_due is None else min(next_due, at)
                continue
            if status == Status.PAUSED and at is None and not cancel:
                continue  # waits for an input
            if self.store.owner(execution_id) is not None:
                self._seen.pop(execution_id, None)  # look again next time: its owner may die
                continue
            if status == Status.RUNNING:
                status = str(Status.INTERRUPTED)  # its owner died since it was summarized
            found.append(Claim(execution_id, summary.workflow, status, cancel))
        return found, (None if next_due is None else max(0.0, next_due - now))


def serve(
    targets: Sequence[str],
    *,
    store: Any = None,
    concurrency: int = 256,
    lease: float | None = None,
    queues: Sequence[str] = ("default",),
    park_after: float = 5.0,
    durability: str | None = None,
    on_ready: Any = None,
) -> tuple[WorkerStats, list[str]]:
    """`flux worker`: loads the workflows of `targets` (files or modules) and runs a worker
    until SIGTERM or SIGINT."""
    import signal

    from flux._engine.errors import InvalidOptionError
    from flux.loader import load_file, load_module, workflows_in
    from flux.workflow import run_sync

    found: dict[str, Workflow] = {}
    for target in targets:
        module = (
            load_file(target)
            if target.endswith(".py") or os.sep in target or os.path.exists(target)
            else load_module(target)
        )
        for wf in workflows_in(module).values():
            found.setdefault(wf.name, wf)
    if not found:
        from flux._engine.errors import WorkflowLoadError

        raise WorkflowLoadError(f"{', '.join(targets)}: no workflows found")
    opened = open_store(store)
    if lease is not None:
        if not isinstance(opened, FleetMixin):
            raise InvalidOptionError("--lease is for postgresql://... stores (a file store has no leases)")
        if not lease > 0:
            raise InvalidOptionError(f"--lease {lease:g} must be > 0 seconds")
        opened.lease = lease
    worker = Worker(
        opened,
        list(found.values()),
        concurrency=concurrency,
        queues=queues,
        durability=durability,
        park_after=park_after,
    )

    async def go() -> WorkerStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(sorted(found))
        return await worker.run(stop)

    return run_sync(go()), sorted(found)
