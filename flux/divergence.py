"""Where workflow code and a journal part: both sides of one call id, and their argument diff.

Built from `NondeterminismError.recorded` / `.current` (SPEC.md 4.11), which the replay core
(engine/core.py) fills in, whether the code asked for another call at a call id, left a
recorded call out, or asked for one past the end of a journal whose run had ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flux._engine.core import describe as describe_call
from flux._engine.errors import NondeterminismError

__all__ = ["ABSENT", "ArgDiff", "Divergence", "arg_diff", "describe_call"]



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
        diff = arg_diff(err.recorded, err.current)
        return cls(err.path, err.line, err.call_id, err.recorded, err.current, str(err), diff, err)

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
