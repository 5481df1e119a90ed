"""Deleting executions: one by id (`flux delete`), or every finished one older than an age
(`flux prune`) (SPEC.md 12).

An execution goes with its sub-workflows' journals, children first, each under its lock: an
execution a process runs is never deleted. Deleting a sub-workflow alone is refused while its
parent exists (a replay of the parent reads it), and so is deleting an execution that could
still go on (created, running, interrupted, paused) unless forced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from flux._engine.clock import parse_moment
from flux._engine.errors import ExecutionLockedError, ExecutionNotFoundError, ExecutionStateError, FluxError
from flux._engine.records import FINAL_STATUSES
from flux._engine.store import Store, open_store, validate_execution_id

__all__ = ["Pruned", "delete_execution", "prune_store"]


def _children(store: Store, execution_id: str) -> list[str]:
    records = store.read(execution_id).records
    found = [r["child"] for r in records if r.get("kind") == "task_started" and isinstance(r.get("child"), str)]
    return list(dict.fromkeys(found))


def _tree(store: Store, execution_id: str) -> list[str]:
    """The execution and its sub-workflows, deepest first."""
    order: list[str] = []
    for child in _children(store, execution_id):
        if store.exists(child):
            order.extend(_tree(store, child))
    order.append(execution_id)
    return order


def delete_execution(execution_id: str, store: Any = None, *, force: bool = False, sweep: bool = True) -> list[str]:
    """Deletes an execution and its sub-workflows; returns the ids deleted, children first.
    Then (unless `sweep` is False) the stored outputs nothing names any more (`sweep_blobs`).

    Raises:
        ExecutionNotFoundError: no such execution.
        ExecutionLockedError: a process runs it (or one of its sub-workflows).
        ExecutionStateError: it has not finished and `force` is not set, or it is a
            sub-workflow of an execution that still exists.
    """
    opened = open_store(store)
    validate_execution_id(execution_id)
    summary = opened.summary(execution_id)
    if summary.status == "damaged" and not opened.exists(execution_id):
        raise ExecutionNotFoundError(execution_id, opened.url)
    if summary.parent is not None and opened.exists(summary.parent):
        raise ExecutionStateError(
            f"execution {execution_id} is a sub-workflow of {summary.parent}, whose replays read it; "
            f"delete {summary.parent} instead"
        )
    owner = opened.owner(execution_id)
    if owner is not None:
        raise ExecutionLockedError(execution_id, owner)
    if summary.status not in FINAL_STATUSES and not force:
        raise ExecutionStateError(
            f"execution {execution_id} is {summary.status} and could still go on; "
            "give --force (force=True) to delete it anyway"
        )
    ids = _tree(opened, execution_id) if summary.status != "damaged" else [execution_id]
    for one in ids:
        opened.delete(one)
    if sweep:
        sweep_blobs(opened)
    return ids


def sweep_blobs(store: Store) -> int:
    """Deletes the stored outputs (blobs) nothing in the store names any more: no journal,
    replay snapshot or cache entry. A blob written or reused while this runs stays (on
    PostgreSQL, one written or reused in the last minute). Returns how many went; 0 on the
    memory store, which keeps blobs for as long as the process lives. On the file store, the
    temporary files of processes killed while writing go too."""
    blobs = store.blobs
    swept = blobs.sweep_unreferenced() if blobs is not None else 0
    sweep_leftovers(store)
    return swept


def sweep_leftovers(store: Store) -> int:
    """Deletes the temporary files of processes killed while writing (file store only); returns
    how many went."""
    from flux._engine.stores.files import FileStore

    if not isinstance(store, FileStore):
        return 0
    return store.sweep_leftovers(time.time() - 1.0)


@dataclass
class Pruned:
    """What `prune_store` did: the executions deleted (top-level ids, with how many journals in
    all) and those it had to leave (locked by a process meanwhile, damaged)."""

    deleted: list[str] = field(default_factory=list)
    journals: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # execution id -> why
    blobs: int = 0  # stored outputs no longer named by anything, deleted

    def to_json(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "journals": self.journals, "skipped": self.skipped, "blobs": self.blobs}


def prune_store(
    store: Any = None,
    *,
    finished_before: str,
    statuses: list[str] | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> Pruned:
    """Deletes every top-level execution that finished (in one of `statuses`, default any final
    one) before `finished_before`: an age (`30d`, `12h`) or an ISO date or time. Sub-workflows
    go with their parent. `dry_run` only says what would go.

    Raises:
        ValueError: a bad age or status.
    """
    cutoff = parse_moment(finished_before, time.time() if now is None else now, "--finished-before")
    wanted = list(statuses or FINAL_STATUSES)
    for status in wanted:
        if status not in FINAL_STATUSES:
            raise ValueError(
                f"--status {status!r}: prune deletes finished executions only; give "
                + ", ".join(str(s) for s in FINAL_STATUSES)
            )
    opened = open_store(store)
    result = Pruned()
    bulk = getattr(opened, "purge", None)
    if bulk is not None and not dry_run:
        # A database store deletes in batches by an index on the finish time (SPEC.md 13.8).
        for execution_id, journals in bulk(cutoff, wanted):
            result.deleted.append(execution_id)
            result.journals += journals
        if result.deleted:
            result.blobs = sweep_blobs(opened)
        return result
    # An execution that finished before the cutoff was created before it too: the listing's
    # filter on `created` narrows the journals read.
    page = opened.list(status=wanted, created_before=cutoff)
    for summary in page.items:
        if summary.parent is not None:
            continue
        try:
            final = opened.read(summary.execution_id).records[-1]
            if str(final.get("at", "")) >= cutoff:
                continue
            if dry_run:
                result.deleted.append(summary.execution_id)
                result.journals += len(_tree(opened, summary.execution_id))
                continue
            ids = delete_execution(summary.execution_id, opened, sweep=False)
        except FluxError as err:  # locked meanwhile, damaged: one never stops the prune
            result.skipped[summary.execution_id] = f"{type(err).__name__}: {err}"
            continue
        result.deleted.append(summary.execution_id)
        result.journals += len(ids)
    if result.deleted and not dry_run:
        result.blobs = sweep_blobs(opened)
    elif not dry_run:
        sweep_leftovers(opened)
    return result
