"""Flux's built-ins as its documentation uses them: Graph, parallel, call, choice, now,
progress."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, ExecutionEventType, task, workflow
from flux.clock import VirtualClock
from flux.errors import WorkflowNotFoundError
from flux.tasks import Graph, call, choice, now, parallel, progress
from tests.support.journals import records


@task
async def get_name(input: str) -> str:
    return f"name:{input}"


@task
async def say_hello(name: str) -> str:
    return f"Hello, {name}"


@task
async def join(a: str, b: str) -> str:
    return f"{a} & {b}"


async def is_long(value: str) -> bool:  # an async edge condition
    return len(value) > 10


@workflow
async def graph_flow(ctx: ExecutionContext[str]) -> Any:
    hello = (
        Graph("hello_world")
        .add_node("get_name", get_name)
        .add_node("say_hello", say_hello)
        .add_node("shout", say_hello)
        .add_node("join", join)
        .add_edge("get_name", "say_hello")
        .add_edge("get_name", "shout", condition=is_long)
        .add_edge("say_hello", "join")
        .add_edge("shout", "join")
        .start_with("get_name")
        .end_with("join")
    )
    return await hello(ctx.input)


def test_graph_hands_each_upstream_result_as_a_positional_argument_in_edge_order(home: Path) -> None:
    assert graph_flow.run("Joe Bloggs").output == "Hello, name:Joe Bloggs & Hello, name:Joe Bloggs"


def test_graph_whose_end_is_never_reached_gives_none(home: Path) -> None:
    assert graph_flow.run("Jo").output is None  # shout is skipped by its async condition, so is join


def test_graph_validate_and_start_end() -> None:
    graph = Graph("g").add_node("a", get_name).add_edge(Graph.START.name, "a").add_edge("a", Graph.END.name)
    assert graph.validate() is graph
    with pytest.raises(ValueError, match="has no end node"):
        Graph("g").add_node("a", get_name).start_with("a").validate()


@task
async def risky(n: int) -> int:
    if n == 2:
        raise ValueError("two")
    return n * 10


@workflow
async def tolerant(ctx: ExecutionContext[None]) -> list[int | None]:
    return await parallel(risky(1), risky(2), risky(3), raise_on_error=False)


@workflow
async def strict(ctx: ExecutionContext[None]) -> list[int | None]:
    return await parallel(risky(1), risky(2), risky(3))


def test_parallel_raise_on_error(home: Path) -> None:
    ctx = tolerant.run()
    assert ctx.output == [10, None, 30]
    assert [r["kind"] for r in records(ctx)].count("task_failed") == 1  # the failure is still recorded
    assert strict.run().has_failed


@workflow
async def child_sum(ctx: ExecutionContext[Any]) -> int:
    return sum(ctx.input) if isinstance(ctx.input, tuple) else ctx.input


@workflow.with_options(namespace="maths")
async def child_double(ctx: ExecutionContext[int]) -> int:
    return ctx.input * 2


@workflow
async def caller(ctx: ExecutionContext[None]) -> list[Any]:
    return [
        await call(child_sum, 5),
        await call(child_sum, 1, 2, 3),
        await call("maths/child_double", 4),
        await call("child_sum", 7),
    ]


@workflow
async def calls_nothing(ctx: ExecutionContext[None]) -> Any:
    return await call("no_such_workflow", 1)


def test_call_takes_the_input_as_arguments_and_finds_workflows_by_name(home: Path) -> None:
    assert caller.run().output == [5, 6, 8, 7]
    ctx = calls_nothing.run()
    assert isinstance(ctx.output, WorkflowNotFoundError) and "no_such_workflow" in str(ctx.output)


@workflow
async def picks(ctx: ExecutionContext[None]) -> Any:
    return [await choice(options=["a", "b", "c"]), await now()]


def test_choice_takes_options_and_now_returns_a_naive_local_time(home: Path) -> None:
    ctx = picks.run(clock=VirtualClock(start=1_800_000_000.0))
    chosen, when = ctx.output
    assert chosen in ("a", "b", "c")
    assert when == dt.datetime.fromtimestamp(1_800_000_000.0) and when.tzinfo is None
    assert picks.run(execution_id=ctx.execution_id).output == ctx.output


@task
async def long_job(steps: int) -> int:
    for i in range(steps):
        await progress({"step": i + 1, "of": steps})
    return steps


HEARD: list[Any] = []


@workflow
async def reports(ctx: ExecutionContext[int]) -> int:
    ctx.set_progress_callback(lambda execution_id, task_id, name, value: HEARD.append((task_id, name, value)))
    return await long_job(ctx.input)


def test_progress_reaches_the_progress_callback_and_is_never_recorded(home: Path) -> None:
    HEARD.clear()
    ctx = reports.run(2)
    assert HEARD == [("1", "long_job", {"step": 1, "of": 2}), ("1", "long_job", {"step": 2, "of": 2})]
    assert ExecutionEventType.TASK_PROGRESS not in [e.type for e in ctx.events]
    assert all(r["kind"] != "task_progress" for r in records(ctx))
