"""Rich renderings of journal records; reads records, never files."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from rich.markup import escape
from rich.table import Table

__all__ = ["render_timeline", "short"]


def short(value: Any, limit: int = 80) -> str:
    """A one-line text of a value, cut at `limit` characters."""
    try:
        text = orjson.dumps(value, default=repr).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(record: dict[str, Any]) -> dt.datetime | None:
    at = record.get("at") or record.get("created")
    try:
        return dt.datetime.fromisoformat(at) if isinstance(at, str) else None
    except ValueError:
        return None


def _detail(record: dict[str, Any]) -> str:
    kind = record["kind"]
    if kind == "task_started":
        args = [short(a, 40) for a in record.get("args", [])]
        args += [f"{k}={short(v, 40)}" for k, v in record.get("kwargs", {}).items()]
        return f"({', '.join(args)})  {record.get('src', '')}"
    if kind in ("task_completed", "workflow_completed"):
        return "→ " + short(record.get("value"))
    if kind in ("task_failed", "workflow_failed"):
        error = record.get("error") or {}
        name = str(error.get("$error", "?")).rpartition(":")[2]
        return f"✗ {name}: {short(error.get('msg', ''), 70)}"
    if kind == "workflow_paused":
        return f"pause {record.get('name')!r}  {record.get('src', '')}"
    if kind == "workflow_resumed":
        if record.get("call_id") is not None:
            return f"input {short(record.get('input'))}"
        return f"by pid {record.get('pid')} on {record.get('host')}"
    if kind == "header":
        return f"workflow {record.get('workflow')!r} input {short(record.get('input'))}"
    return ""


def render_timeline(records: list[dict[str, Any]]) -> Table:
    """One row per record: seq, time since the start, kind, call id, task, detail, duration."""
    table = Table("seq", "+ms", "record", "call_id", "task", "detail", "took", box=None, pad_edge=False)
    start = _when(records[0]) if records else None
    started_at: dict[str, dt.datetime] = {}
    names: dict[str, str] = {}
    for record in records:
        when = _when(record)
        offset = f"{(when - start).total_seconds() * 1000:.1f}" if when and start else ""
        call_id = record.get("call_id") or ""
        took = ""
        if record["kind"] == "task_started" and when:
            started_at[call_id] = when
            names[call_id] = record.get("name", "")
        elif record["kind"] in ("task_completed", "task_failed") and when and call_id in started_at:
            took = f"{(when - started_at[call_id]).total_seconds() * 1000:.1f} ms"
        name = record.get("name") or names.get(call_id, "")
        table.add_row(str(record["seq"]), offset, record["kind"], call_id, escape(str(name)), escape(_detail(record)), took)
    return table
