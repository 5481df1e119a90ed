"""`Graph` in process: independent nodes run concurrently and join, edge conditions choose the
path, several end nodes, invalid graphs refused naming the node, and a run cut after any record
resuming without running a completed node again (the real SIGKILL test is in
tests/test_builtins_crash.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, task, workflow
from flux.tasks import Graph, GraphError
from tests.builtin_workflows import INFLIGHT, LOG, assert_every_cut_resumes, ran, reset
from tests.support.journals import kinds, records, started


@pytest.fixture(autouse=True)
def _reset() -> None:
    reset()


@task
async def node_task(label: str, x: Any) -> Any:
    ran()
    LOG.append(f"start:{label}")
    INFLIGHT["now"] += 1
    INFLIGHT["peak"] = max(INFLIGHT["peak"], INFLIGHT["now"])
    try:
        await asyncio.sleep(0.02 if label in ("b", "c") else 0)
    finally:
        INFLIGHT["now"] -= 1
    LOG.append(f"end:{label}")
    if label == "a":
        return x + 1
    if label == "b":
        return x * 10
    if label == "c":
        return x * 100
    return x


def _node(label: str) -> Any:
    async def action(*xs: Any) -> Any:
        return await node_task(label, xs[0] if len(xs) == 1 else list(xs))

    return action


def diamond() -> Graph:
    return (
        Graph("diamond")
        .add_node("a", _node("a")).add_node("b", _node("b")).add_node("c", _node("c")).add_node("d", _node("d"))
        .add_edge("a", "b").add_edge("a", "c").add_edge("b", "d").add_edge("c", "d")
        .start_with("a").end_with("d")
    )


@workflow
async def diamond_flow(ctx: ExecutionContext[int]) -> Any:
    return await diamond()(ctx.input)


def test_graph_runs_independent_nodes_concurrently_and_joins_their_results(home: Path) -> None:
    ctx = diamond_flow.run(1)
    assert ctx.output == [20, 200]
    assert INFLIGHT["peak"] == 2  # b and c overlapped
    assert LOG[0:2] == ["start:a", "end:a"] and LOG[-2:] == ["start:d", "end:d"]
    assert set(LOG[2:4]) == {"start:b", "start:c"}  # both started before either ended
    # The start node got the input, b and c the result of a, the join node one argument per
    # incoming edge, in the order the edges were added.
    assert sorted(started(ctx)) == [
        'node_task("a",1)', 'node_task("b",2)', 'node_task("c",2)', 'node_task("d",[20,200])',
    ]


def test_graph_cut_after_any_record_resumes_without_running_a_completed_node(home: Path) -> None:
    assert assert_every_cut_resumes(diamond_flow, 1, [20, 200]) == 10


@workflow
async def routed(ctx: ExecutionContext[int]) -> Any:
    graph = (
        Graph("route")
        .add_node("a", _node("a")).add_node("b", _node("b")).add_node("c", _node("c"))
        .add_edge("a", "b", condition=lambda r: r > 5)
        .add_edge("a", "c", condition=lambda r: r <= 5)
        .start_with("a").end_with("b").end_with("c")
    )
    return await graph(ctx.input)


def test_graph_edge_conditions_choose_the_path_and_skip_the_other(home: Path) -> None:
    low = routed.run(1)
    assert low.output == 200 and "start:b" not in LOG
    LOG.clear()
    high = routed.run(10)
    assert high.output == 110 and "start:c" not in LOG
    assert [r["args"][0] for r in records(high) if r["kind"] == "task_started"] == ["a", "b"]


@workflow
async def two_ends(ctx: ExecutionContext[int]) -> Any:
    graph = (
        Graph("fork")
        .add_node("a", _node("a")).add_node("b", _node("b")).add_node("c", _node("c"))
        .add_edge("a", "b").add_edge("a", "c").start_with("a").end_with("b").end_with("c")
    )
    return await graph(ctx.input)


def test_graph_with_several_end_nodes_returns_a_dict_by_name(home: Path) -> None:
    assert two_ends.run(2).output == {"b": 30, "c": 300}


async def _noop(x: Any) -> Any:
    return x


def _graph(*edges: tuple[str, str], nodes: str = "abc", start: str | None = "a", end: str | None = "c") -> Graph:
    graph = Graph("g")
    for name in nodes:
        graph.add_node(name, _noop)
    for source, target in edges:
        graph.add_edge(source, target)
    if start is not None:
        graph.start_with(start)
    if end is not None:
        graph.end_with(end)
    return graph


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: _graph(("a", "b"), ("b", "c"), ("c", "b")), "graph 'g' has a cycle through node 'b': b -> c -> b"),
        (lambda: _graph(("a", "b"), ("b", "b"), ("b", "c")), "graph 'g' has a cycle through node 'b': b -> b"),
        (lambda: _graph(("a", "c"), nodes="abc"), "node 'b' cannot be reached from start node 'a'"),
        (lambda: _graph(("a", "b"), ("b", "c"), start=None), "graph 'g' has no start node; call start_with(name)"),
        (lambda: _graph(("a", "b"), ("b", "c"), end=None), "graph 'g' has no end node; call end_with(name)"),
        (lambda: _graph(("a", "b"), ("b", "c"), start="zz"), "node 'zz' is used as start or end but was never added"),
        (lambda: _graph(("a", "b"), ("b", "ghost")), "edge 'b' -> 'ghost' names unknown node 'ghost'"),
        (lambda: _graph(("a", "b"), ("b", "c"), ("c", "a")), "start node 'a' has an incoming edge from 'c'"),
    ],
    ids=["cycle", "self-loop", "unreachable", "no-start", "no-end", "unknown-start", "unknown-edge", "into-start"],
)
def test_invalid_graphs_are_refused_with_a_message_naming_the_node(build: Any, message: str) -> None:
    with pytest.raises(GraphError) as info:
        build().validate()
    assert message in str(info.value)


def test_a_node_added_twice_is_refused_naming_it() -> None:
    with pytest.raises(GraphError, match="node 'a' is added twice"):
        Graph("g").add_node("a", _noop).add_node("a", _noop)


@workflow
async def broken_graph(ctx: ExecutionContext[int]) -> Any:
    graph = (
        Graph("broken").add_node("a", _node("a")).add_node("orphan", _node("b")).start_with("a").end_with("a")
    )
    return await graph(ctx.input)


def test_awaiting_an_invalid_graph_fails_the_workflow_before_any_node_runs(home: Path) -> None:
    ctx = broken_graph.run(1)
    assert ctx.status == "failed"
    assert isinstance(ctx.output, GraphError) and "node 'orphan' cannot be reached" in str(ctx.output)
    assert LOG == [] and kinds(ctx) == ["workflow_started", "workflow_failed"]
