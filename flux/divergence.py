"""Where workflow code and a journal part: both sides of one call id, and their argument diff.

Built from `NondeterminismError.recorded` / `.current` (SPEC.md 4.11), or, when a read-only
replay ran past the end of a journal whose run had ended, from what the code asked for there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flux._engine.errors import NondeterminismError
from flux._engine.executor import format_call
from flux._engine.journal import JournalRead
from flux._engine.records import status_of

__all__ = ["ABSENT", "ArgDiff", "Divergence", "arg_diff", "beyond_the_end", "describe_call"]



class _Absent:
    """An argument one side does not pass at all (not the same as passing None)."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()


@dataclass
class ArgDiff:
    """One argument that differs: by position (`args[1]`) or keyword (`amount=`)."""

    where: str
    recorded: Any = ABSENT
    current: Any = ABSENT

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"where": self.where}
        if self.recorded is not ABSENT:
            out["recorded"] = self.recorded
        if self.current is not ABSENT:
            out["current"] = self.current
        return out


def arg_diff(recorded: dict[str, Any] | None, current: dict[str, Any] | None) -> list[ArgDiff]:
    """Arguments whose recorded JSON differs from what the code passes now."""
    if not recorded or not current or "args" not in current and "kwargs" not in current:
        return []
    out: list[ArgDiff] = []
    then_args, now_args = recorded.get("args") or [], current.get("args") or []
    for i in range(max(len(then_args), len(now_args))):
        a = then_args[i] if i < len(then_args) else ABSENT
        b = now_args[i] if i < len(now_args) else ABSENT
        if a is ABSENT or b is ABSENT or a != b:
            out.append(ArgDiff(f"args[{i}]", a, b))
    then_kw, now_kw = recorded.get("kwargs") or {}, current.get("kwargs") or {}
    for key in [*then_kw, *(k for k in now_kw if k not in then_kw)]:
        a, b = then_kw.get(key, ABSENT), now_kw.get(key, ABSENT)
        if a is ABSENT or b is ABSENT or a != b:
            out.append(ArgDiff(f"{key}=", a, b))
    return out


@dataclass
class Divergence:
    """Where the code and the journal part: what each holds at that call id."""

    path: str
    line: int  # journal line of the recorded call (1-based)
    call_id: str
    recorded: dict[str, Any] | None  # the journal's record that opened the call
    current: dict[str, Any] | None  # kind, name, args, kwargs, src of what the code asks for now
    message: str
    args: list[ArgDiff]
    error: NondeterminismError

    @property
    def seq(self) -> int:
        """The first record where the journal and the code part."""
        return max(self.line - 1, 0)

    @classmethod
    def of(cls, err: NondeterminismError) -> Divergence:
        return cls(err.path, err.line, err.call_id, err.recorded, err.current, str(err), arg_diff(err.recorded, err.current), err)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "diverged",
            "path": self.path,
            "line": self.line,
            "seq": self.seq,
            "call_id": self.call_id,
            "recorded": self.recorded,
            "current": self.current,
            "arg_diff": [d.as_json() for d in self.args],
            "message": self.message,
        }


def describe_call(side: dict[str, Any] | None) -> str:
    """`name(args)` of a recorded call or of what the code asks for."""
    if not side:
        return ""
    kind = side.get("kind")
    if kind in ("workflow_paused", "pause"):
        return f"pause({side.get('name')!r})"
    if kind in ("value_recorded", "value", "timer_started", "timer"):
        return f"{side.get('name', 'sleep')}()"
    if "what" in side and "name" not in side:
        return str(side["what"])
    return format_call(str(side.get("name", "?")), side.get("args"), side.get("kwargs"))


def beyond_the_end(
    read: JournalRead,
    call_id: str,
    asked: dict[str, Any] | None,
    first_missed: dict[str, Any] | None,
    waiting: set[str] | None = None,
) -> NondeterminismError | None:
    """A divergence when the code asked for a call the journal never recorded although the
    recorded run had ended there (finished, or paused at another call); None when the journal
    simply ends where the code is (an interrupted run, or the pause it waits at)."""
    records = read.records
    status = status_of(records)
    if status == "paused":
        if waiting is None:  # the pauses not resumed, when the caller's index does not say
            waiting = {r["call_id"] for r in records if r["kind"] == "workflow_paused"}
            waiting -= {r.get("call_id") for r in records if r["kind"] == "workflow_resumed"}
        if call_id in waiting:
            return None
    elif status not in ("completed", "failed", "cancelled"):
        return None
    current = {**(asked or {"src": "?"}), "call_id": call_id}
    what = describe_call(current) or f"call {call_id}"
    line = first_missed["seq"] + 1 if first_missed else len(records)
    then = (
        f"the journal recorded {describe_call(first_missed)} at call {first_missed['call_id']} "
        f"({first_missed.get('src', '?')}) instead, which the code never asked for"
        if first_missed else "the journal recorded no call there"
    )
    workflow = records[0].get("workflow", "")
    return NondeterminismError(
        f"{read.path}:{line}: workflow {workflow!r} asked for {what} at call {call_id} ({current.get('src', '?')}), "
        f"but the recorded run {status} without it; {then}. "
        'The workflow code changed or is not deterministic; see SPEC.md section "Replay".',
        path=read.path,
        line=line,
        call_id=call_id,
        recorded=first_missed,
        current=current,
    )
