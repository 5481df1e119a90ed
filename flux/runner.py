"""Operations on executions by id or by file, for the command line and for scripts.

Each is a thin sync wrapper around `flux.client.Client` (the only place, with the command line,
where `asyncio.run` is called); none prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from flux._engine.codec import parse_json
from flux._engine.errors import AmbiguousExecutionIdError, ExecutionNotFoundError
from flux._engine.store import ExecutionSummary, Page, open_store, redact_url, validate_execution_id
from flux.client import Client, ExecutionView
from flux.context import ExecutionContext
from flux.loader import load_target
from flux.workflow import run_sync

__all__ = [
    "ExecutionSummary",
    "cancel_execution",
    "clear_cache",
    "exec_file",
    "submit_file",
    "export_execution",
    "import_execution",
    "list_executions",
    "migrate_store",
    "parse_input",
    "read_execution",
    "resolve_execution_id",
    "resume_execution",
    "schema_status",
    "store_place",
]


def parse_input(text: str, where: str = "--input") -> Any:
    """Parses a JSON input exactly (integers of any size stay integers).

    Raises:
        ValueError: naming where the JSON is invalid.
    """
    return parse_json(text, where)


def resolve_execution_id(text: str, store: Any = None) -> str:
    """The id of the one execution whose id is `text` or starts with it.

    Raises:
        ExecutionNotFoundError, AmbiguousExecutionIdError (naming the matches),
        InvalidExecutionIdError.
    """
    opened = open_store(store)
    validate_execution_id(text)
    if opened.exists(text):
        return text
    page = opened.list(prefix=text, limit=6)
    matches = [row.execution_id for row in page.items]
    if not matches:
        raise ExecutionNotFoundError(text, store_place(opened))
    if len(matches) > 1:
        raise AmbiguousExecutionIdError(text, matches, store_place(opened))
    return matches[0]


def store_place(store: Any) -> str:
    """Where a store is, for messages: its directory, or its URL without a password."""
    home = getattr(store, "home", None)
    if isinstance(home, str):
        return os.path.abspath(home)
    return redact_url(str(getattr(store, "url", None) or repr(store)))


def exec_file(
    target: str,
    workflow_name: str | None,
    input: Any,
    *,
    store: Any = None,
    durability: str | None = None,
    execution_id: str | None = None,
    observer: Any = None,
) -> ExecutionContext[Any]:
    """Loads the workflow `target` names (`file.py` and a name, or `pkg.module:name`) and runs
    a new execution of it (or the one of `execution_id`, if it exists). `observer` hears every
    record the run appends (SPEC.md 4.11)."""
    wf = load_target(target, workflow_name)
    return run_sync(
        wf.run_async(input, store=store, durability=durability, execution_id=execution_id, observer=observer)
    )


def submit_file(
    target: str, workflow_name: str | None, input: Any, *, store: Any = None, execution_id: str | None = None
) -> str:
    """Loads the workflow `target` names and submits a new execution of it without running it
    (its header durable, runnable by `flux worker`); returns its id."""
    wf = load_target(target, workflow_name)

    async def go() -> str:
        handle = await Client(store).start(wf, input, execution_id=execution_id, run_here=False)
        return handle.execution_id

    return run_sync(go())


def resume_execution(
    execution_id: str,
    input: Any = None,
    *,
    store: Any = None,
    file: str | None = None,
    module: str | None = None,
    pause: str | None = None,
    durability: str | None = None,
    has_input: bool = True,
    observer: Any = None,
) -> ExecutionContext[Any]:
    """Loads the code an execution's journal names (or `file` / `module`) and continues it,
    answering its waiting pause (`pause` names it when several wait).

    `has_input=False` (no --input given) lets a timed pause whose time has come continue."""

    async def go() -> ExecutionContext[Any]:
        client = Client(store, durability=durability)
        handle = await client.resume(
            execution_id, input, pause=pause, has_input=has_input, file=file, module=module, observer=observer
        )
        return await handle.result()

    return run_sync(go())


def hand_off_resume(
    execution_id: str,
    input: Any = None,
    *,
    store: Any = None,
    pause: str | None = None,
    durability: str | None = None,
    has_input: bool = True,
) -> str:
    """`flux resume --detach`: records the answer to the waiting pause and leaves the run to
    `flux worker` (an interrupted or diverged execution is made runnable); returns the id."""

    async def go() -> str:
        client = Client(store, durability=durability)
        handle = await client.resume(execution_id, input, pause=pause, has_input=has_input, run_here=False)
        return handle.execution_id

    return run_sync(go())


def cancel_execution(
    execution_id: str, *, store: Any = None, file: str | None = None, module: str | None = None, wait: float = 30.0
) -> str:
    """Cancels a running, paused or interrupted execution; returns the status it ended in
    (see `Client.cancel`).

    Raises:
        ExecutionStateError: when the execution has already finished.
    """
    return run_sync(Client(store).cancel(execution_id, wait=wait, file=file, module=module))


def clear_cache(store: Any = None) -> int:
    """Deletes the cached results of `cache=True` tasks; returns how many there were."""
    cache = open_store(store).cache
    return cache.clear() if cache is not None else 0


def list_executions(
    store: Any = None, *, status: str | Sequence[str] | None = None, workflow: str | None = None,
    limit: int | None = None, cursor: str | None = None, created_after: str | None = None,
    created_before: str | None = None, schedule: str | None = None,
) -> Page:
    """Executions of a store, newest first; damaged journals are listed with their problem.
    `schedule` keeps those a schedule of that name started."""
    return open_store(store).list(
        status=status, workflow=workflow, limit=limit, cursor=cursor, created_after=created_after,
        created_before=created_before, schedule=schedule,
    )


def read_execution(execution_id: str, store: Any = None) -> ExecutionView:
    """One execution as its journal tells it, read without locking or changing anything."""
    return Client(store).view(execution_id)


def _database_store(store: Any) -> Any:
    from flux._engine.errors import StoreError

    opened = open_store(store)
    if not hasattr(opened, "migrate"):
        raise StoreError(
            f"{opened.url}: not a database store; `flux db` and `flux queue` are for postgresql://... stores"
        )
    return opened


def migrate_store(store: Any = None) -> tuple[list[int], int]:
    """Applies the schema migrations a database store lacks (serialized: safe beside other
    processes). Returns the migrations applied and the schema version now."""
    opened = _database_store(store)
    applied = opened.migrate()
    return applied, opened.schema_version()


def schema_status(store: Any = None) -> tuple[int, int]:
    """(the schema version of a database store, the newest this Flux knows)."""
    from flux._engine.stores.pg_schema import SCHEMA_VERSION

    return _database_store(store).schema_version(), SCHEMA_VERSION


def check_queue_limits(concurrency: int | None, rate: int | None, per: float | None) -> None:
    """Refuses bad queue limits (InvalidOptionError) before any is written."""
    from flux._engine.stores.pg_fleet import check_queue_limits as check

    check(concurrency, rate, per)


def set_queue_limit(queue: str, concurrency: int | None, store: Any = None) -> None:
    """At most `concurrency` executions of `queue` held at once across a PostgreSQL fleet
    (None: no limit)."""
    _database_store(store).set_queue_limit(queue, concurrency)


def set_queue_rate(queue: str, rate: int | None, per: float | None, store: Any = None) -> None:
    """At most `rate` executions of `queue` started across a PostgreSQL fleet in any `per`
    seconds (None, None: no such limit)."""
    _database_store(store).set_queue_rate(queue, rate, per)


def queue_table(store: Any = None) -> list[Any]:
    """The queues of a database store (`QueueRow`: name, concurrency, rate, per, running, ready)."""
    return list(_database_store(store).queues())


def export_execution(execution_id: str, store: Any = None) -> bytes:
    """The journal of an execution, byte for byte as a journal file holds it (checked)."""
    from flux._engine.store import validate_execution_id

    return open_store(store).export(validate_execution_id(execution_id))


def import_execution(path: str, store: Any = None) -> ExecutionSummary:
    """Adds the journal file at `path` to a store under its own execution id, byte for byte."""
    from flux._engine.journal import read_regular_file
    from flux._engine.store import import_journal

    try:
        data = read_regular_file(path)
    except OSError as err:
        raise ValueError(f"{path}: cannot read the journal ({err.strerror or err})") from None
    return import_journal(open_store(store), data, path)
