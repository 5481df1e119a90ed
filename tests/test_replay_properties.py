"""Properties of replay: a crash after any record, resumed, gives the uninterrupted output, and no
task whose completion was recorded runs again; call ids do not depend on completion order."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flux._engine.journal import read_journal
from flux.client import Client
from tests import workflows as W

values = st.integers(min_value=-1000, max_value=1000)
op = st.one_of(
    st.tuples(st.just("seq"), values).map(list),
    st.tuples(st.just("sync"), values).map(list),
    st.tuples(st.just("par"), st.lists(st.lists(values, min_size=1, max_size=3), min_size=1, max_size=3)).map(list),
    st.tuples(st.just("pause"), st.sampled_from(["approve", "review"])).map(list),
    st.tuples(st.just("fail")).map(list),
)
programs = st.lists(op, min_size=1, max_size=6)

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def run_to_end(execution_id: str | None, program: list[Any], home: Path) -> Any:
    """Runs (or continues) an execution, resuming every pause with its name, until it ends. A
    journal cut right after a pause is a paused execution: `run(execution_id=...)` would answer
    its pause with None (as in Flux), so it is resumed like any other pause."""
    if execution_id is None:
        ctx = W.program.run(program, store=str(home), durability="os")
    else:
        ctx = Client(str(home)).context(execution_id)
        if not ctx.is_paused:
            ctx = W.program.run(execution_id=execution_id, store=str(home), durability="os")
    while ctx.is_paused:
        waiting = ctx.events[-1].value
        ctx = W.program.resume(ctx.execution_id, f"go-{waiting}", store=str(home), durability="os")
    assert ctx.has_succeeded, ctx.output
    return ctx


def completed_tags(records: list[dict[str, Any]]) -> list[Any]:
    started = {r["call_id"]: r for r in records if r["kind"] == "task_started"}
    return [started[r["call_id"]]["args"][0] for r in records if r["kind"] in ("task_completed", "task_failed")]


@pytest.mark.slow
@SETTINGS
@given(program=programs)
def test_crash_after_any_record_then_resume_gives_the_same_output(program: list[Any], tmp_path_factory: Any) -> None:
    base = tmp_path_factory.mktemp("crash")
    W.DELAYS.clear()
    W.RUNS.clear()
    full = run_to_end(None, program, base / "full")
    expected = full.output
    path = base / "full" / "executions" / f"{full.execution_id}.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    for k in range(1, len(lines)):
        home = base / f"cut{k}"
        (home / "executions").mkdir(parents=True)
        cut = home / "executions" / path.name
        cut.write_bytes(b"".join(lines[:k]))
        done_before = completed_tags(read_journal(str(cut), full.execution_id).records)
        W.RUNS.clear()
        resumed = run_to_end(full.execution_id, program, home)
        assert resumed.output == expected, f"cut after {k} records"
        again = set(W.RUNS) & set(done_before)
        assert not again, f"cut after {k} records: completed tasks ran again: {sorted(map(str, again))}"
        shutil.rmtree(home)


@SETTINGS
@given(
    lanes=st.lists(st.lists(values, min_size=1, max_size=4), min_size=2, max_size=5),
    seed_live=st.integers(0, 2**32 - 1),
    seed_replay=st.integers(0, 2**32 - 1),
)
def test_fan_out_with_random_delays_replays_to_the_same_output(
    lanes: list[list[int]], seed_live: int, seed_replay: int, tmp_path_factory: Any
) -> None:
    home = tmp_path_factory.mktemp("fan")
    program = [["par", lanes], ["pause", "end"], ["seq", 1]]
    tags = [f"p0.{j}.{i}" for j, lane in enumerate(lanes) for i in range(len(lane))]
    W.random_delays(seed_live, tags)
    W.RUNS.clear()
    first = W.program.run(program, store=str(home), durability="os")
    assert first.is_paused
    live_order = list(W.RUNS)
    # Replay with other delays: every recorded result is at hand at once, so the order in which
    # lanes reach their next call differs from the live run; the call ids must not.
    W.random_delays(seed_replay, tags)
    W.RUNS.clear()
    done = W.program.resume(first.execution_id, "x", store=str(home), durability="os")
    assert done.has_succeeded, done.output
    assert W.RUNS == ["s2"]
    expected = [[_lane_total(lane) for lane in lanes], "x", 3]
    assert done.output == expected
    assert sorted(live_order) == sorted(tags)


def _lane_total(lane: list[int]) -> int:
    total = 0
    for v in lane:
        total += (v + total) * 2 + 1
    return total


def test_call_ids_come_from_program_structure(tmp_path: Path) -> None:
    """Lane 2 finishing first must not give its second call a smaller id than lane 1's."""
    W.DELAYS.clear()
    W.DELAYS.update({"p0.0.0": 0.03, "p0.1.0": 0.0})
    ctx = W.program.run([["par", [[1, 2], [3, 4]]]], store=str(tmp_path), durability="os")
    started = {r["args"][0]: r["call_id"] for r in ctx._records if r["kind"] == "task_started"}
    assert started == {"p0.0.0": "1.1", "p0.0.1": "1.2", "p0.1.0": "2.1", "p0.1.1": "2.2"}
    order = [r["args"][0] for r in ctx._records if r["kind"] == "task_started"]
    assert order.index("p0.1.1") < order.index("p0.0.1")  # lane 2 really went first
    W.DELAYS.clear()


def test_journal_files_are_private(tmp_path: Path) -> None:
    ctx = W.program.run([["seq", 1]], store=str(tmp_path / "h"))
    path = Path(ctx.journal_path)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(path.parent).st_mode & 0o777) == "0o700"
