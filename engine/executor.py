"""Runs one execution: replays what the journal recorded, then continues live (SPEC.md "Replay").

The executor is the only code that interprets the traps of engine/traps.py. Its rules:
- a call id the journal knows must ask for the same task with the same arguments, else the run
  stops with NondeterminismError and nothing more is written;
- a recorded result is returned without running the body; a started but unfinished call runs
  again (tasks are at-least-once, recording is exactly-once);
- no task body starts before every record appended so far is durable (group commit: records
  appended while the event loop is busy share one write and one fsync).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import os
import socket
import types
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any


from flux._engine import records as R
from flux._engine import traps
from flux._engine.clock import Clock, SystemClock, iso, stamper
from flux._engine.codec import decode, encode, find_class
from flux._engine.errors import (
    EncodeError,
    EngineError,
    ExecutionError,
    ExecutionStateError,
    NondeterminismError,
)
from flux._engine.journal import FORMAT_VERSION, JournalRead, Known, Records
from flux._engine.handling import run_attempt, run_handled
from flux._engine.calls import (
    EndOfJournal,
    Outcome,
    RunRequest,
    TaskSpec,
    _Suspend,
    _all_slots,
    child_execution_id,
    format_call,
    user_frame,
)
from flux._engine.outputs import Outputs
from flux._engine.replay import RecordedCall, ReplayIndex
from flux._engine.secrets import Secrets, redact
from flux._engine.snapshot import Snapshot, snapshot_of
from flux._engine.store import Lease, Store

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_FLUX_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flux") + os.sep
_CANCEL_POLL = 0.2  # seconds between checks for a cancellation asked by another process

__all__ = ["child_execution_id", "EndOfJournal", "Executor", "Outcome", "RunRequest", "TaskSpec", "format_call"]


@types.coroutine
def _one_turn() -> Iterator[None]:
    """Lets every other ready callback of the event loop run once (`asyncio.sleep(0)`, bare)."""
    yield


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Reading a journal and indexing it allocate many containers and no cycles; the cycle
    collector would only traverse them again and again (a third of a large replay's time)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# While any execution runs in the process, the cycle collector's youngest generation is
# collected every _YOUNG_COLLECTION allocations instead of Python's default 700. A fan-out keeps
# thousands of tasks alive at once; at the default pace the collector traverses them again and
# again (a third of a 10,000-task gather's time) and finds nothing. Cycles are still collected,
# only in larger batches. The default comes back when the last run ends, unless someone else
# changed it in between.
_YOUNG_COLLECTION = 10_000
_paced_runs = 0
_paced_from: tuple[int, int, int] | None = None


@contextlib.contextmanager
def _collector_paced() -> Iterator[None]:
    global _paced_runs, _paced_from
    if _paced_runs == 0:
        before = gc.get_threshold()
        if before[0] and before[0] < _YOUNG_COLLECTION:
            _paced_from = before
            gc.set_threshold(_YOUNG_COLLECTION, *before[1:])
    _paced_runs += 1
    try:
        yield
    finally:
        _paced_runs -= 1
        if _paced_runs == 0 and _paced_from is not None:
            if gc.get_threshold()[0] == _YOUNG_COLLECTION:
                gc.set_threshold(*_paced_from)
            _paced_from = None


class Executor(Outputs):
    """Drives one execution of a workflow body against its journal."""

    def __init__(self, store: Store, request: RunRequest, clock: Clock | None = None) -> None:
        self.store = store
        self.request = request
        self.execution_id = request.execution_id
        self.clock = clock or SystemClock()
        self.stamp = stamper(self.clock)  # the `at` of a record written now
        self.replay_only = request.replay_only
        self.lease: Lease | None = None
        self.records: Records = Records()
        self.calls: dict[str, RecordedCall] = {}
        self.fatal: BaseException | None = None
        self._flush_soon = False
        self._tasks: list[asyncio.Task[Any]] = []  # branches created, some maybe done
        self._prune_at = 64
        self.path = ""
        self._cancel_pending = request.cancel  # to be delivered at the first live point
        self._cancel_recorded = False
        self.cancelling = False  # a requested cancellation is unwinding the workflow
        self._root: asyncio.Task[Any] | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.observer = request.observer
        self.patches: dict[str, bool] = {}  # change id -> the answer `patched` gave in this run
        self.markers: set[str] = set()  # change ids whose `patched` marker the journal holds
        self.final: dict[str, Any] | None = None  # the journal's workflow_completed/failed/cancelled
        self._slots: set[str] | None = None
        self._had_snapshot = False  # the store held a replay snapshot of this execution
        self.redactions: dict[str, str] = {}  # secret value -> name, for every secret handed out
        home = getattr(store, "home", None)
        self.secrets = Secrets(home) if isinstance(home, str) else None

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

    def _open(self, index: ReplayIndex) -> JournalRead:
        """Reads the journal (and takes ownership unless replaying), indexing it as it is read."""
        req = self.request
        if req.replay_only:
            if req.journal is None:
                return self.store.read(req.execution_id, visit=index.apply_all)
            if req.index is None:
                index.apply_all(list(req.journal.records), req.journal.offsets)
            return req.journal
        if req.create:
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
            self.lease = self.store.create(req.execution_id, header, req.durability)
            index.apply_all(list(self.lease.read.records), self.lease.read.offsets)
        else:
            known = self._known_prefix(index)
            self.lease = self.store.acquire(req.execution_id, req.durability, visit=index.apply_all, known=known)
        return self.lease.read

    # -- replay snapshots (SPEC.md 2.3) --------------------------------------------------------

    def _known_prefix(self, index: ReplayIndex) -> Known | None:
        """The journal prefix a snapshot vouches for, if the store has a usable snapshot."""
        get = getattr(self.store, "get_snapshot", None)
        data = get(self.execution_id) if get is not None else None
        if not data:
            return None
        self._had_snapshot = True
        snapshot = Snapshot.parse(data, self.execution_id)
        if snapshot is None:
            return None
        return Known(snapshot.size, snapshot.records, snapshot.crc, lambda: snapshot.restore(index))

    def _save_snapshot(self, index: ReplayIndex) -> None:
        """Saves the replay index of the whole journal, so that resuming reads only what follows.
        Any trouble is ignored: without a snapshot, a resume reads the whole journal."""
        put = getattr(self.store, "put_snapshot", None)
        lease = self.lease
        if put is None or lease is None or self.fatal is not None:
            return
        writer = lease.writer
        try:
            index.apply_all(self.records[index.next_seq :])
            data = os.pread(writer.fd, writer.end, 0)
            if len(data) == writer.end:
                put(self.execution_id, snapshot_of(index, self.execution_id, writer.end, writer.next_seq, zlib.crc32(data)))
        except (OSError, EngineError):
            pass

    def _drop_snapshot(self) -> None:
        drop = getattr(self.store, "drop_snapshot", None)
        if drop is not None:
            with contextlib.suppress(OSError):
                drop(self.execution_id)

    # -- observers (SPEC.md "Observers"): debuggers and checkers watch replay through these ----

    def _replayed(self, call_id: str, call: RecordedCall, which: str) -> None:
        """Tells the observer that `call` was replayed, handing it the call's `which` record
        (start, outcome, resumed), parsed from the journal only if the observer wants it."""
        method = getattr(self.observer, "replayed", None)
        if method is not None:
            method(call_id, getattr(call, which), user_frame())

    async def _notify_live(self, call_id: str) -> None:
        method = getattr(self.observer, "live", None)
        if method is not None:
            delay = method(call_id)
            if delay:
                await asyncio.sleep(delay)  # a checker shuffles completion order this way

    def _end(self, call_id: str, current: dict[str, Any] | None = None) -> None:
        """The code reached what the journal has not recorded, in a read-only replay.

        If the recorded run had finished, asking for anything more is a divergence: the code
        would now do something the recorded run never did.
        """
        if self.final is not None and self.final["kind"] != R.CANCELLED:
            current = dict(current or {"kind": "call"})
            if "src" not in current:
                frame = user_frame()
                current["src"] = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}" if frame else "?"
            what = (
                format_call(current["name"], current.get("args"), current.get("kwargs"))
                if current.get("kind") == "task"
                else f"{current.get('name', 'a call')}()"
            )
            self._diverge(
                f"{self.path}:{self.final['seq'] + 1}: the recorded run {R.LIFECYCLE[self.final['kind']]} "
                f"without it, but workflow {self.records[0].get('workflow', '')!r} now asks for {what} "
                f"at call {call_id} ({current['src']}). "
                'The workflow code changed or is not deterministic; see SPEC.md section "Replay".',
                None,
                current,
            )
        method = getattr(self.observer, "end_of_journal", None)
        if method is not None:
            method(call_id, user_frame())
        raise EndOfJournal(call_id)

    def before_live(self, call_id: str, current: dict[str, Any] | None = None) -> None:
        """Called before anything live happens for a call: a read-only replay stops here, and a
        cancellation of an execution that was not running is delivered here. `current` says
        what the code asks for (kind, name, args, kwargs, src), for error messages."""
        if self.replay_only:
            self._end(call_id, current)
        if self._cancel_pending:
            self._cancel_pending = False
            self._begin_cancel()
            raise asyncio.CancelledError()

    def _begin_cancel(self) -> None:
        """Records that a cancellation is unwinding the workflow, so that a run that dies while
        compensating finishes cancelling when resumed (SPEC.md 4.6)."""
        if not self.cancelling:
            self.cancelling = True
            if self.lease is not None and not self._cancel_recorded:
                self._cancel_recorded = True
                self.append({"seq": 0, "kind": R.CANCEL_REQUESTED, "at": self.stamp()})

    def _poll_cancel(self) -> None:
        """Checks for a cancellation asked by another process (SPEC.md "Cancellation")."""
        if self._root is None or self._root.done():
            return
        if self.store.cancel_requested(self.execution_id):
            self._begin_cancel()
            self._root.cancel()
            return
        self._watch = asyncio.get_running_loop().call_later(_CANCEL_POLL, self._poll_cancel)

    def append(self, record: dict[str, Any]) -> None:
        lease = self.lease
        if lease is None:
            raise EndOfJournal(record.get("call_id") or "")
        lease.writer.append(record)
        self.records.append(record)

    async def durable(self) -> None:
        """Waits until every record appended so far is durable (group commit).

        A waiter needs only the records appended before it asked; records appended later by
        other branches wait for the next sync, so a fan-out of N branches pays for one sync.
        """
        lease = self.lease
        if lease is None:
            return
        writer = lease.writer
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
            writer.sync()
        except BaseException as err:
            self.fatal = self.fatal or err
            raise

    # -- running -----------------------------------------------------------------------------

    async def run(self, body: Callable[[Any], Awaitable[Any]]) -> Outcome:
        """Replays and continues the execution; returns where it ended.

        Raises:
            EngineError subclasses (divergence, corruption, a lock held elsewhere, a failed write):
            nothing is written after the point where the trouble was found.
        """
        loop = asyncio.get_running_loop()
        traps.install_task_factory(loop)
        req = self.request
        if req.index is not None:
            index = req.index
        else:
            index = ReplayIndex(req.journal.path if req.journal is not None else self.store.describe(self.execution_id))
        with _collector_paced():
            with _no_cycle_collection():
                read = self._open(index)
            try:
                outcome = await self._run(read, index, body)
                if self._had_snapshot and outcome.status in R.FINAL_STATUSES and self.lease is not None:
                    self._drop_snapshot()  # finished: nothing will resume it
                return outcome
            finally:
                if self.lease is not None:
                    self.lease.close()
                # The root task's context holds a branch, which holds this executor: without
                # this, the executor and its index would wait for the cycle collector.
                self._root = None

    async def _run(self, read: JournalRead, index: ReplayIndex, body: Callable[[Any], Awaitable[Any]]) -> Outcome:
        self.path = index.path = read.path
        records = index.journal = read.records
        self.records = records if isinstance(records, Records) else Records.of(list(records))
        header = records[0]
        self.calls = index.calls
        self.markers = index.markers
        self.final = index.final
        if index.cancel_requested:
            # The run that began cancelling died before it finished: finish it now.
            self.cancelling = self._cancel_recorded = True
            self._cancel_pending = True
        status = index.status
        resolve = self.resolve
        workflow_input = decode(header.get("input"), resolve)
        name = header.get("workflow", "")
        if not self.request.create and self.request.workflow_name and name != self.request.workflow_name:
            raise ExecutionStateError(
                f"{read.path}: execution {self.execution_id} is of workflow {name!r}, not {self.request.workflow_name!r}"
            )
        if status in R.FINAL_STATUSES and not self.replay_only:
            return self._outcome(status, self._final_output(index.final), header, workflow_input)
        if status == "paused" and not self.replay_only:
            if not self.request.resume and not self.request.cancel:
                return self._outcome("paused", None, header, workflow_input)
            wake_at = index.calls[index.pending_pause].start.get("wake_at") if index.pending_pause else None
            if (
                wake_at is not None
                and not self.request.resume_has_input
                and not self.request.cancel
                and self.clock.now() < wake_at
            ):
                raise ExecutionStateError(
                    f"execution {self.execution_id} is paused until {iso(wake_at)}; "
                    "give --input to resume it earlier"
                )
        if not self.replay_only:
            if self.request.create:
                self.append({"seq": 0, "kind": R.STARTED, "at": self.stamp()})
            else:
                resumed: dict[str, Any] = {"seq": 0, "kind": R.RESUMED, "at": self.stamp()}
                if index.pending_pause is not None and not self.request.cancel:
                    resumed["call_id"] = index.pending_pause
                    resumed["input"] = encode(self.request.resume_input, "resume input")
                resumed["pid"] = os.getpid()
                resumed["host"] = socket.gethostname()
                self.append(resumed)
                index.apply(resumed)
        context = contextvars.copy_context()
        context.run(traps.enter, traps.Branch(self, ""))
        # The workflow runs in a task of its own so that a cancellation can be delivered to it;
        # created directly, it takes no call slot.
        self._root = root = asyncio.Task(body(workflow_input), context=context)
        if self.lease is not None:
            self._watch = asyncio.get_running_loop().call_later(_CANCEL_POLL, self._poll_cancel)
        try:
            result = await root
        except _Suspend:
            return self._finish_paused(header, workflow_input, index)
        except EndOfJournal:
            self._check_fatal()
            return self._outcome("replayed", None, header, workflow_input)
        except asyncio.CancelledError:
            self._check_fatal()
            if not self.cancelling or not root.cancelled() or self._outer_cancelled():
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
        self._check_all_visited(name)
        if self.replay_only:
            final = index.final
            return self._outcome(R.LIFECYCLE[final["kind"]] if final else "completed", result, header, workflow_input)
        try:
            value = encode(result, (None, "workflow {!r} result", name))
            if self.redactions:
                value, changed = redact(value, self.redactions)
                if changed:
                    result = decode(value, self.resolve)
            if self.request.blob_output:
                value = self._store_blob(value)
            self.append({"seq": 0, "kind": R.COMPLETED, "at": self.stamp(), "value": value})
        except EncodeError as err:
            return await self._finish_failed(err, header, workflow_input)
        await self.durable()
        self._check_fatal()
        return self._outcome("completed", result, header, workflow_input)

    def _outer_cancelled(self) -> bool:
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    def _sync_quietly(self) -> None:
        """On the way out of an interrupted run: write what is buffered, if the writer is sound."""
        if self.lease is not None and self.fatal is None:
            try:
                self.lease.writer.sync()
            except Exception:  # noqa: BLE001 - the run is already ending; the journal stays valid
                pass

    async def _finish_cancelled(self, header: dict[str, Any], workflow_input: Any) -> Outcome:
        self.append({"seq": 0, "kind": R.CANCELLED, "at": self.stamp()})
        await self.durable()
        self._check_fatal()
        self.store.clear_cancel(self.execution_id)
        return self._outcome("cancelled", None, header, workflow_input)

    def _final_output(self, final: dict[str, Any] | None) -> Any:
        assert final is not None
        if final["kind"] == R.COMPLETED:
            return self.value_of(final["value"])
        if final["kind"] == R.CANCELLED:
            return None
        return decode(final["error"], self.resolve)

    def _outcome(self, status: str, output: Any, header: dict[str, Any], workflow_input: Any) -> Outcome:
        return Outcome(
            self.execution_id, self.path, status, output, self.records, header.get("workflow", ""), workflow_input,
            self.value_of,
        )

    def _check_fatal(self) -> None:
        if self.fatal is not None:
            if self.lease is not None:
                self.lease.writer._pending.clear()
            raise self.fatal

    async def _finish_failed(self, exc: BaseException, header: dict[str, Any], workflow_input: Any) -> Outcome:
        if not self.replay_only:
            tree, exc = self.error_tree(exc)
            self.append({"seq": 0, "kind": R.FAILED, "at": self.stamp(), "error": tree})
            await self.durable()
            self._check_fatal()
        return self._outcome("failed", exc, header, workflow_input)

    def _finish_paused(self, header: dict[str, Any], workflow_input: Any, index: ReplayIndex) -> Outcome:
        self._check_fatal()
        if self.lease is not None:
            self.lease.writer.sync()
            self._save_snapshot(index)
        return self._outcome("paused", None, header, workflow_input)

    async def _cancel_leftovers(self) -> None:
        """Branches the workflow did not wait for are cancelled, so nothing runs past its end."""
        leftovers = [t for t in self._tasks if not t.done()]
        self._tasks = []
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.gather(*leftovers, return_exceptions=True)

    def _check_all_visited(self, name: str) -> None:
        missed = [c for c in self.calls.values() if not c.visited]
        if not missed:
            return
        call = min(missed, key=lambda c: c.seq)
        what = format_call(call.name, call.start.get("args"), call.start.get("kwargs")) if call.kind == "task" else f"pause({call.name!r})"
        self._diverge(
            f"{self.path}:{call.seq + 1}: workflow {name!r} finished without asking for {what} "
            f"at call {call.start['call_id']} ({call.start.get('src', '?')}), which the journal recorded. "
            'The workflow code changed or is not deterministic; see SPEC.md section "Replay".',
            call,
        )

    def _diverge(self, message: str, call: RecordedCall | None, current: dict[str, Any] | None = None) -> None:
        err = NondeterminismError(
            message,
            path=self.path,
            line=call.seq + 1 if call else 0,
            call_id=call.start["call_id"] if call else "",
            recorded=call.start if call else None,
            current=current,
        )
        if self.fatal is None:
            self.fatal = err
        if self.lease is not None:
            self.lease.writer._pending.clear()
        raise err

    def _mismatch(self, call: RecordedCall, call_id: str, now: str, src: str, current: dict[str, Any] | None = None) -> None:
        if call.kind == "task":
            then = format_call(call.name, call.start.get("args"), call.start.get("kwargs"))
        elif call.kind == "pause":
            then = f"pause({call.name!r})"
        else:
            then = f"{call.name}()"
        current = current or {"src": src, "what": now}
        current.setdefault("src", src)
        self._diverge(
            f"{self.path}:{call.seq + 1}: workflow {self.records[0].get('workflow', '')!r} asked for {now} "
            f"at call {call_id} ({src}), but the journal recorded {then} there ({call.start.get('src', '?')}). "
            'The workflow code changed or is not deterministic; see SPEC.md section "Replay".',
            call,
            current,
        )

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
        call_id = branch.next_id()
        name = spec.display_name(args, kwargs) if spec.signature is not None else spec.name
        enc_args = encode(list(args), (None, "task {!r} argument", name)) if args else None
        enc_kwargs = encode(kwargs, (None, "task {!r} argument", name)) if kwargs else None
        if self.redactions:
            enc_args = redact(enc_args, self.redactions)[0]
            enc_kwargs = redact(enc_kwargs, self.redactions)[0]
        call = self.calls.get(call_id)
        if call is not None:
            call.visited = True
            if call.kind != "task" or call.name != name or call.args != enc_args or call.kwargs != enc_kwargs:
                self._mismatch(
                    call, call_id, format_call(name, enc_args, enc_kwargs), src,
                    {"kind": "task", "name": name, "args": enc_args, "kwargs": enc_kwargs},
                )
            end = call.end
            if end is not None:
                if self.observer is not None:
                    self._replayed(call_id, call, "outcome")
                if end == R.TASK_COMPLETED:
                    return self.value_of(call.value)
                exc = decode(call.outcome["error"], self.resolve)  # type: ignore[index]
                raise ExecutionError(exc) from exc
            if call.cancelled is not None:
                self._cancel_pending = False  # a resumed cancellation arrives here, as it did then
                raise asyncio.CancelledError()  # cancelled by the workflow itself: so again
            self.before_live(call_id)  # a read-only replay stops here; a cancellation is delivered
        else:
            if self.replay_only:
                self._end(call_id, {"kind": "task", "name": name, "args": enc_args, "kwargs": enc_kwargs, "src": src})
            if self._cancel_pending:
                self.before_live(call_id)
            record: dict[str, Any] = {"seq": 0, "kind": R.TASK_STARTED, "at": self.stamp(), "call_id": call_id, "name": name}
            if enc_args is not None:
                record["args"] = enc_args
            if enc_kwargs is not None:
                record["kwargs"] = enc_kwargs
            record["src"] = src
            if spec.child:
                record["child"] = child_execution_id(self.execution_id, call_id)
            self.append(record)
            if spec.cache:
                hit = self._cache_get(spec, record)
                if hit is not None:
                    value = self.value_of(hit["value"])
                    self.complete(call_id, name, spec, value, {"cached": True})
                    return value
        if self.observer is not None:
            await self._notify_live(call_id)
        if spec.options is not None:
            return await run_handled(self, spec, args, kwargs, call_id, name, call)
        lease = self.lease
        if lease is None or lease.writer.synced_seq < lease.writer.next_seq - 1:
            await self.durable()
        try:
            if spec.is_async and not spec.secrets:
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
        return self.complete(call_id, name, spec, result)

    def record_cancelled(self, call_id: str) -> None:
        """Records that the workflow itself cancelled a running body (a sibling failed in
        `parallel`, a task group was cancelled): replay cancels the call at the same place.

        A cancellation of the whole run (a requested cancel, or the process shutting down) is
        not recorded per call: the run ends there, and a shutdown leaves the call open to run
        again, as a crash would.
        """
        if self.lease is None or self.fatal is not None:
            return
        root = self._root
        if not self.cancelling and (
            root is None or root.cancelling() or (task := asyncio.current_task()) is None or task is root
        ):
            return  # the process is shutting down: the call stays open, as after a crash
        self.append({"seq": 0, "kind": R.TASK_CANCELLED, "at": self.stamp(), "call_id": call_id})

    def _take_slot(self, branch: traps.Branch, kind: str, name: str, what: str, src: str) -> tuple[str, RecordedCall | None]:
        """The next call id of the branch, and what the journal recorded there, which must be a
        `kind` of this `name` (else the run stops with NondeterminismError)."""
        if self.fatal is not None:
            raise self.fatal
        call_id = branch.next_id()
        call = self.calls.get(call_id)
        if call is not None:
            call.visited = True
            if call.kind != kind or call.name != name:
                self._mismatch(call, call_id, what, src, {"kind": kind, "name": name})
        return call_id, call

    async def pause(self, branch: traps.Branch, name: str, src: str, wake_at: float | None = None) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"pause name must be a str, not {type(name).__name__}")
        call_id, call = self._take_slot(branch, "pause", name, f"pause({name!r})", src)
        if call is not None:
            if call.resumed is not None:
                if self.observer is not None:
                    self._replayed(call_id, call, "resumed")
                return decode(call.resumed.get("input"), self.resolve)
            self.before_live(call_id)  # a replay stops here; a cancellation is delivered here
            raise EndOfJournal(call_id)
        self.before_live(call_id)
        record = {"seq": 0, "kind": R.PAUSED, "at": self.stamp(), "call_id": call_id, "name": name, "src": src}
        if wake_at is not None:
            record["wake_at"] = wake_at
        self.append(record)
        raise _Suspend()

    def patched(self, branch: traps.Branch, change_id: str) -> bool:
        """Whether this execution takes the new path of a change (SPEC.md "Versioning").

        True when the journal holds the change's marker, or when the code reaches the check
        where the journal has nothing more recorded in this branch (new work): the marker is then
        written. False when the journal recorded other calls after this point in this branch:
        the execution was recorded by the code before the change. The answer is kept for the run.
        """
        known = self.patches.get(change_id)
        if known is not None:
            return known
        if change_id in self.markers:
            answer = True
        elif self.replay_only:
            answer = False
        else:
            if self._slots is None:
                self._slots = _all_slots(self.calls)
            answer = f"{branch.prefix}{branch.slots + 1}" not in self._slots
            if answer:
                self.append({"seq": 0, "kind": R.PATCHED, "at": self.stamp(), "change_id": change_id})
        self.patches[change_id] = answer
        return answer

    async def record_value(self, branch: traps.Branch, name: str, produce: Callable[[], Any], src: str) -> Any:
        """A value the workflow must see again on replay (a time, a uuid, a random number)."""
        call_id, call = self._take_slot(branch, "value", name, f"{name}()", src)
        if call is not None:
            if self.observer is not None:
                self._replayed(call_id, call, "start")
            return self.value_of(call.value)
        self.before_live(call_id)
        value = produce()
        self.append(
            {"seq": 0, "kind": R.VALUE, "at": self.stamp(), "call_id": call_id, "name": name,
             "value": encode(value, (None, "{}() value", name)), "src": src}
        )
        return value

    async def sleep(self, branch: traps.Branch, seconds: float, src: str) -> None:
        """A durable timer: the wake-up time is recorded, a resume waits only for what is left."""
        call_id, call = self._take_slot(branch, "timer", "sleep", f"sleep({seconds:g})", src)
        if call is not None:
            if call.end is not None:
                if self.observer is not None:
                    self._replayed(call_id, call, "outcome")
                return
            wake_at = call.start["wake_at"]
            self.before_live(call_id)
        else:
            self.before_live(call_id)
            wake_at = self.clock.now() + max(0.0, seconds)
            self.append({"seq": 0, "kind": R.TIMER_STARTED, "at": self.stamp(), "call_id": call_id,
                         "name": "sleep", "wake_at": wake_at, "src": src})
        await self.durable()
        remaining = wake_at - self.clock.now()
        if remaining > 0:
            await self.clock.sleep(remaining)
        self.append({"seq": 0, "kind": R.TIMER_FIRED, "at": self.stamp(), "call_id": call_id})
