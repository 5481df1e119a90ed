"""The replay debugger: `flux replay` with its stops, breakpoints and divergences (SPEC.md 4.12).

Everything here runs workflow code only in read-only replay: no task body runs and no journal
is written. Nothing here prints; the command line renders what these functions return.
"""

from __future__ import annotations

import asyncio
import bdb
import contextlib
import dataclasses
import fnmatch
import gc
import os
import pdb
import reprlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from flux._engine.calls import RunRequest
from flux._engine.codec import encode
from flux._engine.errors import EncodeError, ExecutionNotFoundError, NondeterminismError, WorkflowLoadError
from flux._engine.executor import Executor, Outcome
from flux._engine.history import History
from flux._engine.journal import JournalRead, Known, Visit, read_journal, read_regular_file
from flux._engine.outputs import load_blob
from flux._engine.snapshot import known_prefix
from flux._engine.store import Store, open_store, validate_execution_id
from flux._engine.stores.files import FileStore
from flux.divergence import Divergence
from flux.loader import load_recorded, workflows_in
from flux.timeline import CallRow, timeline
from flux.workflow import Workflow

__all__ = [
    "BreakPoint",
    "FrameState",
    "ReplayResult",
    "StopState",
    "break_into",
    "load_workflow",
    "open_journal",
    "replay",
]

from flux._engine.sites import ENGINE_DIR as _ENGINE_DIR
from flux._engine.sites import FLUX_DIR as _FLUX_DIR

_HIDDEN_FRAMES = (_ENGINE_DIR, _FLUX_DIR)

# -- loading ----------------------------------------------------------------------------------


def open_journal(ref: str, store: Any = None) -> tuple[JournalRead, str]:
    """Reads a journal given by its path (`…/<execution_id>.jsonl`) or by an execution id in the
    store; returns it, every record kept as a dict, and the execution id. Changes nothing.

    Raises:
        JournalCorruptError, ExecutionNotFoundError, InvalidExecutionIdError, WorkflowLoadError.
    """
    read, execution_id, _, _ = open_folded(ref, store, keep=True)
    return read, execution_id


def _is_path(ref: str) -> bool:
    return ref.endswith(".jsonl") or os.sep in ref or os.path.exists(ref)


def open_folded(
    ref: str, store: Any, *, keep: bool, snapshot: bool = False
) -> tuple[JournalRead, str, History, Store]:
    """`open_journal`, folding the journal as it is read; also the store that holds it (for
    output storage). With `keep`, every record is kept as a dict (a debugger that shows calls
    looks at all of them, often more than once); without, records stay as the journal's bytes
    and are parsed when asked for. With `snapshot` (and not `keep`), the fold starts from the
    execution's replay snapshot when the journal still begins with the bytes it was made from,
    as a resume's does (SPEC.md 2.3)."""
    kept: list[dict[str, Any]] = []
    snapshot = snapshot and not keep

    def read_with(
        read: Callable[[Visit, Known | None], JournalRead], path: str, execution_id: str, data: bytes | None
    ) -> tuple[JournalRead, History]:
        index = History(path)

        def visit(records: list[dict[str, Any]], offsets: Any) -> None:
            index.apply_all(records, offsets)
            if keep:
                kept.extend(records)

        done = read(visit, known_prefix(data, execution_id, index))
        if keep:
            done = dataclasses.replace(done, records=kept)
        index.journal = done.records
        return done, index

    if _is_path(ref):
        name = os.path.basename(ref)
        if not name.endswith(".jsonl"):
            raise WorkflowLoadError(f"{ref}: a journal file ends in .jsonl")
        execution_id = validate_execution_id(name[:-6])
        data: bytes | None = None
        if snapshot:
            with contextlib.suppress(OSError):  # none beside the journal, or not a file: read it whole
                data = read_regular_file(ref[:-6] + ".index")
        try:
            done, index = read_with(
                lambda visit, known: read_journal(ref, execution_id, visit=visit, known=known), ref, execution_id, data
            )
        except FileNotFoundError:
            raise ExecutionNotFoundError(execution_id, ref) from None
        return done, execution_id, index, FileStore(_home_of(ref))
    opened = open_store(store)
    execution_id = validate_execution_id(ref)
    snapshots = opened.snapshots if snapshot else None
    done, index = read_with(
        lambda visit, known: opened.read(execution_id, visit=visit, known=known),
        opened.describe(execution_id),
        execution_id,
        snapshots.load(execution_id) if snapshots is not None else None,
    )
    return done, execution_id, index, opened


def load_workflow(
    read: JournalRead, file: str | None = None, module: str | None = None, *, trust_recorded: bool = True
) -> tuple[Workflow, dict[str, str]]:
    """Loads the workflow a journal's header names (from `file` or `module` when given).

    Raises:
        WorkflowLoadError: naming the journal when the code holds no workflow of that name.
    """
    header = read.records[0]
    name = header.get("workflow", "")
    code = header.get("code") or {}
    try:
        wf, aliases = load_recorded(code, name, file, module, trust_recorded=trust_recorded)
    except WorkflowLoadError as err:
        raise WorkflowLoadError(f"{read.path}:1: cannot load workflow {name!r} of this journal: {err}") from err
    if wf.name != name:
        where = file or code.get("file")
        defined_in = sys.modules.get(wf.fn.__module__)
        found = ", ".join(sorted(w.name for w in workflows_in(defined_in).values())) if defined_in else wf.name
        raise WorkflowLoadError(
            f"{read.path}:1: the journal is of workflow {name!r}, but {where} defines {wf.name!r} there "
            f"(workflows found: {found}); give file= (or module=) with the code of workflow {name!r}"
        )
    return wf, aliases


def _home_of(path: str) -> str:
    """The store a journal lives in (`<home>/executions/<id>.jsonl`), for its output storage."""
    return os.path.dirname(os.path.dirname(os.path.abspath(path))) or "."


# -- stops and breakpoints --------------------------------------------------------------------

_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 120
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 8
_repr.maxlevel = 3


def _short_repr(value: Any) -> str:
    try:
        return _repr.repr(value)
    except Exception as err:  # noqa: BLE001 - a user __repr__ may raise; show that instead
        return f"<repr failed: {type(err).__name__}>"


def _is_user(frame: FrameType) -> bool:
    name = frame.f_code.co_filename
    return not (name.startswith(_HIDDEN_FRAMES) or "asyncio" in name or name.startswith("<"))


@dataclass
class FrameState:
    """One frame of workflow code where a replay stopped."""

    function: str
    file: str  # absolute path
    line: int
    locals: dict[str, str]  # name -> repr, cut short

    @property
    def where(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line}"

    def as_json(self) -> dict[str, Any]:
        return {
            "function": self.function, "file": self.file, "line": self.line, "where": self.where, "locals": self.locals
        }


def _user_frames(start: FrameType | None) -> list[FrameType]:
    """The frames of workflow code in the chain of awaits that runs now, innermost first; when a
    task call was handed straight to `gather`/`create_task`, that chain holds none, and the
    frames are those of the task that awaits it (and so on outwards)."""
    found: list[FrameType] = []
    frame = start
    # Walk out until the event loop: beyond it lie the frames of whoever started the replay.
    while frame is not None and "asyncio" not in frame.f_code.co_filename:
        if _is_user(frame):
            found.append(frame)
        frame = frame.f_back
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return found
    seen = set()
    while not found and task is not None and task not in seen:
        seen.add(task)
        task = _awaiter_of(task)
        if task is not None:
            found = [f for f in reversed(_suspended_frames(task)) if _is_user(f)]
    return found


def _suspended_frames(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames of a waiting task's chain of awaits, outermost first (`Task.get_stack` gives
    only the outermost one)."""
    frames: list[FrameType] = []
    coro: Any = task.get_coro()
    while coro is not None and len(frames) < 100:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def _awaiter_of(child: asyncio.Future[Any]) -> asyncio.Task[Any] | None:
    """The task that waits for `child`, directly or through a `gather`."""
    for task in asyncio.all_tasks():
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is child or child in getattr(waiter, "_children", ()):
            return task
    return None


def _frames(frames: list[FrameType]) -> list[FrameState]:
    """What the workflow frames hold: function, file, line, locals (repr, cut short)."""
    out: list[FrameState] = []
    for frame in frames[:10]:
        names = {k: _short_repr(v) for k, v in frame.f_locals.items() if not k.startswith("__")}
        out.append(FrameState(frame.f_code.co_name, frame.f_code.co_filename, frame.f_lineno, names))
    return out


@dataclass
class StopState:
    """Where `--until` left the workflow: the call it asked for next, and its frames."""

    seq: int  # the last record replayed
    call_id: str  # the call the code reached that the replayed records do not hold (or hold no outcome of)
    frames: list[FrameState]

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "call_id": self.call_id, "frames": [f.as_json() for f in self.frames]}


@dataclass
class BreakPoint:
    """A call whose recorded outcome is being handed to the workflow: where `--break-at` stops."""

    call_id: str
    seq: int  # the record being replayed
    record: dict[str, Any]
    name: str
    frame: FrameType  # the workflow frame that receives the value


def break_into(point: BreakPoint, debugger: pdb.Pdb | None = None) -> None:
    """Starts pdb so that it stops in the workflow frame at the next line after the await that
    receives the recorded value, so the variable it is assigned to already holds it."""
    dbg = debugger or pdb.Pdb(nosigint=True)
    dbg.reset()
    frame: FrameType | None = point.frame
    # As Bdb.set_trace does, but the stop is the next line of the workflow frame, not this one.
    while frame is not None:
        frame.f_trace = dbg.trace_dispatch
        dbg.botframe = frame
        frame = frame.f_back
    dbg.set_next(point.frame)
    sys.settrace(dbg.trace_dispatch)


class _Watch:
    """The observer of a debugging replay (SPEC.md "Observers"): notes where the code went past
    what the journal holds, and what it asked for there."""

    def __init__(self) -> None:
        self.stop: tuple[str, list[FrameState]] | None = None

    def end_of_journal(self, call_id: str, frame: FrameType | None) -> None:
        if self.stop is None:  # with concurrent branches, the first to reach the end
            self.stop = (call_id, _frames(_user_frames(sys._getframe(1))))


class _BreakWatch(_Watch):
    """A `_Watch` that also stops at one replayed call (`--break-at`)."""

    def __init__(
        self,
        break_call: str | None,
        break_name: str | None,
        names: dict[str, str],
        on_break: Callable[[BreakPoint], None],
    ) -> None:
        super().__init__()
        self.break_call = break_call
        self.break_name = break_name
        self.names = names
        self.on_break = on_break
        self.hit: BreakPoint | None = None

    def replayed(self, call_id: str, record: dict[str, Any], frame: FrameType | None) -> None:
        if self.hit is not None:
            return
        name = self.names.get(call_id, "")
        if call_id == self.break_call or (self.break_name is not None and _name_matches(name, self.break_name)):
            # The hook's frame is not used: for a call handed straight to gather it is no
            # workflow frame at all (flux._engine.calls.user_frame walks out past the event loop).
            frames = _user_frames(sys._getframe(1))
            if not frames:
                return
            self.hit = BreakPoint(call_id, record["seq"], record, name, frames[0])
            self.on_break(self.hit)


def _name_matches(name: str, pattern: str) -> bool:
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


def _replay_seq(rows: list[CallRow], call_id: str) -> int | None:
    """The seq of the record replay hands to the workflow for a call, None when there is none."""
    for row in rows:
        if row.call_id == call_id:
            return row.seq if row.kind == "value" else (row.end_seq if row.outcome != "open" else None)
    return None


def _check_seq(option: str, seq: int, count: int) -> None:
    if not 0 <= seq < count:
        raise ValueError(f"{option}={seq}: the journal has {count} records (seq 0 to {count - 1})")


def _break_target(
    records: Sequence[dict[str, Any]], rows: list[CallRow], spec: str
) -> tuple[str | None, str | None]:
    """(call id, None) for a seq, (None, name pattern) for a task name.

    Raises:
        ValueError: for a seq beyond the end (saying how many records there are), a record of no
            call, a call whose outcome was never recorded, or a name no replayable call has.
    """
    count = len(records)
    try:
        seq = int(spec)
    except ValueError:
        seq = None
    if seq is not None:
        _check_seq("break_at", seq, count)
        record = records[seq]
        call_id = record.get("call_id")
        if call_id is None:
            raise ValueError(
                f"break_at={seq}: record {seq} is {record['kind']}, which belongs to no call; "
                "give the seq of a call's record, or a task name"
            )
        if _replay_seq(rows, call_id) is None:
            raise ValueError(
                f"break_at={seq}: call {call_id} has no recorded outcome to replay (the journal ends "
                f"while it runs); use until={seq} to see the workflow there"
            )
        return call_id, None
    if any(_name_matches(row.name, spec) and _replay_seq(rows, row.call_id) is not None for row in rows):
        return None, spec
    raise ValueError(
        f"break_at={spec!r}: no call of that name with a recorded outcome in the journal "
        f"({len(rows)} calls, {count} records)"
    )


# -- replay -----------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What a debugging replay found."""

    execution_id: str
    path: str
    workflow: str
    recorded_status: str  # the status the whole journal records
    status: str  # completed, failed, paused, cancelled, replayed (the journal ended first), diverged, quit
    matches: bool
    note: str
    records: int  # records in the journal
    replayed: int  # records replayed (fewer with `until`)
    call_count: int
    seconds: float
    calls: list[CallRow] | None = None  # None when asked for a summary
    output: Any = None
    until: int | None = None
    stop: StopState | None = None
    divergence: Divergence | None = None
    breakpoint: BreakPoint | None = None

    def as_json(self) -> dict[str, Any]:
        if self.divergence is not None:
            return {"execution_id": self.execution_id, "workflow": self.workflow, **self.divergence.as_json()}
        out: dict[str, Any] = {
            "execution_id": self.execution_id,
            "workflow": self.workflow,
            "path": self.path,
            "status": self.status,
            "recorded_status": self.recorded_status,
            "matches": self.matches,
            "note": self.note,
            "records": self.records,
            "replayed": self.replayed,
            "call_count": self.call_count,
            "seconds": round(self.seconds, 6),
        }
        if self.calls is not None:
            out["calls"] = [row.as_json() for row in self.calls]
        if self.status in ("completed", "failed"):
            out["output"] = _tree(self.output)
        if self.until is not None:
            out["until"] = self.until
        if self.stop is not None:
            out["stop"] = self.stop.as_json()
        if self.breakpoint is not None:
            out["breakpoint"] = {"call_id": self.breakpoint.call_id, "seq": self.breakpoint.seq}
        return out


def _error_text(exc: Any) -> str:
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else _short_repr(exc)


def _tree(value: Any) -> Any:
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value)}
    try:
        return encode(value, "output")
    except EncodeError:
        return {"repr": _short_repr(value)}


def replay(
    ref: str,
    *,
    store: Any = None,
    file: str | None = None,
    module: str | None = None,
    until: int | None = None,
    break_at: str | None = None,
    on_break: Callable[[BreakPoint], None] | None = None,
    calls: bool = True,
    snapshot: bool = False,
) -> ReplayResult:
    """Replays a journal against the current code without running any task body or writing.

    This is the one way Flux answers "does this journal replay": `flux replay`, golden
    journals and `flux.testing` all come here, and the replay core (engine/core.py) decides.

    Args:
        ref: the journal's path, or an execution id in `store`.
        file, module: the workflow's code, when it is not where the header says.
        until: replay only the records up to this seq and report the workflow's state there.
        break_at: a seq or a task name (a glob pattern works): when that call's recorded outcome is
            handed to the workflow, `on_break` is called (default: pdb in the workflow frame).
        calls: build the timeline of calls (False: only the summary).
        snapshot: with `calls` False and no `until` or `break_at`, take what the execution's
            replay snapshot vouches for as a resume does, rather than checking every line again
            (SPEC.md 2.3): the answer a resume would get, in less time.

    Returns:
        The result; a divergence is reported in `divergence` (status "diverged"), not raised.

    Raises:
        JournalCorruptError, WorkflowLoadError, ExecutionNotFoundError, DecodeError;
        ValueError for an `until` or `break_at` outside the journal (saying how many records it has).
    """
    # A journal is read into one dict per record, all alive until the end, so the cycle
    # collector would traverse them again and again while they are made and replayed (half the
    # time of a 100,000-task replay) and find nothing to free. It is paused for the replay;
    # garbage cycles a replay makes are bounded by the journal and are collected afterwards.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _replay(ref, store, file, module, until, break_at, on_break, calls, snapshot)
    finally:
        if enabled:
            gc.enable()


def _replay(
    ref: str,
    store: Any,
    file: str | None,
    module: str | None,
    until: int | None,
    break_at: str | None,
    on_break: Callable[[BreakPoint], None] | None,
    calls: bool,
    snapshot: bool,
) -> ReplayResult:
    # Showing calls, stopping early or breaking needs every record at hand; a summary needs only
    # the fold, built as the journal is read, and no record kept as a dict.
    keep = calls or break_at is not None or until is not None
    read, execution_id, history, holder = open_folded(ref, store, keep=keep, snapshot=snapshot)
    records = read.records
    # A journal named by its path may come from anywhere (a golden journal checked into a
    # repository): the code its header names is not imported unless the user names it.
    wf, aliases = load_workflow(read, file, module, trust_recorded=not _is_path(ref))
    count = len(records)
    recorded_status = history.status
    if until is not None:
        _check_seq("until", until, count)
        read = dataclasses.replace(read, records=records[: until + 1], offsets=read.offsets[: until + 1], torn=b"")
        history = History(read.path, read.offsets, read.records)
        history.apply_all(read.records, read.offsets)
    rows = timeline(history) if calls or break_at is not None else None
    watch = _Watch()
    if break_at is not None:
        assert rows is not None
        break_call, break_name = _break_target(read.records, rows, break_at)
        names = {row.call_id: row.name for row in rows}
        watch = _BreakWatch(break_call, break_name, names, on_break or break_into)
    started = time.perf_counter()
    divergence: Divergence | None = None
    box: list[Any] = []
    try:
        asyncio.run(_run(wf, read, execution_id, aliases, watch, box, history, holder))
    except NondeterminismError as err:
        divergence = Divergence.of(err)
    finally:
        if isinstance(watch, _BreakWatch) and watch.hit is not None:
            sys.settrace(None)  # a debugger quit with tracing still on
    seconds = time.perf_counter() - started
    executor: Executor = box[0]
    call_count = len(rows) if rows is not None else len(history.calls)
    header = records[0]
    base = dict(
        execution_id=execution_id,
        path=read.path,
        workflow=header.get("workflow", ""),
        recorded_status=str(recorded_status),
        records=count,
        replayed=len(read.records),
        call_count=call_count,
        seconds=seconds,
        calls=rows if calls else None,
        until=until,
        breakpoint=watch.hit if isinstance(watch, _BreakWatch) else None,
    )
    if divergence is not None:
        _release(box)
        return ReplayResult(status="diverged", matches=False, note=str(divergence.error), divergence=divergence, **base)
    outcome: Outcome = box[1]
    stop = None
    if watch.stop is not None and outcome.status == "replayed":
        stop = StopState(len(read.records) - 1, watch.stop[0], watch.stop[1])
    if isinstance(outcome.output, bdb.BdbQuit):
        _release(box)
        return ReplayResult(status="quit", matches=True, note="the debugger was quit", stop=stop, **base)
    verdict = _verdict(executor, outcome, holder)
    _release(box)
    status = "stopped" if until is not None and outcome.status == "replayed" else str(outcome.status)
    return ReplayResult(
        status=status, matches=verdict.matches, note=verdict.note, output=outcome.output, stop=stop, **base
    )


async def _run(
    wf: Workflow,
    read: JournalRead,
    execution_id: str,
    aliases: dict[str, str],
    observer: Any,
    box: list[Any],
    history: History,
    store: Store,
) -> None:
    request = RunRequest(
        execution_id=execution_id, replay_only=True, journal=read, history=history, aliases=aliases, observer=observer
    )
    executor = Executor(store, request)
    box.append(executor)
    # The outcome goes in the box, not out as the result: asyncio.run (3.11) builds the repr of
    # its main task, result included, when it puts back its SIGINT handler, and the repr of an
    # outcome holding 200,000 records takes longer than replaying them.
    box.append(await executor.run(wf._body(executor, [])))


def _release(box: list[Any]) -> None:
    """Lets the executor, its history and the journal's records go as soon as the replay is over.
    They are freed by reference counts (the run leaves no cycle through them: tests/test_engine.py),
    not by the cycle collector, which replay() holds off until it returns."""
    box.clear()


def _verdict(executor: Executor, outcome: Outcome, store: Store) -> Any:
    """The core's verdict on the replay: the output in its recorded form (output storage read
    when the journal kept it there) against the journal's."""
    core = executor.core
    assert core is not None
    status = str(outcome.status)
    output_tree: Any = None
    error_type: str | None = None
    if status == "completed":
        try:
            output_tree = encode(outcome.output)
        except EncodeError:
            output_tree = {"$unrecordable": _short_repr(outcome.output)}
        final = core.history.final
        if final is not None and type(final.get("value")) is dict and "$blob" in final["value"]:
            return core.verdict(status, output_tree, None, recorded=load_blob(store, final["value"]))
    elif status == "failed":
        error_type = type(outcome.output).__name__
    return core.verdict(status, output_tree, error_type)
