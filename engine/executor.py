"""Drives one execution: asks the replay core (engine/core.py) what the journal says at each
call, and does what it answers: appends records, makes them durable, runs bodies, finishes.

The executor is the only code that interprets the traps of engine/traps.py. It makes no file
or network call of its own: the store's lease and writer do (engine/store.py). Its rules:
- no task body starts before every record appended so far is durable (group commit: records
  appended while the event loop is busy share one write and one fsync, SPEC.md 6);
- on engine trouble (divergence, damage, a failed write) nothing more is written (SPEC.md 4.2);
- a run ends paused once every branch still running waits at a pause and nothing else is in
  flight (SPEC.md 4.5); the pauses reached are recorded then.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import types
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, cast

from flux._engine import records as R
from flux._engine import traps
from flux._engine.calls import Outcome, RunRequest, TaskSpec, _Suspend, child_execution_id, user_frame
from flux._engine.clock import Clock, SystemClock, iso, stamper
from flux._engine.codec import PLAIN_TYPES, all_plain, decode, encode, encode_args, encode_exception, find_class
from flux._engine.core import CANCEL, LIVE, REPLAY, RERUN, EndOfJournal, ReplayCore, format_call
from flux._engine.errors import EncodeError, EngineError, ExecutionStateError, SecretError
from flux._engine.handling import run_attempt, run_handled
from flux._engine.history import CallHistory, History
from flux._engine.journal import FORMAT_VERSION, JournalRead, Known, Records
from flux._engine.listeners import Audience, RunInfo, listeners_for
from flux._engine.outputs import SENSITIVE, Outputs, as_execution_error
from flux._engine.pacing import collector_paced, no_cycle_collection
from flux._engine.pauses import WaitingPause, pick_pause, waiting_pauses
from flux._engine.records import Status
from flux._engine.refs import OutputStorageReference
from flux._engine.secrets import Secrets, redact
from flux._engine.snapshot import known_prefix, snapshot_of
from flux._engine.store import Lease, Store

_COMPLETED = R.TASK_COMPLETED
log = logging.getLogger("flux")

_CANCEL_POLL = 0.2  # seconds between checks for a cancellation asked by another process
_IDLE_ROUNDS = 2  # loop turns with nothing ready before a run whose branches all wait at pauses ends

__all__ = [
    "EndOfJournal",
    "Executor",
    "Outcome",
    "RunRequest",
    "TaskSpec",
    "WaitingPause",
    "child_execution_id",
    "format_call",
    "waiting_pauses",
]


def _unwinding(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """What a group of exceptions unwound the workflow for, when every one of them is the
    engine's own unwinding: the first EndOfJournal (a read-only replay reached the journal's
    end) if any, else the first _Suspend (the run ended paused, or was parked). None when any
    other exception is among them: the group is then the workflow's own outcome."""
    _, other = group.split((_Suspend, EndOfJournal))
    if other is not None:
        return None
    leaves = list(_leaves(group))
    return next((e for e in leaves if isinstance(e, EndOfJournal)), leaves[0] if leaves else None)


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    """The exceptions of a group and of the groups in it, their tracebacks dropped: those hold
    the frames of the workflow and its branches, and so the TaskGroup, its tasks and this
    executor, which hold them in turn (a cycle that would keep the whole run for the cycle
    collector). Nothing reads them: debuggers take their frames when the run stops."""
    group.__traceback__ = None
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            exc.__traceback__ = None
            yield exc


def _reference(blob: dict[str, Any]) -> OutputStorageReference:
    """The reference a run returns for a workflow output kept in the store's files."""
    return OutputStorageReference("local_file", str(blob["$blob"]), {"size": blob.get("size")})


@types.coroutine
def _one_turn() -> Iterator[None]:
    """Lets every other ready callback of the event loop run once (`asyncio.sleep(0)`, bare)."""
    yield


class Executor(Outputs):
    """Drives one execution of a workflow body against its journal."""

    def __init__(
        self, store: Store, request: RunRequest, clock: Clock | None = None, parent: Executor | None = None
    ) -> None:
        self.store = store
        self.request = request
        self.execution_id = request.execution_id
        self.clock = clock or SystemClock()
        self.stamp = stamper(self.clock)  # the `at` of a record written now
        self.replay_only = request.replay_only
        self.parent = parent  # the executor of the calling workflow, for a sub-workflow
        self.lease: Lease | None = None
        self.writer: Any = None
        self.records: Records = Records()
        self.history: History | None = None
        self.core: ReplayCore | None = None
        self.calls: dict[str, CallHistory] = {}
        self.fatal: BaseException | None = None
        self._flush_soon = False
        self._tasks: list[asyncio.Task[Any]] = []  # branches created, some maybe done
        self._prune_at = 64
        self.path = ""
        self._cancel_recorded = False
        self._cancelled_by_parent = False
        self._root: asyncio.Task[Any] | None = None
        # Tasks the workflow's own code is cancelling (an `asyncio.timeout` that expired): the
        # call they interrupt records task_cancelled even in the root task.
        self.cancelled_by_code: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.TimerHandle | None = None
        self.observer = request.observer
        self._tell: Callable[[dict[str, Any]], None] | None = None  # record listeners (SPEC.md 4.11)
        self._audience: Audience | None = None
        self._had_snapshot = False  # the store held a replay snapshot of this execution
        self.redactions: dict[str, str] = {}  # secret value -> name, for every secret handed out
        self.reruns: set[str] = set()  # calls whose recorded start this run runs again (SPEC.md 2.1 `rerun`)
        self.secrets = Secrets(store.secrets_file())
        # Sub-workflows: the executors running now, and what this run must hand them.
        self.children: dict[str, Executor] = {}
        self.child_resumes: dict[str, tuple[tuple[str, ...], Any, bool]] = {}  # child id -> (route, input, has input)
        self.child_cancels: set[str] = set()  # child ids to cancel when their call runs again
        # Pauses: a branch waits at each; the run ends paused when nothing else is in flight.
        self._busy = 0  # task bodies, timers, retry waits and flushes in flight
        self.clock_waits = 0  # of which durable waits on the clock (timers, retry backoffs)
        self._waiters: dict[str, asyncio.Future[Any]] = {}
        self._new_pauses: dict[str, dict[str, Any]] = {}  # workflow_paused records written when the run ends paused
        self._waiting_children: dict[str, str] = {}  # call id -> id of a sub-workflow that waits at a pause
        self._settling = False
        # What workflow code sees of the run (flux's ExecutionContext), and who hears progress.
        self.context: Any = None
        self.progress_listener: Callable[[str, str, Any], Any] | None = None
        self.answering: str | None = None  # the call id of the pause this run answers, until it returns

    def replaying(self) -> bool:
        """Whether the workflow's code is still going through recorded history."""
        return self.replay_only or (self.core is not None and self.core.replaying())

    async def report_progress(self, call_id: str, value: Any) -> None:
        """A task reports progress (`flux.tasks.progress`): handed to the run's listeners, never
        recorded."""
        listener = self.progress_listener
        method = getattr(self.observer, "progress", None) if self.observer is not None else None
        if listener is None and method is None:
            return
        name = self._task_name(call_id)
        for target in (listener, method):
            if target is not None:
                result = target(call_id, name, value)
                if asyncio.iscoroutine(result):
                    await result

    def _task_name(self, call_id: str) -> str:
        """The recorded name of a running task call (found from the end of the journal: a call
        that runs now started recently)."""
        records = self.records
        for i in range(len(records) - 1, 0, -1):
            record = records[i]
            if record.get("call_id") == call_id and record["kind"] == R.TASK_STARTED:
                return str(record["name"])
        return ""

    @property
    def cancelling(self) -> bool:
        """A requested cancellation is unwinding the workflow."""
        return self.core is not None and self.core.cancelling

    def resolve(self, ref: str) -> type | None:
        return find_class(ref, self.request.aliases)

    def track_task(self, task: asyncio.Task[Any]) -> None:
        """Keeps the branches this run created, to cancel those left over at its end. Done ones
        are dropped whenever the list has doubled since the last look: no callback per task."""
        tasks = self._tasks
        tasks.append(task)
        if len(tasks) >= self._prune_at:
            tasks[:] = [t for t in tasks if not t.done()]
            self._prune_at = max(64, 2 * len(tasks))

    # -- opening -----------------------------------------------------------------------------

    def open(self, history: History | None = None) -> tuple[JournalRead, History]:
        """Reads the journal (and takes ownership unless replaying), folding it as it is read.

        A new execution's header is written when this returns (durable, with fsync durability).
        """
        req = self.request
        if history is None:
            history = req.history or History(
                req.journal.path if req.journal is not None else self.store.describe(self.execution_id)
            )
        with no_cycle_collection():
            if req.replay_only:
                if req.journal is None:
                    read = self.store.read(req.execution_id, visit=history.apply_all)
                else:
                    read = req.journal
                    if req.history is None:
                        history.apply_all(list(read.records), read.offsets)
            elif req.create:
                header = {
                    "seq": 0,
                    "kind": R.HEADER,
                    "format": FORMAT_VERSION,
                    "execution_id": req.execution_id,
                    "workflow": req.workflow_name,
                    "code": req.code,
                    "input": encode(req.input, "workflow input"),
                    "created": self.stamp(),
                }
                if req.parent is not None:
                    header["parent"] = req.parent
                if req.schedule is not None:
                    header["schedule"] = req.schedule
                self.lease = self.store.create(req.execution_id, header, req.durability)
                read = self.lease.read
                history.apply_all(list(read.records), read.offsets)
            else:
                self.lease = self.store.acquire(
                    req.execution_id, req.durability, visit=history.apply_all, known=self._known_prefix(history)
                )
                read = self.lease.read
        if self.lease is not None:
            self.writer = self.lease.writer
        return read, history

    # -- replay snapshots (SPEC.md 2.3) --------------------------------------------------------

    def _known_prefix(self, history: History) -> Known | None:
        """The journal prefix a snapshot vouches for, if the store has a usable snapshot."""
        snapshots = self.store.snapshots
        data = snapshots.load(self.execution_id) if snapshots is not None else None
        self._had_snapshot = bool(data)
        return known_prefix(data, self.execution_id, history)

    def _save_snapshot(self, history: History) -> None:
        """Saves the fold of the whole journal, so that resuming reads only what follows. Any
        trouble is ignored: without a snapshot, a resume reads the whole journal."""
        snapshots = self.store.snapshots
        if snapshots is None or self.writer is None or self.fatal is not None:
            return
        try:
            history.apply_all(self.records[history.next_seq :])
            size, records, crc = self.writer.position()
            snapshots.save(self.execution_id, snapshot_of(history, self.execution_id, size, records, crc))
        except (OSError, EngineError) as err:
            log.warning(
                "execution %s: its replay snapshot could not be saved (%s); resuming it reads the whole journal",
                self.execution_id,
                err,
            )

    # -- cancellation --------------------------------------------------------------------------

    def _begin_cancel(self) -> None:
        """Records that a cancellation is unwinding the workflow, so that a run that dies while
        compensating finishes cancelling when resumed, and passes it to running sub-workflows
        (SPEC.md 4.6)."""
        assert self.core is not None
        self.core.cancelling = True
        self.core.cancel_pending = False
        if self.lease is not None and not self._cancel_recorded:
            self._cancel_recorded = True
            self.append({"seq": 0, "kind": R.CANCEL_REQUESTED, "at": self.stamp()})
        for child in list(self.children.values()):
            child.cancel_from_parent()

    def cancel_from_parent(self) -> None:
        """The calling workflow is being cancelled: so is this sub-workflow, recorded as such."""
        self._cancelled_by_parent = True
        if self.core is not None and self._root is not None and not self._root.done():
            self._begin_cancel()
            self._root.cancel()

    def _deliver_cancel(self) -> asyncio.CancelledError:
        self._begin_cancel()
        return asyncio.CancelledError()

    def _poll_cancel(self) -> None:
        """Checks for a cancellation asked by another process (SPEC.md "Cancellation")."""
        if self._root is None or self._root.done():
            return
        if self.store.cancel_requested(self.execution_id):
            self._begin_cancel()
            self._root.cancel()
            return
        self._watch = asyncio.get_running_loop().call_later(_CANCEL_POLL, self._poll_cancel)

    # -- writing -------------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        writer = self.writer
        if writer is None:
            raise EndOfJournal(record.get("call_id") or "")
        writer.append(record)
        self.records.append(record)
        if self._tell is not None:
            self._tell(record)

    async def durable(self) -> None:
        """Waits until every record appended so far is durable (group commit).

        A waiter needs only the records appended before it asked; records appended later by
        other branches wait for the next sync, so a fan-out of N branches pays for one sync.
        """
        writer = self.writer
        if writer is None:
            return
        upto = writer.next_seq - 1
        if writer.synced_seq >= upto:
            return
        if asyncio.current_task() is not self._root:
            # In a branch, others may be about to append: yield once so that their records
            # join this sync. The first waiter to run again syncs for all of them.
            await _one_turn()
            if writer.synced_seq >= upto:
                return
        try:
            if writer.is_async:
                self._busy += 1
                try:
                    await writer.flush()
                finally:
                    self._idle()
            else:
                writer.sync()
        except BaseException as err:
            self.fatal = self.fatal or err
            raise

    def _stop_writing(self) -> None:
        """Engine trouble: what is buffered is dropped, nothing more is written (SPEC.md 4.2)."""
        if self.writer is not None:
            self.writer.discard()

    # -- running -----------------------------------------------------------------------------

    async def run(
        self, body: Callable[[Any], Coroutine[Any, Any, Any]], opened: tuple[JournalRead, History] | None = None
    ) -> Outcome:
        """Replays and continues the execution; returns where it ended.

        `opened` is what `open()` returned, when the caller opened the execution itself (to
        know that its header is written before the run goes on).

        Raises:
            EngineError subclasses (divergence, corruption, a lock held elsewhere, a failed write):
            nothing is written after the point where the trouble was found.
        """
        traps.install_task_factory(asyncio.get_running_loop())
        with collector_paced():
            try:
                read, history = opened if opened is not None else self.open()
                try:
                    outcome = await self._run(read, history, body)
                except BaseException as err:
                    if self._audience is not None:
                        self._audience.ended("stopped", err)
                    raise
                if self._audience is not None:
                    self._audience.ended(outcome.status)
                if self._had_snapshot and outcome.status in R.FINAL_STATUSES and self.store.snapshots is not None:
                    with contextlib.suppress(OSError):
                        self.store.snapshots.drop(self.execution_id)  # finished: nothing will resume it
                return outcome
            finally:
                if self.lease is not None:
                    self.lease.close()
                # The root task's context holds a branch, which holds this executor: without
                # this, the executor and its history would wait for the cycle collector. The
                # workflow's context refers to this executor too.
                self._root = None
                self.context = None

    async def _run(
        self, read: JournalRead, history: History, body: Callable[[Any], Coroutine[Any, Any, Any]]
    ) -> Outcome:
        self.path = history.path = read.path
        records = history.journal = read.records
        self.records = records if isinstance(records, Records) else Records.of(list(records))
        self.history = history
        self.calls = history.calls
        req = self.request
        core = self.core = ReplayCore(
            history, replay_only=self.replay_only, cancel=req.cancel, observer=self.observer, frame_of=user_frame
        )
        self._cancel_recorded = history.cancel_requested
        header = records[0]
        workflow_input = self.recorded(header.get("input"), 0, stored=False)
        name = str(header.get("workflow", ""))
        if not req.create and req.workflow_name and name != req.workflow_name:
            raise ExecutionStateError(
                f"{read.path}: execution {self.execution_id} is of workflow {name!r}, not {req.workflow_name!r}"
            )
        status = history.status
        if status in R.FINAL_STATUSES and not self.replay_only:
            return self._outcome(status, self._final_output(history.final), header, workflow_input)
        answered: WaitingPause | None = None
        if status == Status.PAUSED and not self.replay_only:
            if not req.resume and not req.cancel:
                return self._outcome(Status.PAUSED, None, header, workflow_input)
            if req.resume and not req.cancel:
                answered = self._pick_answer(history)
        if req.hand_off:
            return await self._hand_off(history, answered, header, workflow_input)
        if not self.replay_only:
            parent = header.get("parent")
            self._audience = listeners_for(
                RunInfo(
                    self.execution_id, name, parent if isinstance(parent, dict) else None,
                    not (req.create or status == Status.CREATED),
                ),
                self.observer,
            )
            self._tell = self._audience.recorded if self._audience is not None else None
            if req.create or status == Status.CREATED:
                # A new execution, or one submitted to be run elsewhere (SPEC.md 13.5): its first run.
                log.info("execution %s of workflow %r started", self.execution_id, name)
                self.append({"seq": 0, "kind": R.STARTED, "at": self.stamp()})
            else:
                self._record_resumed(history, answered)
                if answered is not None:
                    if len(answered.route) == 1:
                        self.answering = answered.route[0]
                    log.info(
                        "execution %s resumed at pause %r (call %s)", self.execution_id, answered.name, answered.call_id
                    )
                elif req.cancel:
                    log.info("execution %s: replaying it to cancel it", self.execution_id)
                else:
                    log.info(
                        "execution %s of workflow %r continued after %d records",
                        self.execution_id,
                        name,
                        history.next_seq - 1,
                    )
        context = contextvars.copy_context()
        context.run(traps.enter, traps.Branch(self, ""))
        # The workflow runs in a task of its own so that a cancellation can be delivered to it;
        # created directly, it takes no call slot.
        # Held by the executor only, never in a local of this frame: the exception that ends the
        # root task (a pause, the end of the journal in a read-only replay, a failure) holds this
        # frame in its traceback, and a local here would close a cycle through the task that
        # keeps the executor and its history alive until the cycle collector runs.
        self._root = asyncio.Task(body(workflow_input), context=context)
        if self.lease is not None:
            self._watch = asyncio.get_running_loop().call_later(_CANCEL_POLL, self._poll_cancel)
        try:
            try:
                result = await self._root
            except BaseExceptionGroup as group:
                # A TaskGroup in the workflow collects what unwound its branches: a run that
                # ended paused (or parked, or reached the end of a read-only replay) inside one
                # ends so here too.
                # (No local holds the exception raised: it would close a cycle through this frame.)
                if _unwinding(group) is None:
                    raise
                raise cast(BaseException, _unwinding(group)) from None
        except _Suspend as unwound:
            # Raised from a TaskGroup's exception group (above), it has that group as its
            # context, and the group holds it: a cycle (with this frame) for the cycle collector.
            unwound.__context__ = None
            self._check_fatal()
            return await self._finish_paused(header, workflow_input, history)
        except EndOfJournal as unwound:
            unwound.__context__ = None
            self._check_fatal()
            return self._outcome("replayed", None, header, workflow_input)
        except asyncio.CancelledError:
            self._check_fatal()
            if (
                not self.cancelling
                or not self._root.cancelled()
                or (self._outer_cancelled() and not self._cancelled_by_parent)
            ):
                self._sync_quietly()
                raise
            return await self._finish_cancelled(header, workflow_input)
        except Exception as exc:
            self._check_fatal()
            if isinstance(exc, EngineError):
                raise
            return await self._finish_failed(exc, header, workflow_input)
        finally:
            if self._watch is not None:
                self._watch.cancel()
            await self._cancel_leftovers()
        self._check_fatal()
        try:
            core.finished()
        except EngineError:
            self._stop_writing()
            raise
        if self.replay_only:
            final = history.final
            if self.redactions:
                # The recorded output holds no secret; the replay's is compared with it as such.
                try:
                    tree, changed = redact(encode(result, "workflow result"), self.redactions)
                    if changed:
                        result = decode(tree, self.resolve)
                except EncodeError:
                    pass
            return self._outcome(
                R.LIFECYCLE[final["kind"]] if final else Status.COMPLETED, result, header, workflow_input
            )
        try:
            if req.output_storage is not None:
                # The workflow's own storage keeps the output; the journal keeps its reference,
                # which is what the run returns (SPEC.md 4.8).
                result = req.output_storage.store(f"{name}_{self.execution_id}", result)
            value = encode(result, (None, "workflow {!r} result", name))
            if self.redactions:
                value, changed = redact(value, self.redactions)
                if changed:
                    result = decode(value, self.resolve)  # what leaves the run shows no secret
            if req.blob_output:
                value = self._store_output(value)
                result = _reference(value)
            self.append({"seq": 0, "kind": R.COMPLETED, "at": self.stamp(), "value": value})
        except EncodeError as err:
            return await self._finish_failed(err, header, workflow_input)
        await self.durable()
        self._check_fatal()
        log.info("execution %s completed", self.execution_id)
        return self._outcome(Status.COMPLETED, result, header, workflow_input)

    def _record_resumed(self, history: History, answered: WaitingPause | None) -> None:
        """Appends `workflow_resumed`: answering `answered` when given (with the resume's input,
        or naming the sub-workflow the pause waits in, whose journal records the answer)."""
        req = self.request
        resumed: dict[str, Any] = {"seq": 0, "kind": R.RESUMED, "at": self.stamp()}
        if answered is not None:
            resumed["call_id"] = answered.route[0]
            if len(answered.route) == 1:
                resumed["input"] = encode(req.resume_input, "resume input")
            else:
                child = history.calls[answered.route[0]].child
                assert child is not None
                resumed["child"] = child
                self.child_resumes[child] = (answered.route[1:], req.resume_input, req.resume_has_input)
        owner = self.lease.owner if self.lease is not None else {}
        if "pid" in owner:
            resumed["pid"] = owner["pid"]
        if "host" in owner:
            resumed["host"] = owner["host"]
        self.append(resumed)
        history.apply(resumed)

    async def _hand_off(
        self, history: History, answered: WaitingPause | None, header: dict[str, Any], workflow_input: Any
    ) -> Outcome:
        """A resume left to whoever runs the store's work (SPEC.md 13.5): the pause's answer is
        recorded and durable, no code runs here, and the lease is released runnable at once (a
        worker's run then writes its own `workflow_resumed`). Without an answer (an interrupted
        or diverged execution) nothing is written: taking and releasing it makes it runnable."""
        if answered is not None:
            if len(answered.route) > 1:
                raise ExecutionStateError(
                    f"execution {self.execution_id} waits at pause {answered.name!r} inside the sub-workflow called "
                    f"at {answered.route[0]}: resume it here (without --detach), so that its answer reaches the "
                    "sub-workflow's journal"
                )
            self._record_resumed(history, answered)
            await self.durable()
            log.info("execution %s: pause %r answered, left to the store's workers", self.execution_id, answered.name)
        return self._outcome(str(history.status), None, header, workflow_input)

    def _pick_answer(self, history: History) -> WaitingPause:
        """The waiting pause this resume answers; checks that a timed one may go on without input."""
        req = self.request
        target = pick_pause(waiting_pauses(self.store, history), req.resume_pause, self.execution_id)
        if target.on_complete is not None and not req.resume_has_input:
            if self._finished(target.on_complete):
                return target
            raise ExecutionStateError(
                f"execution {self.execution_id} is paused at {target.name!r} until execution "
                f"{target.on_complete} finishes; give an input to resume it earlier"
            )
        if target.wake_at is None and not req.resume_has_input:
            # A pause with no deadline waits for an answer (an approval): none given is not one.
            raise ExecutionStateError(
                f"execution {self.execution_id} waits at pause {target.name!r} for an input; "
                "give one to answer it (null is an answer too)"
            )
        if target.wake_at is not None and not req.resume_has_input and self.clock.now() < target.wake_at:
            raise ExecutionStateError(
                f"execution {self.execution_id} is paused at {target.name!r} until {iso(target.wake_at)}; "
                "give an input to resume it earlier"
            )
        return target

    def _finished(self, execution_id: str) -> bool:
        """Whether another execution of the store has finished (completed, failed, cancelled)."""
        try:
            summary = self.store.summary(execution_id)
        except EngineError:
            return False
        return summary.status in R.FINAL_STATUSES

    def _outer_cancelled(self) -> bool:
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    def _sync_quietly(self) -> None:
        """On the way out of an interrupted run: write what is buffered, if the writer is sound."""
        writer = self.writer
        if writer is not None and self.fatal is None and not writer.is_async:
            try:
                writer.sync()
            except Exception:  # noqa: BLE001 - the run is already ending; the journal stays valid
                pass

    async def _finish_cancelled(self, header: dict[str, Any], workflow_input: Any) -> Outcome:
        if self.replay_only:
            return self._outcome(Status.CANCELLED, None, header, workflow_input)
        self.append({"seq": 0, "kind": R.CANCELLED, "at": self.stamp()})
        await self.durable()
        self._check_fatal()
        self.store.clear_cancel(self.execution_id)
        log.info("execution %s cancelled", self.execution_id)
        return self._outcome(Status.CANCELLED, None, header, workflow_input)

    def _final_output(self, final: dict[str, Any] | None) -> Any:
        assert final is not None
        if final["kind"] == R.COMPLETED:
            if self.request.blob_output and type(final["value"]) is dict and "$blob" in final["value"]:
                return _reference(final["value"])
            return self.recorded(final["value"], final["seq"])
        if final["kind"] == R.CANCELLED:
            return None
        return self.recorded(final["error"], final["seq"], stored=False)

    def _outcome(self, status: str, output: Any, header: dict[str, Any], workflow_input: Any) -> Outcome:
        return Outcome(
            self.execution_id, self.path, status, output, self.records, header.get("workflow", ""), workflow_input,
            self.value_of, self.history,
        )

    def _check_fatal(self) -> None:
        if self.fatal is not None:
            self._stop_writing()
            raise self.fatal

    async def _finish_failed(self, exc: BaseException, header: dict[str, Any], workflow_input: Any) -> Outcome:
        if not self.replay_only:
            tree = encode_exception(exc)
            if self.redactions:
                tree, changed = redact(tree, self.redactions)
                if changed:
                    exc = decode(tree, self.resolve)  # what leaves the run shows no secret (SPEC.md 4.7)
            self.append({"seq": 0, "kind": R.FAILED, "at": self.stamp(), "error": tree})
            await self.durable()
            self._check_fatal()
            log.info("execution %s failed: %s: %s", self.execution_id, type(exc).__name__, exc)
        return self._outcome(Status.FAILED, exc, header, workflow_input)

    async def _finish_paused(self, header: dict[str, Any], workflow_input: Any, history: History) -> Outcome:
        if self.writer is not None:
            await self.durable()
            self._check_fatal()
            self._save_snapshot(history)
            log.info("execution %s paused", self.execution_id)
        return self._outcome(Status.PAUSED, None, header, workflow_input)

    async def _cancel_leftovers(self) -> None:
        """Branches the workflow did not wait for are cancelled, so nothing runs past its end."""
        leftovers = [t for t in self._tasks if not t.done()]
        self._tasks = []
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.gather(*leftovers, return_exceptions=True)

    # -- pauses: waiting, and ending the run once everything waits -----------------------------

    def _idle(self) -> None:
        """A body, timer, wait or flush is over: if branches wait at pauses, see whether the run
        should end paused."""
        self._busy -= 1
        if not self._busy and self._waiters:
            self._schedule_settle()

    async def _wait(self, key: str) -> Any:
        """Waits at a pause (or at a sub-workflow's pause) until the run ends paused."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[key] = fut
        self._schedule_settle()
        try:
            return await fut
        finally:
            # Written by now if the run ended paused; else the pause never took effect (a
            # sibling failed, a cancellation arrived) and nothing is written for it.
            self._waiters.pop(key, None)
            self._new_pauses.pop(key, None)
            self._waiting_children.pop(key, None)
            # The _Suspend that ends the wait holds this frame in its traceback: the future that
            # holds the _Suspend must not stay among its locals (a cycle that would keep the
            # executor for the cycle collector).
            del fut

    def _schedule_settle(self) -> None:
        if not self._settling:
            self._settling = True
            asyncio.get_running_loop().call_soon(self._settle, 0)

    def _settle(self, idle_rounds: int) -> None:
        """Ends the run paused once every branch still running waits at a pause: nothing in
        flight, and nothing ready to run for a few loop turns (workflow code between two
        awaits on the engine never waits on anything else)."""
        if not self._waiters or self._busy or self.fatal is not None or self._root is None or self._root.done():
            self._settling = False
            return
        loop = asyncio.get_running_loop()
        idle_rounds = idle_rounds + 1 if self._branches_blocked() else 0
        if idle_rounds < _IDLE_ROUNDS:
            loop.call_soon(self._settle, idle_rounds)
            return
        self._settling = False
        self._suspend()

    def _suspend(self) -> None:
        """Records the pauses this run reached (or that it waits at pauses recorded before) and
        unwinds every waiting branch."""
        if self.writer is not None:
            try:
                for record in self._new_pauses.values():
                    self.append(record)
                if not self._new_pauses or self._waiting_children:
                    waiting: list[Any] = [
                        k for k in self._waiters if k not in self._waiting_children and k not in self._new_pauses
                    ]
                    waiting += list(self._new_pauses)
                    waiting += [{"call_id": k, "child": c} for k, c in self._waiting_children.items()]
                    self.append({"seq": 0, "kind": R.SUSPENDED, "at": self.stamp(), "waiting": waiting})
            except EngineError as err:
                self.fatal = self.fatal or err
        self._new_pauses = {}
        for fut in list(self._waiters.values()):
            if not fut.done():
                fut.set_exception(_Suspend())

    async def wait_for_child(self, call_id: str, child_id: str) -> Any:
        """A sub-workflow called at `call_id` ended paused: its call waits like a pause of this
        workflow, and the run ends paused once nothing else is in flight (SPEC.md 4.5)."""
        self._waiting_children[call_id] = child_id
        self._busy -= 1  # the call's body is not in flight while it waits
        try:
            return await self._wait(call_id)
        finally:
            self._busy += 1

    # -- traps -------------------------------------------------------------------------------

    async def call_task(
        self,
        branch: traps.Branch | None,
        spec: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        src: str,
    ) -> Any:
        if branch is None:
            # Looked up now, in the task that awaits the call (SPEC.md 4.1), not where the
            # coroutine was made.
            branch = traps.current_branch()
            if branch is None:
                return await spec.invoke(args, kwargs)  # made in a workflow, awaited outside one
            if branch.executor is not self:
                return await branch.executor.call_task(branch, spec, args, kwargs, src)
        if self.fatal is not None:
            raise self.fatal
        branch.slots += 1  # Branch.next_id, inline: one frame less on every call
        call_id = f"{branch.prefix}{branch.slots}"
        name = spec.display_name(args, kwargs) if spec.signature is not None else spec.name
        if args:
            enc_args = list(args) if all_plain(args) else encode_args(args, (None, "task {!r} argument", name))
        else:
            enc_args = None
        enc_kwargs = encode(kwargs, (None, "task {!r} argument", name)) if kwargs else None
        if self.redactions:
            name = redact(name, self.redactions)[0]
            enc_args = redact(enc_args, self.redactions)[0]
            enc_kwargs = redact(enc_kwargs, self.redactions)[0]
        if spec.sensitive:
            enc_args = [SENSITIVE] * len(args) if args else None
            enc_kwargs = dict.fromkeys(kwargs, SENSITIVE) if kwargs else None
        core = self.core
        assert core is not None
        try:
            decision, call = core.task(call_id, name, enc_args, enc_kwargs, src)
        except EngineError:
            self._stop_writing()
            raise
        if decision == REPLAY:
            assert call is not None
            if call.end == _COMPLETED and spec.plain:
                # The commonest replay, at once; a number, string, bool or null stands for itself.
                value = call.value
                if type(value) in PLAIN_TYPES and not self.redactions:
                    return value
                return self.recorded(value, call.end_seq)
            if spec.secrets:
                self._know_secrets(spec)
            if call.end == R.TASK_COMPLETED:
                if spec.sensitive:
                    # The journal holds no result to hand back: the body runs again, and what
                    # it returns is not recorded a second time (SPEC.md 4.7).
                    return await run_attempt(self, spec, args, kwargs, call_id)
                value = self.recorded(call.value, call.end_seq)
                if spec.storage is not None and isinstance(value, OutputStorageReference):
                    value = spec.storage.retrieve(value)
                return value
            # (The workflow sees the real secret in a replayed error too, as it did live.)
            exc = self.recorded(call.outcome["error"], call.end_seq)  # type: ignore[index]  # it ended
            raise as_execution_error(exc)
        if decision == CANCEL:
            if call is not None and call.cancelled is not None:
                raise asyncio.CancelledError()  # cancelled by the workflow itself: so again
            if call is not None and call.child is not None:
                # The call runs a sub-workflow: the cancellation reaches it too (SPEC.md 4.6).
                self._begin_cancel()
                self.child_cancels.add(call.child)
            else:
                raise self._deliver_cancel()
        elif decision == LIVE:
            record: dict[str, Any] = {
                "seq": 0, "kind": R.TASK_STARTED, "at": self.stamp(), "call_id": call_id, "name": name
            }
            if enc_args is not None:
                record["args"] = enc_args
            if enc_kwargs is not None:
                record["kwargs"] = enc_kwargs
            record["src"] = src
            if spec.child:
                record["child"] = child_execution_id(self.execution_id, call_id)
            self.append(record)
            if spec.cache:
                hit, value = self.cache_hit(spec, record)
                if hit:
                    return self.complete(call_id, name, spec, value, {"cached": True})
        elif decision == RERUN and not spec.child:
            # Started by an earlier run that ended before its outcome: the body runs again, and
            # its outcome says so.
            self.reruns.add(call_id)
        if self.observer is not None:
            await self._notify_live(call_id)
        if spec.options is not None:
            return await run_handled(self, spec, args, kwargs, call_id, name, call)
        writer = self.writer
        if writer is None or writer.synced_seq < writer.next_seq - 1:
            await self.durable()
        self._busy += 1
        try:
            if spec.inline:
                # run_attempt's first case, inline: one coroutine less per call on the hot path.
                token = traps.enter(traps.Branch(self, call_id + ".", 0, call_id))
                try:
                    result = await spec.fn(*args, **kwargs)
                finally:
                    traps.leave(token)
            else:
                result = await run_attempt(self, spec, args, kwargs, call_id)
        except Exception as exc:
            if isinstance(exc, EngineError) or self.fatal is not None:
                raise
            raise self.fail(call_id, exc)  # noqa: B904 - fail() sets the cause
        except asyncio.CancelledError:
            self.record_cancelled(call_id)
            raise
        finally:
            self._busy -= 1  # _idle, inline
            if not self._busy and self._waiters:
                self._schedule_settle()
        return self.complete(call_id, name, spec, result)

    def _know_secrets(self, spec: TaskSpec) -> None:
        """A replayed call of a task that asked for secrets: its secrets are remembered as a live
        run of it would have (SPEC.md 4.7), so what is recorded after it is redacted alike. A
        secret that cannot be had now is not needed: its body does not run."""
        try:
            self.reveal(spec, spec.name)
        except (SecretError, ValueError):
            pass

    async def _notify_live(self, call_id: str) -> None:
        method = getattr(self.observer, "live", None)
        if method is not None:
            delay = method(call_id)
            if delay:
                self._busy += 1
                try:
                    await asyncio.sleep(delay)  # a checker shuffles completion order this way
                finally:
                    self._idle()

    def record_cancelled(self, call_id: str) -> None:
        """Records that the workflow itself cancelled a running body (a sibling failed in
        `parallel`, a task group was cancelled, an `asyncio.timeout` expired, a requested
        cancellation): replay cancels the call at the same place.

        A cancellation of the whole run by the process shutting down is not recorded per
        call: the run ends there and the call stays open to run again, as after a crash.
        """
        if self.writer is None or self.fatal is not None:
            return
        root = self._root
        task = asyncio.current_task()
        if not self.cancelling and task not in self.cancelled_by_code and (
            root is None or root.cancelling() or task is None or task is root
        ):
            return  # the process is shutting down: the call stays open, as after a crash
        self.append({"seq": 0, "kind": R.TASK_CANCELLED, "at": self.stamp(), "call_id": call_id})

    def _slot(self, branch: traps.Branch, kind: str, name: str, what: str, src: str) -> tuple[str, CallHistory | None]:
        if self.fatal is not None:
            raise self.fatal
        call_id = branch.next_id()
        assert self.core is not None
        try:
            return call_id, self.core.slot(call_id, kind, name, what, src)
        except EngineError:
            self._stop_writing()
            raise

    def _live(self, call_id: str, call: CallHistory | None, asked: dict[str, Any]) -> int:
        """The core's decision where nothing recorded lies ahead; delivers a cancellation."""
        assert self.core is not None
        try:
            decision = self.core.live(call_id, call, asked)
        except EngineError:
            self._stop_writing()
            raise
        if decision == CANCEL:
            raise self._deliver_cancel()
        return decision

    async def pause(
        self,
        branch: traps.Branch,
        name: str,
        src: str,
        wake_at: float | None = None,
        output: Any = None,
        on_complete: str | None = None,
    ) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"pause name must be a str, not {type(name).__name__}")
        call_id, call = self._slot(branch, "pause", name, f"pause({name!r})", src)
        assert self.core is not None
        asked = {"kind": "pause", "name": name, "src": src}
        try:
            decision = self.core.pause(call_id, call, asked)
        except EngineError:
            self._stop_writing()
            raise
        if decision == REPLAY:
            assert call is not None and call.resumed is not None
            if call_id == self.answering:
                self.answering = None
            return self.recorded(call.resumed.get("input"), call.resumed.get("seq", call.seq))
        if decision == CANCEL:
            raise self._deliver_cancel()
        if decision == LIVE:
            record: dict[str, Any] = {
                "seq": 0, "kind": R.PAUSED, "at": self.stamp(), "call_id": call_id, "name": name, "src": src
            }
            if wake_at is not None:
                record["wake_at"] = wake_at
            if on_complete is not None:
                record["on_complete"] = on_complete
            if output is not None:
                record["output"] = encode(output, f"pause {name!r} output")
            self._new_pauses[call_id] = record
        return await self._wait(call_id)

    def patched(self, branch: traps.Branch, change_id: str) -> bool:
        """Whether this execution takes the new path of a change (SPEC.md "Versioning")."""
        assert self.core is not None
        answer, write = self.core.patched(f"{branch.prefix}{branch.slots + 1}", change_id)
        if write:
            self.append({"seq": 0, "kind": R.PATCHED, "at": self.stamp(), "change_id": change_id})
        return answer

    async def record_value(self, branch: traps.Branch, name: str, produce: Callable[[], Any], src: str) -> Any:
        """A value the workflow must see again on replay (a time, a uuid, a random number)."""
        call_id, call = self.observe(branch, name, src)
        if call is not None:
            return self.recorded(call.value, call.seq)
        value = produce()
        tree = encode(value, (None, "{}() value", name))
        if self.redactions:
            tree = redact(tree, self.redactions)[0]  # replay puts the secret back (SPEC.md 4.7)
        self.observed(call_id, name, tree, src)
        return value

    def observe(self, branch: traps.Branch, name: str, src: str) -> tuple[str, CallHistory | None]:
        """The slot of a recorded value or of an observation of completion order (`asyncio.wait`,
        `as_completed`; SPEC.md 4.1) and its record, None when it is made live (`observed`
        records it then)."""
        call_id, call = self._slot(branch, "value", name, f"{name}()", src)
        if call is not None:
            assert self.core is not None
            self.core.replayed(call_id, call, "start")
            return call_id, call
        self._live(call_id, None, {"kind": "value", "name": name, "src": src})
        return call_id, None

    def observed(self, call_id: str, name: str, value: Any, src: str) -> None:
        """Records what a live observation saw (`value` already in its recorded form)."""
        self.append({"seq": 0, "kind": R.VALUE, "at": self.stamp(), "call_id": call_id, "name": name,
                     "value": value, "src": src})

    def observation_diverged(self, call_id: str, asked: str, src: str, found: str | None = None) -> None:
        """Stops the run: the recorded observation is not one this code can have made."""
        assert self.core is not None
        self._stop_writing()
        self.core.observation_mismatch(call_id, asked, src, found)

    async def sleep(self, branch: traps.Branch, seconds: float, src: str) -> None:
        """A durable timer: the wake-up time is recorded, a resume waits only for what is left."""
        call_id, call = self._slot(branch, "timer", "sleep", f"sleep({seconds:g})", src)
        asked = {"kind": "timer", "name": "sleep", "src": src}
        if call is not None:
            if call.end is not None:
                assert self.core is not None
                self.core.replayed(call_id, call, "outcome")
                return
            wake_at = call.start["wake_at"]
            self._live(call_id, call, asked)
        else:
            self._live(call_id, None, asked)
            wake_at = self.clock.now() + max(0.0, seconds)
            self.append({"seq": 0, "kind": R.TIMER_STARTED, "at": self.stamp(), "call_id": call_id,
                         "name": "sleep", "wake_at": wake_at, "src": src})
        await self.durable()
        remaining = wake_at - self.clock.now()
        if remaining > 0:
            if remaining >= 1.0:
                log.info("execution %s: call %s sleeps until %s", self.execution_id, call_id, iso(wake_at))
            await self.wait_on_clock(remaining)
        self.append({"seq": 0, "kind": R.TIMER_FIRED, "at": self.stamp(), "call_id": call_id})

    async def wait_on_clock(self, seconds: float) -> None:
        """A durable wait (a timer, a retry's backoff): its end is already durable in the
        journal, so a clock that parks runs (engine/parking.py) may unwind it here."""
        self._busy += 1
        self.clock_waits += 1
        try:
            await self.clock.sleep(seconds)
        finally:
            self.clock_waits -= 1
            self._idle()

    @property
    def only_waits_on_clock(self) -> bool:
        """Everything in flight is a durable wait on the clock (no body, write or child runs),
        and every branch of the workflow is blocked: none can run before a wait ends."""
        if not (self._busy > 0 and self._busy == self.clock_waits and self.fatal is None):
            return False
        return self._branches_blocked()

    def _branches_blocked(self) -> bool:
        """Every branch of this run waits on a future: none of its code can run before
        something it waits for happens. Judged per run, so that a loop running many
        executions (a worker, a service) does not keep one from ending paused."""
        root = self._root
        branches = [t for t in self._tasks if not t.done()]
        if root is not None and not root.done():
            branches.append(root)
        # A task blocked on a future holds it in `_fut_waiter` (both asyncio implementations);
        # one whose future is done already (cancelled: a TaskGroup or `parallel` aborting it
        # because a sibling failed) runs at the next turn.
        return all(
            (waiter := t._fut_waiter) is not None and not waiter.done()  # type: ignore[attr-defined]
            for t in branches
        )

