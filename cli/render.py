"""Rich renderings of journal records, replays and journal comparisons; reads no files."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flux._cli.base import printable, summary_parts
from flux.divergence import ABSENT, describe_call
from flux.timeline import error_summary

if TYPE_CHECKING:
    from flux.debug import BreakPoint, ReplayResult
    from flux.divergence import Divergence
    from flux.journals import ForkResult, JournalDiff
    from flux.timeline import CallRow

__all__ = [
    "break_banner",
    "render_calls",
    "render_diff",
    "render_divergence",
    "render_fork",
    "render_replay",
    "render_stop",
    "render_timeline",
    "replay_summary",
    "printable",
    "printable_lines",
    "short",
]


def printable_lines(text: str) -> str:
    """`printable`, keeping line breaks (a traceback)."""
    return "\n".join(printable(line) for line in text.split("\n"))


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
        table.add_row(
            str(record["seq"]), offset, printable(record["kind"]), printable(call_id), escape(printable(name)),
            escape(printable(_detail(record))), took
        )
    return table


# -- calls (flux show, flux replay) -------------------------------------------------------------


def _arguments(args: Any, kwargs: Any, limit: int = 40) -> str:
    parts = [short(a, limit) for a in (args or [])]
    parts += [f"{k}={short(v, limit)}" for k, v in (kwargs or {}).items()]
    return ", ".join(parts)


def _result(row: CallRow) -> tuple[str, str]:
    """The result cell of a call and its style."""
    if row.outcome == "failed":
        error = row.error if isinstance(row.error, dict) else {}
        name = str(error.get("$error", "?")).rpartition(":")[2]
        return f"✗ {name}: {_cut(str(error.get('msg', '')), 50)}", "red"
    if row.outcome in ("completed", "recorded"):
        return "→ " + short(row.value, 50), ""
    if row.outcome == "resumed":
        return "resumed with " + short(row.value, 50), ""
    if row.outcome == "fired":
        return "fired", ""
    return ("(waiting)" if row.kind == "pause" else "(no outcome recorded)"), "yellow"


def _cut(text: str, limit: int) -> str:
    text = printable(text.replace("\n", " "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _took(ms: float | None) -> str:
    if ms is None:
        return ""
    return f"{ms:.1f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


_CALL_COLUMNS = ("seq", "call_id", "call", "result", "tries", "took", "src")
_CALL_WIDTH = 48  # the call and result columns are cut here, so a row fits a wide terminal


def render_calls(rows: list[CallRow]) -> Text:
    """One line per call: the seqs of its records, call id, the call (kind, name, arguments),
    result or error, attempts, duration and the source line of the call.

    Plain aligned text rather than a rich Table: a table measures every cell of every row and
    takes seconds for the 10,000 calls a long journal has; this takes milliseconds.
    """
    cells: list[tuple[str, ...]] = [_CALL_COLUMNS]
    styles: list[str] = ["bold"]
    for row in rows:
        seqs = str(row.seq) if row.end_seq in (None, row.seq) else f"{row.seq}-{row.end_seq}"
        if row.kind == "pause":
            call = f"pause({row.name!r}{', ' if row.kwargs else ''}{_arguments(None, row.kwargs, 30)})"
        else:
            prefix = "" if row.kind == "task" else f"{row.kind} "
            call = f"{prefix}{row.name}({_arguments(row.args, row.kwargs, 30)})"
        result, style = _result(row)
        if row.notes:
            result += f" [{', '.join(row.notes)}]"
        cells.append(
            (seqs, printable(row.call_id), _cut(call, _CALL_WIDTH), _cut(result, _CALL_WIDTH), str(row.attempts),
             _took(row.duration_ms), printable(row.src))
        )
        styles.append(style)
    widths = [max(len(line[i]) for line in cells) for i in range(len(_CALL_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in cells]
    text = Text("\n".join(lines), no_wrap=True, overflow="ignore")
    start = 0
    for line, style in zip(lines, styles, strict=True):
        if style:
            text.stylize(style, start, start + len(line))
        start += len(line) + 1
    return text


# -- flux replay --------------------------------------------------------------------------------


def replay_summary(result: ReplayResult) -> Text:
    """The one line `flux replay --summary` prints."""
    return Text.assemble(*summary_parts(result))


def render_stop(result: ReplayResult) -> RenderableType:
    """The workflow's state where `--until` stopped it."""
    stop = result.stop
    if stop is None:
        if result.status in ("completed", "failed"):
            return Text(
                f"stopped after seq {result.until}: the workflow {result.status} with {short(_shown(result.output))}"
            )
        return Text(f"stopped after seq {result.until}: the workflow is {result.status}")
    parts: list[RenderableType] = [
        Text(
            f"stopped after seq {stop.seq}: the workflow waits at call {stop.call_id},"
            " whose outcome those records do not hold"
        )
    ]
    for frame in stop.frames:
        parts.append(Text(f"  in {frame.function} at {frame.where} ({frame.file})", style="bold"))
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="cyan", no_wrap=True)
        table.add_column()
        for name, value in frame.locals.items():
            table.add_row(f"    {name}", Text(value))
        parts.append(table)
    return Group(*parts)


def _shown(value: Any) -> Any:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return value


def render_replay(result: ReplayResult) -> RenderableType:
    """The timeline of calls of a replay, the stop (for `--until`) and the verdict."""
    parts: list[RenderableType] = []
    if result.calls is not None:
        parts.append(render_calls(result.calls))
    if result.until is not None:
        parts.append(render_stop(result))
    parts.append(replay_summary(result))
    return Group(*parts)


_CALL_KINDS = {"task_started": "task", "workflow_paused": "pause", "value_recorded": "value", "timer_started": "timer"}


def break_banner(point: BreakPoint) -> Text:
    """What `--break-at` says before pdb starts: the record and what it hands to the workflow."""
    record = point.record
    if record["kind"] == "task_failed":
        error = error_summary(record.get("error"))
        handed = f"raises {error['type']}: {_cut(error['message'], 80)}"
    elif record["kind"] == "workflow_resumed":
        handed = f"returns the resume input {short(record.get('input'))}"
    elif record["kind"] == "timer_fired":
        handed = "returns (the timer fired)"
    else:
        handed = f"returns {short(record.get('value'))}"
    return Text(
        f"break at seq {point.seq} ({record['kind']}): call {point.call_id} {point.name} {handed}; "
        "pdb stops at the workflow's next line ('c' goes on, 'q' ends the replay)"
    )


def render_divergence(div: Divergence) -> RenderableType:
    """Side by side: what the journal recorded and what the code asks for now at one call id."""
    rec = div.recorded or {}
    cur = div.current or {}
    kind = _CALL_KINDS.get(str(rec.get("kind")), str(rec.get("kind", "")))
    if kind == "task" and "child" in rec:
        kind = "child"
    table = Table("", "journal", "code now", title=f"divergence at call {div.call_id}", box=None, pad_edge=False)
    table.add_row(
        "call",
        Text(describe_call(rec) or "(nothing)"),
        Text(describe_call(cur) or "(nothing: the workflow finished first)"),
    )
    table.add_row("call id", str(rec.get("call_id", "")), str(cur.get("call_id", div.call_id)) if cur else "")
    table.add_row("kind", kind, str(cur.get("kind", "")))
    table.add_row("name", Text(str(rec.get("name", ""))), Text(str(cur.get("name", ""))))
    table.add_row(
        "arguments",
        Text(_arguments(rec.get("args"), rec.get("kwargs"))),
        Text(_arguments(cur.get("args"), cur.get("kwargs"))),
    )
    table.add_row("source", Text(str(rec.get("src", "?"))), Text(str(cur.get("src", "?")) if cur else ""))
    parts: list[RenderableType] = [table]
    if div.args:
        diff = Table("argument", "journal", "code now", title="argument diff", box=None, pad_edge=False)
        for d in div.args:
            diff.add_row(d.where, Text(_side(d.recorded)), Text(_side(d.current)))
        parts.append(diff)
    parts.append(Text(f"journal: {div.path}:{div.line}"))
    parts.append(Text(f"first record where they part: seq {div.seq} (line {div.line})", style="bold red"))
    return Group(*parts)


def _side(value: Any) -> str:
    return "(absent)" if value is ABSENT else short(value, 60)


# -- flux diff, flux fork -----------------------------------------------------------------------


def render_diff(diff: JournalDiff) -> RenderableType:
    """The first record where two journals differ, then every difference: where (seq in A | seq
    in B, what) and each side."""
    parts: list[RenderableType] = [
        Text(f"A: {diff.a.path} ({diff.a.records} records, {diff.a.status})"),
        Text(f"B: {diff.b.path} ({diff.b.records} records, {diff.b.status})"),
    ]
    if not diff.differences:
        parts.append(Text("the journals are the same in substance (times, hosts and pids aside)", style="green"))
        return Group(*parts)
    first = diff.differences[0]
    parts.append(
        Text(
            f"first difference: {first.what} at seq {_seq(first.seq_a)} in A, seq {_seq(first.seq_b)} in B",
            style="bold red",
        )
    )
    for d in diff.differences:
        parts.append(Text(f"seq {_seq(d.seq_a)} | {_seq(d.seq_b)}  {d.what}", style="bold"))
        parts.append(Text(f"    A: {d.a}"))
        parts.append(Text(f"    B: {d.b}"))
    parts.append(Text(f"{len(diff.differences)} differences", style="red"))
    return Group(*parts)


def _seq(seq: int | None) -> str:
    return "-" if seq is None else str(seq)


def render_fork(fork: ForkResult) -> RenderableType:
    return Text(
        f"forked {fork.source_id} at seq {fork.at} ({fork.copied} records copied"
        + (f", result of seq {fork.replaced} replaced" if fork.replaced is not None else "")
        + f") into {fork.execution_id}"
    )
