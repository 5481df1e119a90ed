"""Every replay decision, in one place, with no I/O and no event loop (SPEC.md 4.2).

The executor (engine/executor.py) is the driver: it appends records, syncs them, runs bodies
and finishes runs. For each trap of engine/traps.py it asks the core what the journal says at
that call id, and the core answers:

    REPLAY   the journal recorded the outcome: hand it to the workflow, run nothing
    RERUN    the journal recorded the start but no outcome: run the body again, record no start
    LIVE     nothing recorded there: record the start, make it durable, then run
    CANCEL   a requested cancellation is delivered here (SPEC.md 4.6)
    WAIT     a pause recorded earlier and not answered: wait at it

or raises: `NondeterminismError` when the code asks for something else than the journal
recorded there, `EndOfJournal` when a read-only replay reaches what the journal does not hold.
It also owns the checks at the end of a run (recorded calls never asked for) and the verdict
on a replayed output. Debuggers read `asked`, what the code asked for at the last decision.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from flux._engine import records as R
from flux._engine.errors import NondeterminismError
from flux._engine.history import CallHistory, History
from flux._engine.records import Status

__all__ = [
    "CANCEL",
    "EndOfJournal",
    "LIVE",
    "REPLAY",
    "RERUN",
    "ReplayCore",
    "Verdict",
    "WAIT",
    "format_call",
]

REPLAY = 1
RERUN = 2
LIVE = 3
CANCEL = 4
WAIT = 5

_NOTHING: Any = object()
_SEE = 'The workflow code changed or is not deterministic; see `flux spec "replay rules"` (SPEC.md).'


class EndOfJournal(BaseException):
    """Raised inside a read-only replay when the code reaches what the journal has not recorded."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        super().__init__(call_id)


def format_call(name: str, args: Any, kwargs: Any) -> str:
    """`name(arg, key=value)` with arguments in their recorded JSON form."""
    parts = [orjson.dumps(a).decode() for a in (args or [])]
    parts += [f"{k}={orjson.dumps(v).decode()}" for k, v in (kwargs or {}).items()]
    return f"{name}({', '.join(parts)})"


def describe(side: dict[str, Any] | None) -> str:
    """`name(args)` of a recorded call or of what the code asks for (kind, name, args, kwargs)."""
    if not side:
        return ""
    kind = side.get("kind")
    if kind in (R.PAUSED, "pause"):
        return f"pause({side.get('name')!r})"
    if kind in (R.VALUE, "value", R.TIMER_STARTED, "timer"):
        return f"{side.get('name', 'sleep')}()"
    if "what" in side and "name" not in side:
        return str(side["what"])
    return format_call(str(side.get("name", "?")), side.get("args"), side.get("kwargs"))


@dataclass(frozen=True)
class Verdict:
    """Whether a replay reproduced what the journal recorded."""

    matches: bool
    note: str


class ReplayCore:
    """The replay decisions of one run over one journal's history.

    Args:
        history: the fold of the journal (engine/history.py).
        replay_only: a read-only replay (`flux replay`, golden journals): nothing runs live.
        cancel: deliver a requested cancellation at the first live point.
        observer: optional hooks (SPEC.md 4.11): `replayed(call_id, record, frame)` and
            `end_of_journal(call_id, frame)`; the frame is found by `frame_of` when asked for.
    """

    def __init__(
        self,
        history: History,
        *,
        replay_only: bool = False,
        cancel: bool = False,
        observer: Any = None,
        frame_of: Callable[[], Any] = lambda: None,
    ) -> None:
        self.history = history
        self.calls = history.calls
        self.replay_only = replay_only
        # A run that began cancelling and died finishes cancelling (SPEC.md 4.6); a read-only
        # replay of such a journal delivers the cancellation where the recorded run did.
        self.cancel_pending = cancel or (history.cancel_requested and history.final is None)
        if replay_only and history.cancel_requested:
            self.cancel_pending = True
        self.cancelling = history.cancel_requested  # a cancellation is unwinding the workflow
        self.observer = observer
        # Looked up once: most observers (a plain `flux replay`) have no `replayed`, and asking
        # for a missing attribute on every replayed call costs a few percent of a replay.
        self._on_replayed: Callable[..., Any] | None = getattr(observer, "replayed", None)
        self.frame_of = frame_of
        self.asked: dict[str, Any] | None = None  # what the code asked for where the journal ended
        self.patches: dict[str, bool] = {}  # change id -> the answer `patched` gave in this run
        self._slots: set[str] | None = None
        self._order: list[tuple[str, CallHistory]] | None = None  # recorded calls, in journal order
        self._cursor = 0  # calls before it were asked for again, or need not be

    @property
    def path(self) -> str:
        return self.history.path

    # -- the decisions -------------------------------------------------------------------------

    def task(self, call_id: str, name: str, args: Any, kwargs: Any, src: str) -> tuple[int, CallHistory | None]:
        """The decision for a task call (name formatted, arguments in their recorded form)."""
        call = self.calls.get(call_id)
        if call is None:
            if not self.cancel_pending and not self.replay_only:
                return LIVE, None  # new work: the commonest live call
            asked = {"kind": "task", "name": name, "args": args, "kwargs": kwargs, "src": src}
            return self.live(call_id, None, asked), None
        call.visited = True
        if call.kind != "task" or call.name != name or call.args != args or call.kwargs != kwargs:
            self._mismatch(
                call, call_id, format_call(name, args, kwargs), src,
                {"kind": "task", "name": name, "args": args, "kwargs": kwargs, "src": src},
            )
        if call.end is not None:
            if self._on_replayed is not None:
                self._replayed(call_id, call, "outcome")
            return REPLAY, call
        if call.cancelled is not None:
            self.cancel_pending = False  # a resumed cancellation arrives here, as it did then
            return CANCEL, call
        asked = {"kind": "task", "name": name, "args": args, "kwargs": kwargs, "src": src}
        return self.live(call_id, call, asked), call

    def slot(self, call_id: str, kind: str, name: str, what: str, src: str) -> CallHistory | None:
        """What the journal recorded at a pause, value or timer slot, which must be a `kind` of
        this `name` (else NondeterminismError); None when nothing was recorded there."""
        call = self.calls.get(call_id)
        if call is not None:
            call.visited = True
            if call.kind != kind or call.name != name:
                self._mismatch(call, call_id, what, src, {"kind": kind, "name": name, "src": src})
        return call

    def replayed(self, call_id: str, call: CallHistory, which: str) -> None:
        """Tells the observer that `call`'s recorded `which` record goes back to the workflow."""
        if self._on_replayed is not None:
            self._replayed(call_id, call, which)

    def pause(self, call_id: str, call: CallHistory | None, asked: dict[str, Any]) -> int:
        """REPLAY (the pause was answered), WAIT (recorded and not answered), LIVE or CANCEL."""
        if call is not None:
            if call.resumed is not None:
                if self._on_replayed is not None:
                    self._replayed(call_id, call, "resumed")
                return REPLAY
            if self.replay_only and not self.cancel_pending:
                self._end(call_id, asked, waiting=True)
            if self.cancel_pending:
                return self._deliver_cancel()
            return WAIT
        return self.live(call_id, None, asked)

    def live(self, call_id: str, call: CallHistory | None, asked: dict[str, Any] | None) -> int:
        """Nothing recorded lies ahead at `call_id` (no outcome, or no record at all): a
        read-only replay stops here (or diverges when the recorded run ended without it); a
        pending cancellation is delivered here. LIVE, RERUN or CANCEL."""
        if self.cancel_pending:
            return self._deliver_cancel()
        if self.replay_only:
            self._end(call_id, asked)
        return LIVE if call is None else RERUN

    def _deliver_cancel(self) -> int:
        self.cancel_pending = False
        self.cancelling = True
        return CANCEL

    def patched(self, next_slot: str, change_id: str) -> tuple[bool, bool]:
        """(the answer of `ctx.patched(change_id)`, whether to write its marker) (SPEC.md 4.10).

        True when the journal holds the change's marker, or when the code reaches the check
        where the journal has nothing recorded at the branch's next slot (new work); False
        when the journal recorded something there (the execution ran the old code past this
        point), and in a read-only replay without a marker. The answer is kept for the run.
        """
        known = self.patches.get(change_id)
        if known is not None:
            return known, False
        write = False
        if change_id in self.history.markers:
            answer = True
        elif self.replay_only:
            answer = False
        else:
            if self._slots is None:
                self._slots = _all_slots(self.calls)
            answer = next_slot not in self._slots
            write = answer
        self.patches[change_id] = answer
        return answer, write

    # -- the end of a run ----------------------------------------------------------------------

    def finished(self) -> None:
        """The workflow returned: every recorded call it should have asked for again must have
        been asked for (SPEC.md 4.2 rule 5), else NondeterminismError names the first one.

        Calls recorded inside the body of a call that was not run again (its outcome was
        replayed, or the attempt or handler that made them was recorded as over) cannot be
        asked for and are not required.
        """
        missed = [c for c in self.calls.values() if not c.visited]
        if not missed:
            return
        for call in sorted(missed, key=lambda c: c.seq):
            call_id = call.start["call_id"]
            if not self.required(call_id):
                continue
            what = format_call(call.name, call.args, call.kwargs) if call.kind == "task" else describe(call.start)
            self.diverge(
                f"{self.path}:{call.seq + 1}: workflow {self.history.workflow!r} finished without asking for "
                f"{what} at call {call_id} ({call.start.get('src', '?')}), which the journal recorded. {_SEE}",
                call,
            )

    def replaying(self) -> bool:
        """Whether the run is still going through recorded history: some recorded call it must
        ask for again has not been asked for yet. Amortised O(1): a cursor moves over the calls
        in journal order, which is about the order a run asks for them."""
        if self.replay_only:
            return True
        order = self._order
        if order is None:
            order = self._order = list(self.calls.items())
        i = self._cursor
        while i < len(order) and (order[i][1].visited or not self.required(order[i][0])):
            i += 1
        self._cursor = i
        return i < len(order)

    def required(self, call_id: str) -> bool:
        """Whether a run must ask for `call_id` again: none of the calls whose bodies made it
        was left out of this run (replayed, or the attempt or handler that made it is over)."""
        parts = call_id.split(".")
        for i in range(len(parts) - 1, 0, -1):
            outer = self.calls.get(".".join(parts[:i]))
            if outer is None or outer.kind != "task":
                continue
            if outer.end is not None:
                return False  # replayed: its body did not run
            inner = parts[i]
            if inner == "f":
                if outer.handlers and R.FALLBACK_FAILED in outer.handlers:
                    return False
            elif inner == "r":
                if outer.handlers and (R.ROLLBACK_COMPLETED in outer.handlers or R.ROLLBACK_FAILED in outer.handlers):
                    return False
            else:
                attempt = int(inner[1:]) if inner.startswith("a") and inner[1:].isdigit() else 0
                if len(outer.failures or ()) > attempt:
                    return False  # that attempt is recorded as failed: it does not run again
        return True

    def verdict(self, status: str, output: Any, error_type: str | None, *, recorded: Any = _NOTHING) -> Verdict:
        """Whether a replay that ended in `status` reproduced the journal.

        `output` is the replay's output in its recorded form (section 3) when it completed, and
        `error_type` the class name of its error when it failed; `recorded` is the recorded
        output when the journal kept it in output storage.
        """
        final = self.history.final
        if status in ("replayed", Status.PAUSED):
            return Verdict(True, "the code matches the journal up to its last record")
        if final is None:
            return Verdict(True, "the code matches the journal")
        if final["kind"] == R.CANCELLED:
            if status == Status.CANCELLED:
                return Verdict(True, "the code is cancelled as recorded")
            return Verdict(True, "the code matches the journal up to its cancellation")
        if final["kind"] == R.COMPLETED:
            if status != Status.COMPLETED:
                now = f"fails with {error_type}" if status == Status.FAILED else f"ends {status}"
                return Verdict(False, f"the journal recorded a completed run, the code now {now}")
            then = final["value"] if recorded is _NOTHING else recorded
            if output != then:
                return Verdict(False, f"the code now returns {_short(output)}, the journal recorded {_short(then)}")
            return Verdict(True, "the code reproduces the recorded output")
        if status != Status.FAILED:
            now = "returns " + _short(output) if status == Status.COMPLETED else "ends " + str(status)
            return Verdict(False, f"the journal recorded a failed run, the code now {now}")
        recorded_type = str((final.get("error") or {}).get("$error", "?")).rpartition(":")[2].rpartition(".")[2]
        if recorded_type != error_type:
            return Verdict(
                False, f"the journal recorded a failure with {recorded_type}, the code now fails with {error_type}"
            )
        return Verdict(True, "the code fails as recorded")

    # -- divergence ----------------------------------------------------------------------------

    def _end(self, call_id: str, asked: dict[str, Any] | None, *, waiting: bool = False) -> None:
        """A read-only replay reached what the journal has not recorded at `call_id`.

        If the recorded run had ended (completed or failed; paused at other pauses than this
        one), asking for anything more is a divergence: the code would now do something the
        recorded run never did. Otherwise (an interrupted run, the pause it waits at, or the
        point where a recorded cancellation arrived) the replay simply stops here.
        """
        history = self.history
        current = dict(asked or {"kind": "call"})
        if "src" not in current:
            frame = self.frame_of()
            current["src"] = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}" if frame else "?"
        current["call_id"] = call_id
        self.asked = current
        ended = history.final is not None and history.final["kind"] != R.CANCELLED
        paused_elsewhere = history.status == Status.PAUSED and not waiting and not history.waiting_children
        if ended or paused_elsewhere:
            first = self._first_missed()
            how = R.LIFECYCLE[history.final["kind"]] if history.final is not None else Status.PAUSED
            line = first.seq + 1 if first is not None else (history.final or {}).get("seq", history.next_seq - 1) + 1
            then = (
                f"the journal recorded {describe(first.start)} at call {first.start['call_id']} "
                f"({first.start.get('src', '?')}) instead, which the code never asked for"
                if first is not None else "the journal recorded no call there"
            )
            self.diverge(
                f"{self.path}:{line}: workflow {history.workflow!r} asked for {describe(current) or 'a call'} at call "
                f"{call_id} ({current['src']}), but the recorded run {how} without it; {then}. {_SEE}",
                first,
                current,
                line=line,
            )
        if self.observer is not None:
            method = getattr(self.observer, "end_of_journal", None)
            if method is not None:
                method(call_id, self.frame_of())
        raise EndOfJournal(call_id)

    def _first_missed(self) -> CallHistory | None:
        missed = [c for c in self.calls.values() if not c.visited and self.required(c.start["call_id"])]
        return min(missed, key=lambda c: c.seq) if missed else None

    def _mismatch(self, call: CallHistory, call_id: str, now: str, src: str, current: dict[str, Any]) -> None:
        then = describe(call.start) if call.kind != "task" else format_call(call.name, call.args, call.kwargs)
        current.setdefault("src", src)
        current["call_id"] = call_id
        self.diverge(
            f"{self.path}:{call.seq + 1}: workflow {self.history.workflow!r} asked for {now} "
            f"at call {call_id} ({src}), but the journal recorded {then} there ({call.start.get('src', '?')}). {_SEE}",
            call,
            current,
        )

    def observation_mismatch(self, call_id: str, asked: str, src: str, found: str | None = None) -> None:
        """An observation of completion order (SPEC.md 4.1) recorded what this code cannot
        have seen (tasks it does not wait on; `found`, or the recorded tasks done):
        NondeterminismError."""
        call = self.calls[call_id]
        found = found or f"{_short(call.value)} done"
        self.diverge(
            f"{self.path}:{call.seq + 1}: workflow {self.history.workflow!r} asked for {asked} at call {call_id} "
            f"({src}), but the journal recorded {found} there ({call.start.get('src', '?')}). {_SEE}",
            call,
            {"kind": "value", "name": call.name, "src": src, "call_id": call_id},
        )

    def diverge(
        self, message: str, call: CallHistory | None, current: dict[str, Any] | None = None, *, line: int | None = None
    ) -> None:
        raise NondeterminismError(
            message,
            path=self.path,
            line=line if line is not None else (call.seq + 1 if call else 0),
            call_id=call.start["call_id"] if call else (current or {}).get("call_id", ""),
            recorded=call.start if call else None,
            current=current,
        )

    def _replayed(self, call_id: str, call: CallHistory, which: str) -> None:
        method = self._on_replayed
        if method is not None:
            method(call_id, getattr(call, which), self.frame_of())


def _all_slots(calls: dict[str, CallHistory]) -> set[str]:
    """Every call id and branch prefix the journal used ("3.2.1" gives "3", "3.2", "3.2.1")."""
    slots: set[str] = set()
    for call_id in calls:
        parts = call_id.split(".")
        for i in range(1, len(parts) + 1):
            slots.add(".".join(parts[:i]))
    return slots


def _short(tree: Any, limit: int = 120) -> str:
    text = orjson.dumps(tree, default=repr).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# asyncio is imported for its CancelledError only: delivering a cancellation needs no loop.
CancelledError = asyncio.CancelledError
