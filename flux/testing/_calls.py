"""What each call of a journal asked for and how it was answered, to compare two runs.

Two runs of a deterministic workflow with the same input ask for the same calls as long as the
world answers them the same way. A task that returns a new timestamp or id each time it runs,
or `now()` and `uuid4()` made again, is the world answering differently: the runs may then part
without any fault of the workflow, so their outputs are not compared. A call asked for with other
arguments, or one asked for by only one of the runs, while every answer agreed, is the
workflow's doing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flux._engine import records as R
from flux._engine.core import format_call
from flux._engine.history import History

__all__ = ["Call", "Comparison", "calls_of", "compare_calls"]


@dataclass
class Call:
    seq: int
    request: tuple[Any, ...]  # kind, name, args, kwargs (as recorded JSON)
    src: str
    answer: Any = None  # what the workflow was handed, as recorded; None while none was

    def describe(self) -> str:
        kind, name, args, kwargs = self.request
        if kind == "task":
            return format_call(name, args, kwargs)
        return f"pause({name!r})" if kind == "pause" else f"{name}()"


@dataclass
class Comparison:
    answered_differently: list[str]  # call ids asked for alike in both runs but answered otherwise
    asked_differently: str | None  # the first call asked for otherwise, described; None if none


def calls_of(history: History) -> dict[str, Call]:
    """Call id -> what was asked for there and how it was answered, from a journal's fold."""
    calls: dict[str, Call] = {}
    for call_id, recorded in history.calls.items():
        start = recorded.start
        request = (
            (recorded.kind, recorded.name, recorded.args, recorded.kwargs)
            if recorded.kind == "task"
            else (recorded.kind, recorded.name, None, None)
        )
        call = calls[call_id] = Call(recorded.seq, request, str(start.get("src", "?")))
        if recorded.kind == "value":
            call.answer = ("value", recorded.value)
        elif recorded.kind == "pause":
            if recorded.resumed is not None:
                call.answer = ("input", recorded.resumed.get("input"))
        elif recorded.end == R.TASK_COMPLETED:
            call.answer = ("value", recorded.value)
        elif recorded.end == R.TASK_FAILED:
            error = (recorded.outcome or {}).get("error") or {}
            call.answer = ("error", error.get("$error"), error.get("msg"))
        elif recorded.end == R.TIMER_FIRED:
            call.answer = ("fired",)
    return calls


def compare_calls(reference: dict[str, Call], run: dict[str, Call]) -> Comparison:
    """How `run` differs from `reference`: calls answered otherwise, and the first call asked
    for otherwise (in the reference's order, then the run's)."""
    answered = [
        call_id
        for call_id, ref in sorted(reference.items(), key=lambda item: item[1].seq)
        if call_id in run and run[call_id].request == ref.request and run[call_id].answer != ref.answer
    ]
    asked: str | None = None
    for call_id, ref in sorted(reference.items(), key=lambda item: item[1].seq):
        mine = run.get(call_id)
        if mine is None:
            asked = (
                f"did not ask for {ref.describe()} at call {call_id} ({ref.src}), "
                "which the uninterrupted run asked for"
            )
        elif mine.request != ref.request:
            asked = (
                f"asked for {mine.describe()} at call {call_id} ({mine.src}), "
                f"where the uninterrupted run asked for {ref.describe()} ({ref.src})"
            )
        if asked:
            break
    if asked is None:
        extra = sorted((c for c in run.items() if c[0] not in reference), key=lambda item: item[1].seq)
        if extra:
            call_id, mine = extra[0]
            asked = f"asked for {mine.describe()} at call {call_id} ({mine.src}), which the uninterrupted run did not"
    return Comparison(answered, asked)
