"""Sub-workflows through `call`: a child runs in its own journal linked to its parent both ways,
is found by name, fails or pauses its parent, and a parent cut while its child ran resumes both
without running a completed task again (the real SIGKILL test is in
tests/test_builtins_crash.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, workflow
from flux.errors import ExecutionError
from flux.tasks import call, pause
from tests.builtin_workflows import RAN, child_step, fails, kid, reset
from tests.support.journals import cut_after, kinds, records


@pytest.fixture(autouse=True)
def _reset() -> None:
    reset()


@workflow
async def kid_fails(ctx: ExecutionContext[int]) -> int:
    await fails(ctx.input)
    return 0


@workflow
async def kid_pauses(ctx: ExecutionContext[int]) -> Any:
    return await pause("inside")


@workflow
async def parent(ctx: ExecutionContext[int]) -> list[int]:
    first = await child_step(ctx.input)
    child = await call(kid, first)
    last = await child_step(child)
    return [first, child, last]


@workflow
async def parent_by_name(ctx: ExecutionContext[int]) -> int:
    return await call("kid", ctx.input)


@workflow
async def parent_of_failure(ctx: ExecutionContext[int]) -> str:
    try:
        await call(kid_fails, ctx.input)
    except ExecutionError as err:
        return f"{type(err.inner_exception).__name__}: {err.inner_exception}"
    return "no failure"


@workflow
async def parent_of_pause(ctx: ExecutionContext[int]) -> Any:
    return await call(kid_pauses, ctx.input)


def _child_journal(home: Path, execution_id: str) -> list[dict[str, Any]]:
    return records(home / "executions" / f"{execution_id}.jsonl")


def test_call_runs_a_sub_workflow_in_its_own_journal_linked_both_ways(home: Path) -> None:
    ctx = parent.run(1)
    assert ctx.output == [11, 52, 62]  # kid(11): 21 + 31
    started = [r for r in records(ctx) if r["kind"] == "task_started"]
    assert [(r["call_id"], r["name"]) for r in started] == [("1", "child_step"), ("2", "kid"), ("3", "child_step")]
    child_id = f"{ctx.execution_id}-2"
    assert started[1]["child"] == child_id and "child" not in started[0]
    child = _child_journal(home, child_id)
    assert child[0]["workflow"] == "kid" and child[0]["input"] == 11
    assert child[0]["parent"] == {"execution_id": ctx.execution_id, "call_id": "2"}
    assert [r["kind"] for r in child[1:]] == [
        "workflow_started", "task_started", "task_completed", "task_started", "task_completed", "workflow_completed",
    ]
    assert RAN == [f"{ctx.execution_id}:1", f"{child_id}:1", f"{child_id}:2", f"{ctx.execution_id}:3"]


def test_call_finds_a_workflow_by_name_in_the_callers_module(home: Path) -> None:
    assert parent_by_name.run(5).output == 40


def test_a_failing_child_fails_the_call_with_its_exception(home: Path) -> None:
    ctx = parent_of_failure.run(7)
    # The child failed with the ExecutionError of its failed task; the call raises that same
    # ExecutionError, not one wrapped around it.
    assert ctx.output == "ValueError: no 7"
    assert kinds(ctx) == ["workflow_started", "task_started", "task_failed", "workflow_completed"]
    assert _child_journal(home, f"{ctx.execution_id}-1")[-1]["kind"] == "workflow_failed"


def test_a_child_that_pauses_pauses_its_parent_and_resuming_the_parent_answers_it(home: Path) -> None:
    from flux.client import Client

    ctx = parent_of_pause.run(1)
    assert ctx.status == "paused"
    child_id = f"{ctx.execution_id}-1"
    # The parent's journal says it waits in the child; the pause is listed from the parent.
    assert records(ctx)[-1]["kind"] == "workflow_suspended"
    assert records(ctx)[-1]["waiting"] == [{"call_id": "1", "child": child_id}]
    waiting = Client(str(home)).view(ctx.execution_id).waiting
    assert [(w.name, w.execution_id, w.route) for w in waiting] == [("inside", child_id, ("1", "1"))]
    done = parent_of_pause.resume(ctx.execution_id, "the answer")
    assert done.status == "completed" and done.output == "the answer"
    child = _child_journal(home, child_id)
    assert child[-1]["kind"] == "workflow_completed"
    resumed = [r for r in child if r["kind"] == "workflow_resumed"]
    assert resumed[0]["call_id"] == "1" and resumed[0]["input"] == "the answer"


def test_a_pause_inside_a_child_is_not_left_to_the_workers_but_answered_where_it_runs(home: Path) -> None:
    """`flux resume --detach` records the answer in the execution's own journal only: one that
    must reach a child's journal is refused, saying what to do, and nothing is written."""
    from flux import runner
    from flux.errors import ExecutionStateError

    ctx = parent_of_pause.run(1)
    before = Path(ctx.journal_path).read_bytes()
    with pytest.raises(ExecutionStateError, match=r"inside the sub-workflow called at 1: resume it here"):
        runner.hand_off_resume(ctx.execution_id, "the answer", store=str(home))
    assert Path(ctx.journal_path).read_bytes() == before
    assert parent_of_pause.resume(ctx.execution_id, "the answer").output == "the answer"


def test_a_parent_cut_while_the_child_ran_resumes_both_without_running_a_completed_task(home: Path) -> None:
    first = parent.run(1)
    child_id = f"{first.execution_id}-2"
    parent_path = Path(first.journal_path)
    child_path = home / "executions" / f"{child_id}.jsonl"
    whole_child = child_path.read_bytes()
    # The parent died after starting the child's call; the child had finished its first task.
    cut_after(parent_path, lambda r: "child" in r)
    cut_parent = parent_path.read_bytes()
    child_cut = cut_after(child_path, kind="task_completed")
    RAN.clear()
    resumed = parent.run(execution_id=first.execution_id)
    assert resumed.output == [11, 52, 62]
    assert RAN == [f"{child_id}:2", f"{first.execution_id}:3"]
    child = _child_journal(home, child_id)
    assert [r["kind"] for r in child].count("task_started") == 2
    assert child[child_cut]["kind"] == "workflow_resumed" and child[-1]["kind"] == "workflow_completed"
    # And when the child had finished but the parent had not recorded it, nothing runs in the child.
    child_path.write_bytes(whole_child)
    parent_path.write_bytes(cut_parent)
    RAN.clear()
    assert parent.run(execution_id=first.execution_id).output == [11, 52, 62]
    assert RAN == [f"{first.execution_id}:3"]
