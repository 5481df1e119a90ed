"""`parallel`, `pipeline` and `some_task.map` in process: results in the order given, the
concurrency bound, a failure cancelling the other calls, exact records and events, call ids that
replay, and a run cut after any record resuming without running a completed call again (the real
SIGKILL tests are in tests/test_builtins_crash.py)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import warnings
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, task, workflow
from flux.errors import ExecutionError, InvalidOptionError, NondeterminismError
from flux.tasks import Graph, parallel, pause, pipeline
from tests.builtin_workflows import (
    INFLIGHT,
    LOG,
    assert_every_cut_resumes,
    double,
    fails,
    hang,
    inc,
    piped,
    ran,
    reset,
)
from tests.support.journals import completed, events, journal_path, kinds, labels, records, started


@pytest.fixture(autouse=True)
def _reset() -> None:
    reset()


@task
async def square(x: int, delay: float = 0.0) -> int:
    ran()
    LOG.append(f"start:{x}")
    INFLIGHT["now"] += 1
    INFLIGHT["peak"] = max(INFLIGHT["peak"], INFLIGHT["now"])
    try:
        await asyncio.sleep(delay)
    finally:
        INFLIGHT["now"] -= 1
    LOG.append(f"end:{x}")
    return x * x


@workflow
async def fan_out(ctx: ExecutionContext[list[float]]) -> list[int]:
    return await parallel(*(square(i, d) for i, d in enumerate(ctx.input)))


@workflow
async def limited(ctx: ExecutionContext[int]) -> list[int]:
    return await parallel(*(square(i, 0.005) for i in range(6)), max_concurrent=ctx.input)


@workflow
async def fan_out_fails(ctx: ExecutionContext[None]) -> str:
    try:
        await parallel(hang(1), fails(2), hang(3))
    except ExecutionError as err:
        return f"{type(err.inner_exception).__name__}: {err.inner_exception}"
    return "no failure"


def test_parallel_returns_results_in_the_order_given_whatever_finished_first(home: Path) -> None:
    ctx = fan_out.run([0.03, 0.02, 0.01, 0.0])
    assert ctx.output == [0, 1, 4, 9]
    assert started(ctx) == ["square(0,0.03)", "square(1,0.02)", "square(2,0.01)", "square(3,0.0)"]
    # The last one finished first: the order of results is not the order of completion.
    assert completed(ctx) == ["square(3,0.0)", "square(2,0.01)", "square(1,0.02)", "square(0,0.03)"]
    assert len(labels(ctx)) == 4  # four distinct call ids
    assert INFLIGHT["peak"] == 4


def test_parallel_max_concurrent_bounds_the_running_bodies(home: Path) -> None:
    ctx = limited.run(2)
    assert ctx.output == [0, 1, 4, 9, 16, 25]
    assert INFLIGHT["peak"] == 2
    assert started(ctx) == [f"square({i},0.005)" for i in range(6)]


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2"])
def test_parallel_refuses_a_bad_max_concurrent(value: Any) -> None:
    with pytest.raises(InvalidOptionError, match=f"max_concurrent={value!r} must be an int >= 1"):
        asyncio.run(parallel(max_concurrent=value))


def test_a_failure_fails_parallel_and_the_others_are_cancelled_and_recorded_as_such(home: Path) -> None:
    ctx = fan_out_fails.run()
    assert ctx.status == "completed"
    assert ctx.output == "ValueError: no 2"
    assert sorted(LOG) == ["fail:2", "start:1", "start:3"]  # neither hanging body went on
    assert events(ctx) == [
        ("WORKFLOW_STARTED", "wf"),
        ("TASK_STARTED", "hang(1)"),
        ("TASK_STARTED", "fails(2)"),
        ("TASK_STARTED", "hang(3)"),
        ("TASK_FAILED", "fails(2)"),
        ("TASK_CANCELLED", "hang(1)"),
        ("TASK_CANCELLED", "hang(3)"),
        ("WORKFLOW_COMPLETED", "wf"),
    ]


@workflow
async def fails_first_one_at_a_time(ctx: ExecutionContext[None]) -> str:
    try:
        await parallel(fails(1), hang(2), hang(3), max_concurrent=1)
    except ExecutionError as err:
        return str(err.inner_exception)
    return "no failure"


def test_with_max_concurrent_nothing_starts_after_a_failure(home: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ctx = fails_first_one_at_a_time.run()
        gc.collect()
    assert ctx.output == "no 1"
    assert LOG == ["fail:1"]
    assert events(ctx) == [
        ("WORKFLOW_STARTED", "wf"),
        ("TASK_STARTED", "fails(1)"),
        ("TASK_FAILED", "fails(1)"),
        ("WORKFLOW_COMPLETED", "wf"),
    ]
    assert not [w for w in caught if "never awaited" in str(w.message)]


@workflow
async def fails_then_waits(ctx: ExecutionContext[None]) -> Any:
    try:
        await parallel(hang(1), fails(2), hang(3))
    except ExecutionError:
        pass
    return await pause("after")


def test_replaying_a_failed_parallel_does_not_start_the_cancelled_bodies_again(home: Path) -> None:
    first = fails_then_waits.run()
    assert first.status == "paused"
    assert sorted(LOG) == ["fail:2", "start:1", "start:3"]
    LOG.clear()
    done = fails_then_waits.resume(first.execution_id, "go")
    assert done.output == "go"
    assert LOG == []
    assert kinds(done).count("task_cancelled") == 2


@task
async def wait_for(tag: str, delay: float) -> str:
    await asyncio.sleep(delay)
    return tag


async def _after(delay: float, call: Any) -> Any:
    await wait_for("w", delay)
    return await call


@workflow
async def late_calls(ctx: ExecutionContext[None]) -> Any:
    out = await parallel(_after(0.03, double(1)), _after(0.0, double(2)))
    return [out, await pause("p")]


def test_a_call_awaited_in_a_lane_after_another_task_keeps_its_call_id_on_replay(home: Path) -> None:
    first = late_calls.run()
    assert first.status == "paused"
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            output = late_calls.resume(first.execution_id, "go").output
        except NondeterminismError as err:
            output = f"NondeterminismError: {err}"
        gc.collect()
    assert output == [[2, 4], "go"]


def test_pipeline_hands_each_step_the_previous_result(home: Path) -> None:
    ctx = piped.run(3)
    assert ctx.output == "<9>"
    started = [r for r in records(ctx) if r["kind"] == "task_started"]
    assert [(r["call_id"], r["name"], r["args"]) for r in started] == [
        ("1", "inc", [3]),
        ("2", "double", [4]),
        ("3", "inc", [8]),
        ("4", "describe", [9]),
    ]


def test_pipeline_cut_after_any_record_resumes_without_running_a_completed_step(home: Path) -> None:
    assert assert_every_cut_resumes(piped, 3, "<9>") == 10


@workflow
async def mapped(ctx: ExecutionContext[list[int]]) -> list[int]:
    return await square.map(ctx.input)


def test_map_makes_one_call_per_item_concurrently_with_results_in_order(home: Path) -> None:
    ctx = mapped.run([3, 1, 2])
    assert ctx.output == [9, 1, 4]
    assert started(ctx) == ["square(3)", "square(1)", "square(2)"] and len(labels(ctx)) == 3
    # Every call started before any finished.
    assert kinds(ctx)[:4] == ["workflow_started", "task_started", "task_started", "task_started"]
    assert mapped.run([]).output == []


def test_parallel_and_map_cut_after_any_record_resume_without_running_a_completed_call(home: Path) -> None:
    assert assert_every_cut_resumes(fan_out, [0.002, 0.0, 0.001], [0, 1, 4]) == 8
    assert assert_every_cut_resumes(mapped, [5, 4, 3, 2], [25, 16, 9, 4]) == 10


@workflow
async def sourced(ctx: ExecutionContext[None]) -> list[Any]:
    graph = Graph("g").add_node("a", inc).add_node("b", double).add_edge("a", "b").start_with("a").end_with("b")
    return [await pipeline(inc, double, input=1), await inc.map([1, 2]), await graph(1)]


def test_calls_made_by_pipeline_map_and_graph_point_at_the_workflows_line(home: Path) -> None:
    ctx = sourced.run()
    assert ctx.output == [4, [2, 3], 4]
    sources = {r["src"].rpartition(":")[0] for r in records(ctx) if r["kind"] == "task_started"}
    assert sources == {"test_parallel.py"}


@task
async def where(i: int) -> int:
    return i


async def _helper_call(i: int) -> int:
    return await where(i)  # SITE-HELPER


@workflow
async def sited(ctx: ExecutionContext[None]) -> int:
    total = 0
    for i in range(3):
        total += await where(i)  # SITE-LOOP
    total += await where(10)  # SITE-AFTER
    total += await _helper_call(20)
    return total + sum(await asyncio.gather(where(30), where(31)))  # SITE-GATHER


def test_each_call_names_its_own_line_however_often_it_is_reached(home: Path) -> None:
    lines = Path(__file__).read_text().splitlines()

    def line_of(mark: str) -> str:
        return f"test_parallel.py:{next(n for n, text in enumerate(lines, 1) if text.endswith(mark))}"

    for _ in range(2):  # the second run finds each site known
        ctx = sited.run()
        assert ctx.output == 3 + 10 + 20 + 61
        sites = [r["src"] for r in records(ctx) if r["kind"] == "task_started"]
        loop, after, helper, gather = (line_of(f"# SITE-{m}") for m in ("LOOP", "AFTER", "HELPER", "GATHER"))
        assert sites == [loop, loop, loop, after, helper, gather, gather]


# -- asyncio.TaskGroup: what unwinds a run (a pause, the end of a replay) unwinds it inside one too


@workflow
async def grouped_approval(ctx: ExecutionContext[int]) -> int:
    async with asyncio.TaskGroup() as group:
        squared = group.create_task(square(ctx.input))
        answer = group.create_task(pause("approve"))
        other = group.create_task(pause("second look"))
    return squared.result() + answer.result() + other.result()


def test_pauses_inside_a_task_group_end_the_run_paused_and_each_gets_its_answer(home: Path) -> None:
    """The pauses unwind their branches; the TaskGroup gathers that into an exception group,
    which ends the run paused as a lone pause would, not as a crash."""
    ctx = grouped_approval.run(3)
    assert ctx.status == "paused", ctx.status
    assert kinds(ctx)[-2:] == ["workflow_paused", "workflow_paused"]
    ctx = grouped_approval.resume(ctx.execution_id, 10, pause="approve")
    assert ctx.status == "paused"  # the second look still waits
    ctx = grouped_approval.resume(ctx.execution_id, 100, pause="second look")
    assert ctx.status == "completed" and ctx.output == 9 + 10 + 100
    assert LOG.count("start:3") == 1  # the body ran once, and replayed on each resume
    from flux import debug

    replayed = debug.replay(str(journal_path(ctx)))
    assert replayed.matches and replayed.status == "completed" and replayed.call_count == 3


def test_a_replay_of_a_run_paused_inside_a_task_group_stops_at_the_journals_end(home: Path) -> None:
    from flux import debug

    ctx = grouped_approval.run(4)
    replayed = debug.replay(str(journal_path(ctx)))
    assert replayed.matches, replayed.note
    assert replayed.recorded_status == "paused" and replayed.call_count == 3


@workflow
async def grouped_failure(ctx: ExecutionContext[None]) -> str:
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(pause("never answered"))
            group.create_task(fails(1))
    except ExceptionGroup as caught:
        return f"caught {[type(e).__name__ for e in caught.exceptions]}"
    return "no failure"


@workflow
async def parallel_failure(ctx: ExecutionContext[None]) -> str:
    try:
        await parallel(pause("never answered"), fails(1))
    except ExecutionError as err:
        return f"caught {type(err.inner_exception).__name__}"
    return "no failure"


@pytest.mark.parametrize("flow", [grouped_failure, parallel_failure], ids=["TaskGroup", "parallel"])
def test_a_sibling_failure_cancels_a_pause_which_is_then_never_recorded(home: Path, flow: Any) -> None:
    """The failure aborts the branch waiting at the pause; the engine must not take that branch
    (its wait cancelled, its wake-up queued) for one still waiting, end the run paused and record
    the pause (SPEC.md 4.5)."""
    ctx = flow.run(None)
    assert ctx.status == "completed" and ctx.output in ("caught ['ExecutionError']", "caught ValueError"), ctx.output
    assert "workflow_paused" not in kinds(ctx)


@workflow
async def built_ins_as_tasks(ctx: ExecutionContext[None]) -> list[Any]:
    from flux.tasks import now, sleep, uuid4

    gathered = await asyncio.gather(now(), uuid4(), sleep(0))  # LINE-GATHER
    async with asyncio.TaskGroup() as group:
        paused = group.create_task(pause("approve"))  # LINE-GROUP
    done = await parallel(sleep(0), now(), raise_on_error=False)  # LINE-PARALLEL
    return [len(gathered), paused.result(), len(done)]


def _line_of(marker: str) -> str:
    lines = Path(__file__).read_text().splitlines()
    return f"test_parallel.py:{next(i for i, line in enumerate(lines, 1) if line.endswith(f'# {marker}'))}"


def test_built_ins_made_into_tasks_of_their_own_name_the_line_that_made_them(home: Path) -> None:
    """`gather(now())`, `create_task(pause(...))`: the built-in runs under the event loop, far
    from the workflow's line; its record still names that line, as a direct await's does."""
    ctx = built_ins_as_tasks.run(None)
    assert ctx.status == "paused"
    ctx = built_ins_as_tasks.resume(ctx.execution_id, "yes")
    assert ctx.output == [3, "yes", 2]
    sources = [(r["kind"], r.get("name"), r["src"]) for r in records(ctx) if "src" in r]
    gather, group, par = _line_of("LINE-GATHER"), _line_of("LINE-GROUP"), _line_of("LINE-PARALLEL")
    assert sources == [
        ("value_recorded", "now", gather),
        ("value_recorded", "uuid4", gather),
        ("timer_started", "sleep", gather),
        ("workflow_paused", "approve", group),
        ("timer_started", "sleep", par),
        ("value_recorded", "now", par),
    ], sources


_WHO: contextvars.ContextVar[int] = contextvars.ContextVar("who", default=-1)


@task
async def bounded_body(i: int, limit: float) -> list[Any]:
    """Plain asyncio in a task body: a timeout (which needs the task it runs in), the task
    itself, and a context variable set before the first await."""
    _WHO.set(i)
    me = asyncio.current_task()
    async with asyncio.timeout(limit):
        await asyncio.sleep(0.001 if i % 2 else 0)
        if i == 0:
            await asyncio.sleep(10)  # the timeout ends it
    return [asyncio.current_task() is me and me is not None, _WHO.get()]


@workflow
async def gathered_bodies(ctx: ExecutionContext[int]) -> list[Any]:
    return await asyncio.gather(
        *(bounded_body(i, 0.05) for i in range(ctx.input)), return_exceptions=True
    )


def test_each_gathered_body_is_a_task_of_its_own_with_its_own_context(home: Path) -> None:
    """Each body of a fan-out runs in an asyncio task of its own, from its first line: an
    `asyncio.timeout` in it cuts that body alone, `current_task()` is the same before and after
    an await, and a context variable set in one body is not seen by another. (Running bodies
    eagerly in a task shared by the batch would fail each of these.)"""
    ctx = gathered_bodies.run(20)
    assert ctx.has_succeeded, ctx.output
    first, *rest = ctx.output
    assert isinstance(first, ExecutionError) and "TimeoutError" in str(first), first
    assert rest == [[True, i] for i in range(1, 20)], rest
    # Replayed, the recorded outcomes come back as they were, the timeout included.
    again = gathered_bodies.run(20, execution_id=ctx.execution_id)
    assert again.has_succeeded and again.output[1:] == rest
