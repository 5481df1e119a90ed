"""The replay core on its own: decisions from a journal's fold, with no store, no I/O and no
event loop."""

from __future__ import annotations

from typing import Any

import pytest

from flux._engine.core import CANCEL, LIVE, REPLAY, RERUN, WAIT, EndOfJournal, ReplayCore
from flux._engine.errors import NondeterminismError
from flux._engine.history import fold

T = "2026-01-01T00:00:00.000000+00:00"


def journal(*records: dict[str, Any]) -> list[dict[str, Any]]:
    head = {
        "kind": "header",
        "format": 1,
        "execution_id": "e",
        "workflow": "order",
        "code": {},
        "input": 1,
        "created": T,
    }
    return [{"seq": i, **r} for i, r in enumerate([head, {"kind": "workflow_started", "at": T}, *records])]


def started(call_id: str, name: str = "charge", args: list[Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "task_started", "at": T, "call_id": call_id, "name": name, "src": "orders.py:10"}
    if args is not None:
        out["args"] = args
    return out


def completed(call_id: str, value: Any = 1) -> dict[str, Any]:
    return {"kind": "task_completed", "at": T, "call_id": call_id, "value": value}


def core(*records: dict[str, Any], **options: Any) -> ReplayCore:
    return ReplayCore(fold(journal(*records), "j.jsonl"), **options)


def test_a_recorded_outcome_is_replayed_and_an_open_call_runs_again() -> None:
    c = core(started("1", args=[5]), completed("1", 10), started("2"))
    decision, call = c.task("1", "charge", [5], None, "orders.py:10")
    assert decision == REPLAY and call is not None and call.value == 10
    assert c.task("2", "charge", None, None, "orders.py:11")[0] == RERUN
    assert c.task("3", "ship", None, None, "orders.py:12") == (LIVE, None)


def test_another_call_at_a_recorded_call_id_is_a_divergence_naming_both_sides() -> None:
    c = core(started("1", args=[5]), completed("1"))
    with pytest.raises(NondeterminismError) as info:
        c.task("1", "charge", [6], None, "orders.py:20")
    err = info.value
    assert err.path == "j.jsonl" and err.line == 3 and err.call_id == "1"
    assert (
        "asked for charge(6) at call 1 (orders.py:20), but the journal recorded charge(5) there (orders.py:10)"
        in str(err)
    )
    assert err.current is not None and err.current["args"] == [6]
    with pytest.raises(NondeterminismError, match=r"asked for pause\('x'\)"):
        c.slot("1", "pause", "x", "pause('x')", "orders.py:21")


def test_a_recorded_call_never_asked_for_is_a_divergence_at_the_end() -> None:
    c = core(started("1"), completed("1"), started("2", "ship"), completed("2"))
    c.task("1", "charge", None, None, "o:1")
    with pytest.raises(
        NondeterminismError, match=r"j.jsonl:5: workflow 'order' finished without asking for ship\(\) at call 2"
    ):
        c.finished()


def test_calls_made_inside_bodies_that_did_not_run_again_are_not_required() -> None:
    records = [
        started("1"),
        started("1.1", "inner"),
        completed("1.1"),
        completed("1"),  # replayed: its body did not run
        started("2"),
        started("2.1", "inner"),
        completed("2.1"),  # attempt 0's nested call
        {
            "kind": "attempt_failed",
            "at": T,
            "call_id": "2",
            "attempt": 0,
            "error": {"$error": "x:E", "msg": ""},
            "retry_at": 1.0,
        },
        {"kind": "retry_started", "at": T, "call_id": "2", "attempt": 1},
        started("2.a1.1", "inner"),  # attempt 1's: runs again with its attempt
        started("3"),
        {
            "kind": "attempt_failed",
            "at": T,
            "call_id": "3",
            "attempt": 0,
            "error": {"$error": "x:E", "msg": ""},
            "retry_at": None,
        },
        {"kind": "fallback_started", "at": T, "call_id": "3"},
        started("3.f.1", "in_fallback"),
        {"kind": "fallback_failed", "at": T, "call_id": "3", "error": {"$error": "x:E", "msg": ""}},
    ]
    c = core(*records)
    assert not c.required("1.1")
    assert not c.required("2.1")
    assert c.required("2.a1.1")
    assert not c.required("3.f.1")
    c.task("1", "charge", None, None, "o:1")
    c.task("2", "charge", None, None, "o:2")
    c.task("2.a1.1", "inner", None, None, "o:3")
    c.task("3", "charge", None, None, "o:4")
    c.finished()  # nothing required was left out


def test_a_read_only_replay_stops_where_the_journal_ends_or_diverges_past_a_finished_run() -> None:
    c = core(started("1"), replay_only=True)
    with pytest.raises(EndOfJournal):
        c.task("1", "charge", None, None, "o:1")
    assert c.asked is not None and c.asked["call_id"] == "1"
    done = core(started("1"), completed("1"), {"kind": "workflow_completed", "at": T, "value": 1}, replay_only=True)
    done.task("1", "charge", None, None, "o:1")
    with pytest.raises(NondeterminismError, match="but the recorded run completed without it"):
        done.task("2", "refund", None, None, "o:2")


def test_a_pause_is_replayed_waited_at_or_reached_live() -> None:
    paused = {"kind": "workflow_paused", "at": T, "call_id": "1", "name": "approve", "src": "o:1"}
    answered = {"kind": "workflow_resumed", "at": T, "call_id": "1", "input": "yes"}
    c = core(paused, answered)
    assert c.pause("1", c.slot("1", "pause", "approve", "", "o:1"), {}) == REPLAY
    waiting = core(paused)
    assert waiting.pause("1", waiting.slot("1", "pause", "approve", "", "o:1"), {}) == WAIT
    assert waiting.pause("2", None, {"kind": "pause", "name": "next"}) == LIVE
    replaying = core(paused, replay_only=True)
    with pytest.raises(EndOfJournal):  # the pause the recorded run waits at: the replay ends there
        replaying.pause("1", replaying.slot("1", "pause", "approve", "", "o:1"), {"kind": "pause", "name": "approve"})


def test_a_cancellation_is_delivered_at_the_first_live_point_and_where_it_was_recorded() -> None:
    c = core(started("1"), completed("1"), cancel=True)
    assert c.task("1", "charge", None, None, "o:1")[0] == REPLAY  # recorded outcomes still replay
    assert c.task("2", "ship", None, None, "o:2")[0] == CANCEL
    assert c.cancelling and not c.cancel_pending
    assert c.task("3", "ship", None, None, "o:3")[0] == LIVE  # compensations run live
    recorded = core(
        started("1"),
        {"kind": "cancel_requested", "at": T},
        {"kind": "task_cancelled", "at": T, "call_id": "1"},
        {"kind": "workflow_cancelled", "at": T},
        replay_only=True,
    )
    decision, _ = recorded.task("1", "charge", None, None, "o:1")
    assert decision == CANCEL and recorded.verdict("cancelled", None, None).matches


def test_patched_answers_by_marker_by_what_was_recorded_after_and_never_in_a_read_only_replay() -> None:
    marked = core({"kind": "patched", "at": T, "change_id": "new"})
    assert marked.patched("1", "new") == (True, False)
    old = core(started("1"), completed("1"))
    assert old.patched("1", "other") == (False, False)  # the old code ran past this point
    fresh = core(started("1"), completed("1"))
    assert fresh.patched("2", "other") == (True, True)  # new work: write the marker
    assert fresh.patched("2", "other") == (True, False)  # kept for the run
    assert core(replay_only=True).patched("1", "x") == (False, False)


def test_the_verdict_on_a_replayed_output() -> None:
    done = core({"kind": "workflow_completed", "at": T, "value": [1, 2]})
    assert done.verdict("completed", [1, 2], None).matches
    assert not done.verdict("completed", [1, 3], None).matches
    assert "the code now fails with KeyError" in done.verdict("failed", None, "KeyError").note
    failed = core({"kind": "workflow_failed", "at": T, "error": {"$error": "flux.errors:ExecutionError", "msg": "x"}})
    assert failed.verdict("failed", None, "ExecutionError").matches
    assert not failed.verdict("failed", None, "ValueError").matches
    assert not failed.verdict("completed", 5, None).matches
    assert core().verdict("replayed", None, None).matches
