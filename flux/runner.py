"""Operations on executions by id or by file, for the command line and for scripts.

Each function does one thing and returns data; none prints.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from flux._engine.codec import find_class
from flux._engine.errors import ExecutionStateError, JournalCorruptError, UnsafePathError, WorkflowLoadError
from flux._engine.executor import Outcome
from flux._engine.journal import read_journal
from flux._engine.records import status_of
from flux._engine.store import FileStore, validate_execution_id
from flux.context import ExecutionContext
from flux.loader import find_workflow, load_file, load_recorded
from flux.workflow import default_home

__all__ = [
    "ExecutionSummary",
    "cancel_execution",
    "clear_cache",
    "ReplayReport",
    "exec_file",
    "list_executions",
    "parse_input",
    "read_execution",
    "replay_journal",
    "resume_execution",
]


def parse_input(text: str, where: str = "--input") -> Any:
    """Parses a JSON input.

    Raises:
        ValueError: naming where the JSON is invalid.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from None


def exec_file(
    path: str, workflow_name: str, input: Any, *, home: str | None = None, durability: str | None = None
) -> ExecutionContext[Any]:
    """Imports `path`, finds the workflow and runs a new execution of it."""
    wf = find_workflow(load_file(path), workflow_name)
    return wf.run(input, home=home, durability=durability)


def resume_execution(
    execution_id: str,
    input: Any = None,
    *,
    home: str | None = None,
    file: str | None = None,
    durability: str | None = None,
    has_input: bool = True,
) -> ExecutionContext[Any]:
    """Loads the code an execution's journal names and continues the execution.

    `has_input=False` (no --input given) lets a timed pause whose time has come continue."""
    store = FileStore(default_home(home))
    header = store.read(validate_execution_id(execution_id)).records[0]
    wf, aliases = load_recorded(header.get("code") or {}, header.get("workflow", ""), file)
    return asyncio.run(
        wf.run_async(
            input,
            execution_id=execution_id,
            home=store.home,
            durability=durability,
            aliases=aliases,
            resume=True,
            resume_has_input=has_input,
        )
    )


def cancel_execution(
    execution_id: str, *, home: str | None = None, file: str | None = None, wait: float = 30.0
) -> str:
    """Cancels a running, paused or interrupted execution; returns the status it ended in.

    If no process runs it, this process replays it and delivers the cancellation at the point
    where the journal ends (or at the waiting pause): sagas compensate, and WORKFLOW_CANCELLED is
    recorded. If another process runs it, that process is asked to cancel it and this call waits
    up to `wait` seconds for the journal to say so ("cancelling" if it has not yet).

    Raises:
        ExecutionStateError: when the execution has already finished.
    """
    store = FileStore(default_home(home))
    read = store.read(validate_execution_id(execution_id))
    status = status_of(read.records)
    if status in ("completed", "failed", "cancelled"):
        raise ExecutionStateError(f"execution {execution_id} has already {status}; there is nothing to cancel")
    if store.is_locked(execution_id):
        store.request_cancel(execution_id)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            status = status_of(store.read(execution_id).records)
            if status in ("completed", "failed", "cancelled"):
                return status
            time.sleep(0.05)
        return "cancelling"
    header = read.records[0]
    wf, aliases = load_recorded(header.get("code") or {}, header.get("workflow", ""), file)
    ctx = asyncio.run(wf.cancel_async(execution_id, home=store.home, aliases=aliases))
    return ctx.status


def clear_cache(home: str | None = None) -> int:
    """Deletes the cached results of `cache=True` tasks; returns how many there were."""
    return FileStore(default_home(home)).clear_cache()


@dataclass
class ExecutionSummary:
    execution_id: str
    workflow: str
    status: str
    created: str
    events: int
    problem: str = ""


def list_executions(home: str | None = None) -> list[ExecutionSummary]:
    """Every execution in a store, oldest first; damaged journals are listed with their problem."""
    store = FileStore(default_home(home))
    out: list[ExecutionSummary] = []
    for execution_id in store.list_ids():
        try:
            records = store.read(execution_id).records
        except (JournalCorruptError, UnsafePathError) as err:
            out.append(ExecutionSummary(execution_id, "?", "damaged", "", 0, str(err)))
            continue
        header = records[0]
        status = status_of(records)
        if status == "running" and not store.is_locked(execution_id):
            status = "interrupted"
        out.append(
            ExecutionSummary(execution_id, header.get("workflow", ""), status, header.get("created", ""), len(records) - 1)
        )
    out.sort(key=lambda s: (s.created, s.execution_id))
    return out


@dataclass
class ExecutionView:
    execution_id: str
    path: str
    status: str
    records: list[dict[str, Any]]


def read_execution(execution_id: str, home: str | None = None) -> ExecutionView:
    """The records of one execution, read without locking or changing anything."""
    store = FileStore(default_home(home))
    read = store.read(validate_execution_id(execution_id))
    status = status_of(read.records)
    if status == "running" and not store.is_locked(execution_id):
        status = "interrupted"
    return ExecutionView(execution_id, read.path, status, read.records)


@dataclass
class ReplayReport:
    execution_id: str
    path: str
    status: str  # the status recorded in the journal
    outcome: Outcome
    matches: bool  # the code reproduced the recorded output (or reached the journal's end)
    note: str


def replay_journal(path: str, file: str | None = None) -> ReplayReport:
    """Re-runs the workflow of a journal against the current code without running task bodies.

    Raises:
        NondeterminismError: where the code and the journal part.
        JournalCorruptError, WorkflowLoadError.
    """
    name = os.path.basename(path)
    if not name.endswith(".jsonl"):
        raise WorkflowLoadError(f"{path}: a journal file ends in .jsonl")
    execution_id = validate_execution_id(name[:-6])
    read = read_journal(path, execution_id)
    header = read.records[0]
    wf, aliases = load_recorded(header.get("code") or {}, header.get("workflow", ""), file)
    _, outcome = asyncio.run(wf.replay_async(read, execution_id, aliases=aliases))
    recorded = status_of(read.records)
    matches, note = _compare(read.records, outcome, aliases)
    return ReplayReport(execution_id, path, recorded, outcome, matches, note)


def _compare(records: list[dict[str, Any]], outcome: Outcome, aliases: dict[str, str]) -> tuple[bool, str]:
    final = records[-1] if records[-1]["kind"] in ("workflow_completed", "workflow_failed") else None
    if outcome.status == "replayed" or outcome.status == "paused":
        return True, "the code matches the journal up to its last record"
    if final is None:
        return True, "the code matches the journal"
    from flux._engine.codec import decode, encode

    if final["kind"] == "workflow_completed":
        if outcome.status != "completed":
            return False, f"the journal recorded a completed run, the code now {outcome.status}"
        load = outcome.load or (lambda tree: decode(tree, lambda ref: find_class(ref, aliases)))
        recorded = load(final["value"])
        try:
            same = encode(outcome.output) == encode(recorded)
        except Exception:
            same = False
        if not same:
            return False, f"the code now returns {outcome.output!r}, the journal recorded {recorded!r}"
        return True, "the code reproduces the recorded output"
    if outcome.status != "failed":
        return False, "the journal recorded a failed run, the code now completes"
    return True, "the code fails as recorded"


def parse_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None

