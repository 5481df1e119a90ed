"""A journal's records as dicts, views of an execution's task calls and events, and crashes
simulated by cutting a journal after a record (real SIGKILLs are in tests.support.processes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from flux import ExecutionContext

Record = dict[str, Any]


def journal_path(of: ExecutionContext[Any] | str | Path) -> Path:
    """The journal of an execution context, or the path itself."""
    return Path(of.journal_path) if isinstance(of, ExecutionContext) else Path(of)


def records(of: ExecutionContext[Any] | str | Path) -> list[Record]:
    """Every record of a journal, header first. A torn or damaged line is an error."""
    return [orjson.loads(line) for line in journal_path(of).read_bytes().splitlines()]


def records_so_far(path: str | Path) -> list[Record]:
    """The complete records of a journal that a running or killed writer may have left with a
    torn last line."""
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.endswith(b"}")]


def kinds(of: ExecutionContext[Any] | str | Path) -> list[str]:
    """The kind of every record after the header."""
    return [r["kind"] for r in records(of)[1:]]


def labels(ctx: ExecutionContext[Any]) -> dict[str, str]:
    """call_id -> `name(args)` of every task call in the journal."""
    return {
        r["call_id"]: f"{r['name']}({','.join(orjson.dumps(a).decode() for a in r.get('args', []))})"
        for r in records(ctx)
        if r["kind"] == "task_started"
    }


def events(ctx: ExecutionContext[Any]) -> list[tuple[str, str]]:
    """(event type, `name(args)` of the task call or "wf") of every event."""
    named = labels(ctx)
    return [
        (e.type.value, "wf" if e.source_id == ctx.execution_id else named.get(e.source_id, e.source_id))
        for e in ctx.events
    ]


def started(ctx: ExecutionContext[Any]) -> list[str]:
    """`name(args)` of the task calls in the order their task_started records were written."""
    return [labels(ctx)[r["call_id"]] for r in records(ctx) if r["kind"] == "task_started"]


def completed(ctx: ExecutionContext[Any]) -> list[str]:
    """`name(args)` of the task calls in the order their task_completed records were written."""
    return [labels(ctx)[r["call_id"]] for r in records(ctx) if r["kind"] == "task_completed"]


def every_byte_under(path: Path) -> bytes:
    """The contents of every file under `path`, in a fixed order."""
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def cut_after(
    of: ExecutionContext[Any] | str | Path, where: Callable[[Record], bool] | None = None, **fields: Any
) -> int:
    """Cuts the journal right after its first record that has each of `fields` and for which
    `where(record)` holds, as a crash just after that record was written leaves it. Returns how
    many lines are kept (the header counts)."""
    path = journal_path(of)
    lines = path.read_bytes().splitlines(keepends=True)

    def matches(record: Record) -> bool:
        return all(record.get(k) == v for k, v in fields.items()) and (where is None or where(record))

    keep = next(i for i, line in enumerate(lines, 1) if matches(orjson.loads(line)))
    path.write_bytes(b"".join(lines[:keep]))
    return keep


def keep_lines(of: ExecutionContext[Any] | str | Path, n: int) -> None:
    """Cuts the journal after its first `n` lines (the header counts), as a crash there leaves it."""
    path = journal_path(of)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:n]))


def every_cut(of: ExecutionContext[Any] | str | Path) -> Iterator[tuple[int, list[Record]]]:
    """For k = 1 to the number of records after the header: cuts the journal, as it is now, after
    its first k lines (as a crash there leaves it) and yields k and the records kept. Whatever
    the loop body writes to the journal is replaced by the next cut."""
    path = journal_path(of)
    lines = path.read_bytes().splitlines(keepends=True)
    for k in range(1, len(lines)):
        path.write_bytes(b"".join(lines[:k]))
        yield k, [orjson.loads(line) for line in lines[:k]]
