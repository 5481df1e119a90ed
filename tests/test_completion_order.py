"""Completion order in workflow code (SPEC.md 4.1): `asyncio.wait` with FIRST_COMPLETED, a
timeout or FIRST_EXCEPTION, `asyncio.as_completed`, `asyncio.wait_for` and `asyncio.timeout`
record what they observed; replay and
resume hand back the same observation, whatever order recorded results now arrive in (all at
once). Each replay test fails on an engine that lets asyncio observe the replay's own order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from flux import debug
from flux._engine.journal import encode_line, seed_for
from flux._engine.store import open_store
from flux.errors import InvalidOptionError, NondeterminismError
from flux.testing import check_once
from tests import completion_workflows as W
from tests.conftest import empty_pg
from tests.support.journals import journal_path, records


@pytest.fixture(autouse=True)
def _clear() -> None:
    W.BODIES.clear()


def observations(of: Any) -> list[tuple[str, str, Any]]:
    return [(r["call_id"], r["name"], r["value"]) for r in records(of) if r["kind"] == "value_recorded"]


def replays_alike(of: Any, times: int = 5) -> None:
    """A read-only replay, several times over: the code reproduces the recorded output."""
    for _ in range(times):
        replayed = debug.replay(str(journal_path(of)))
        assert replayed.matches, replayed.note


def test_the_winner_of_a_race_is_recorded_and_a_replay_sees_only_it_done(home: Path) -> None:
    ctx = W.race.run([0.3, 0.001, 0.1])
    assert ctx.status == "completed", ctx.output
    assert ctx.output == {"done": 1, "pending": 2, "report": "reported fast"}
    assert observations(ctx) == [("4", "asyncio.wait", ["2."])]  # the second task made, by its branch
    cancelled = [r["call_id"] for r in records(ctx) if r["kind"] == "task_cancelled"]
    assert sorted(cancelled) == ["1.1", "3.1"]
    # On replay the losers' cancellations and the winner's value are all there at once: asyncio
    # alone would find three tasks done.
    replays_alike(ctx)
    W.BODIES.clear()
    again = W.race.run(execution_id=ctx.execution_id)
    assert again.output == ctx.output and W.BODIES == []


def test_results_handed_out_by_as_completed_keep_their_recorded_order(home: Path) -> None:
    ctx = W.arrivals.run([0.2, 0.001, 0.05])
    assert ctx.output == "reported 1,2,0"
    assert observations(ctx) == [
        ("4", "asyncio.as_completed", "2."), ("5", "asyncio.as_completed", "3."), ("6", "asyncio.as_completed", "1."),
    ]
    # The coroutines became tasks in the order given (asyncio would make them in a set's order).
    starts = {r["call_id"]: r["args"][0] for r in records(ctx) if r["kind"] == "task_started"}
    assert starts == {"1.1": "0", "2.1": "1", "3.1": "2", "7": "1,2,0"}
    replays_alike(ctx)


def test_a_wait_that_timed_out_replays_as_timed_out_without_waiting(home: Path) -> None:
    ctx = W.deadline.run(0.05)
    assert ctx.output == "reported gave up"
    assert observations(ctx) == [("2", "asyncio.wait", [])]
    replays_alike(ctx)


def test_as_completed_with_a_timeout_records_the_timeout(home: Path) -> None:
    ctx = W.arrivals_in_time.run(0.1)
    assert ctx.output == ["quick", "timeout"]
    assert [value for _, _, value in observations(ctx)] == ["2.", None]
    replays_alike(ctx)


def test_the_loop_that_hands_pending_back_to_wait_knows_tasks_by_the_names_given(home: Path) -> None:
    ctx = W.in_turn.run([0.2, 0.001, 0.05])
    assert ctx.output == ["s1", "reported 2 left", "s2", "reported 1 left", "s0"]
    assert [value for _, _, value in observations(ctx)] == [["lane-1"], ["lane-2"], ["lane-0"]]
    replays_alike(ctx)


@pytest.mark.parametrize(
    "flow,given",
    [(W.race, [0.05, 0.001, 0.02]), (W.arrivals, [0.05, 0.001, 0.02]), (W.bounded, 30.0), (W.scoped, 30.0)],
    ids=["wait", "as_completed", "wait_for", "timeout"],
)
def test_races_hold_every_determinism_property(home: Path, flow: Any, given: Any) -> None:
    """Cut after every record and resumed, replayed in eight processes, run with other delays:
    a run that observed another order is held to a replay of its own journal."""
    report = check_once(flow, given)
    assert report.first_failure is None, report.describe()
    assert {r.name: r.status for r in report.results} == dict.fromkeys(
        ("run", "resume", "no-rerun", "replay", "replay-subprocess", "completion-order"), "pass"
    )


@pytest.mark.parametrize("delay,done,output", [(30.0, [], "reported timed out"), (0.001, ["1."], "reported source")])
def test_wait_for_records_whether_the_timeout_came_first(
    home: Path, delay: float, done: list[str], output: str
) -> None:
    ctx = W.bounded.run(delay)
    assert ctx.output == output
    assert observations(ctx) == [("2", "asyncio.wait_for", done)]
    # The awaitable ran as a task of its own (call 1.1) on every Python; given up on, its call
    # records task_cancelled, which a replay meets at once: asyncio's wait_for would then raise
    # CancelledError instead of TimeoutError.
    ended = {r["call_id"]: r["kind"] for r in records(ctx) if r["kind"] in ("task_completed", "task_cancelled")}
    assert ended["1.1"] == ("task_cancelled" if not done else "task_completed")
    replays_alike(ctx)


@pytest.mark.parametrize("flow", [W.scoped, W.scoped_at], ids=["timeout", "timeout_at"])
@pytest.mark.parametrize(
    "delay,expired,output", [(30.0, True, "reported timed out"), (0.001, False, "reported source")]
)
def test_an_asyncio_timeout_block_records_whether_it_expired(
    home: Path, flow: Any, delay: float, expired: bool, output: str
) -> None:
    ctx = flow.run(delay)
    assert ctx.output == output
    assert observations(ctx) == [("1", "asyncio.timeout", expired)]
    # The call the expiry interrupted, in the workflow's own task, records its cancellation:
    # otherwise it stays open, and a replay finds the block asking for it past the journal.
    ended = {r["call_id"]: r["kind"] for r in records(ctx) if r["kind"] in ("task_completed", "task_cancelled")}
    assert ended["2"] == ("task_cancelled" if expired else "task_completed")
    replays_alike(ctx)


def test_an_outer_timeout_cutting_through_an_inner_one_is_the_outer_ones_on_replay(home: Path) -> None:
    ctx = W.nested_scopes.run()
    assert ctx.output == ["outer expired", "reported done"]
    assert observations(ctx) == [("1", "asyncio.timeout", True), ("2", "asyncio.timeout", False)]
    replays_alike(ctx)


def test_a_pause_inside_an_asyncio_timeout_block_leaves_it_open_until_the_run_goes_on(home: Path) -> None:
    """The run ends paused inside the block: that is not the block ending in time, so nothing is
    recorded for it until the resumed run leaves it (SPEC.md 4.1: the deadline starts again)."""
    ctx = W.pause_in_scope.run()
    assert ctx.status == "paused" and observations(ctx) == []
    done = W.pause_in_scope.resume(ctx.execution_id, "yes")
    assert done.output == "reported yes"
    assert observations(done) == [("1", "asyncio.timeout", False)]
    replays_alike(done)


def test_a_call_an_asyncio_timeout_cut_short_does_not_run_again_when_resumed(home: Path) -> None:
    ctx = W.scoped_then_pause.run(30.0)
    assert ctx.status == "paused"
    assert W.BODIES == ["fetch source"]
    done = W.scoped_then_pause.resume(ctx.execution_id, "ok")
    assert done.output == "reported timed out, ok"
    assert W.BODIES == ["fetch source", "report timed out, ok"]  # the cancelled fetch did not run again
    replays_alike(done)


def test_a_task_body_races_live_and_records_nothing(home: Path) -> None:
    ctx = W.download.run([0.1, 0.001])
    assert ctx.output == "mirror 1"
    assert observations(ctx) == []


def test_a_recorded_observation_naming_other_tasks_is_a_divergence(home: Path) -> None:
    ctx = W.in_turn.run([0.05, 0.001, 0.02])
    path = journal_path(ctx)
    lines = path.read_bytes().splitlines(keepends=True)
    seq = next(r["seq"] for r in records(ctx) if r["kind"] == "value_recorded")
    record = orjson.loads(lines[seq])
    del record["crc"]
    record["value"] = ["lane-9"]
    lines[seq] = encode_line(record, seed_for(ctx.execution_id))
    path.write_bytes(b"".join(lines))
    replayed = debug.replay(str(path))
    assert replayed.status == "diverged" and not replayed.matches
    message = replayed.note
    assert message.startswith(f"{path}:{seq + 1}: workflow 'in_turn' asked for asyncio.wait() of ")
    assert "'lane-0', 'lane-1', 'lane-2'" in message and '["lane-9"] done there' in message
    # Resumed from a cut just after it, the run stops there too, writing nothing.
    lines = path.read_bytes().splitlines(keepends=True)[: seq + 1]
    path.write_bytes(b"".join(lines))
    with pytest.raises(NondeterminismError):
        W.in_turn.run(execution_id=ctx.execution_id)
    assert path.read_bytes() == b"".join(lines)


def test_what_cannot_be_made_deterministic_is_refused_with_what_to_do(home: Path) -> None:
    ctx = W.set_of_coroutines.run()
    assert ctx.status == "failed" and isinstance(ctx.output, InvalidOptionError)
    assert "given a set of coroutines" in str(ctx.output) and "pass a list" in str(ctx.output)
    ctx = W.same_names.run()
    assert ctx.status == "failed" and isinstance(ctx.output, InvalidOptionError)
    assert "two tasks named 'lane'" in str(ctx.output)


def test_tasks_made_in_a_workflow_are_named_after_their_branch_unless_named(home: Path) -> None:
    assert W.task_names.run().output == ["1.", "backup"]


def test_observations_are_recorded_and_replayed_the_same_on_postgresql(pg_url: str) -> None:
    empty_pg(pg_url)
    ctx = W.race.run([0.3, 0.001, 0.1], store=pg_url)
    assert ctx.output == {"done": 1, "pending": 2, "report": "reported fast"}
    paused = W.scoped_then_pause.run(30.0, store=pg_url)
    assert paused.status == "paused"
    done = W.scoped_then_pause.resume(paused.execution_id, "ok", store=pg_url)
    assert done.output == "reported timed out, ok"
    assert W.BODIES.count("fetch source") == 1  # not run again by the resume
    for execution_id, expected in ((ctx.execution_id, [("4", "asyncio.wait", ["2."])]),
                                   (done.execution_id, [("1", "asyncio.timeout", True)])):
        kept = [orjson.loads(line) for line in open_store(pg_url).export(execution_id).splitlines()]
        assert [(r["call_id"], r["name"], r["value"]) for r in kept if r["kind"] == "value_recorded"] == expected
        replayed = debug.replay(execution_id, store=pg_url)
        assert replayed.matches, replayed.note
