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
from flux._engine.executor import format_call

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


_REQUESTS = {R.TASK_STARTED: "task", R.VALUE: "value", R.PAUSED: "pause", R.TIMER_STARTED: "timer"}


def calls_of(records: list[dict[str, Any]]) -> dict[str, Call]:
    """Call id -> what was asked for there and how it was answered."""
    calls: dict[str, Call] = {}
    for record in records:
        kind = record["kind"]
        call_id = record.get("call_id")
        if call_id is None:
            continue
        if kind in _REQUESTS:
            request = (_REQUESTS[kind], record.get("name"), record.get("args"), record.get("kwargs"))
            call = calls[call_id] = Call(record["seq"], request, record.get("src", "?"))
            if kind == R.VALUE:
                call.answer = ("value", record.get("value"))
        elif call_id in calls:
            if kind == R.TASK_COMPLETED:
                calls[call_id].answer = ("value", record.get("value"))
            elif kind == R.TASK_FAILED:
                error = record.get("error") or {}
                calls[call_id].answer = ("error", error.get("$error"), error.get("msg"))
            elif kind == R.RESUMED:
                calls[call_id].answer = ("input", record.get("input"))
            elif kind == R.TIMER_FIRED:
                calls[call_id].answer = ("fired",)
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
