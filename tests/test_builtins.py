"""The built-ins of `flux.tasks` and the task options around them, in process: exact results,
orders, records and events; recorded values equal on replay; durable sleeps and timed pauses on a
VirtualClock; cancellation; secrets kept out of every byte written; output storage; the cache.

Crashes are simulated by cutting the journal after any record and resuming; the real SIGKILL
tests are in tests/test_builtins_crash.py."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gc
import hashlib
import stat
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner

import flux._cli.main
from flux import ExecutionContext, Saga, runner, task, workflow
from flux._cli.main import app
from flux._engine.clock import iso
from flux.clock import VirtualClock
from flux.domain.events import ExecutionEventType as E
from flux.errors import (
    BlobError,
    ExecutionError,
    ExecutionStateError,
    InvalidOptionError,
    NondeterminismError,
    OutsideWorkflowError,
    RecordTooLargeError,
    SecretError,
)
from flux.output_storage import LocalFileStorage
from flux.tasks import (
    Graph,
    GraphError,
    call,
    choice,
    idempotency_key,
    now,
    parallel,
    pause,
    pipeline,
    randint,
    randrange,
    sleep,
    uuid4,
)

ROOT = Path(__file__).resolve().parent.parent

RAN: list[str] = []  # "<execution_id>:<call_id>" of every task body that started
LOG: list[str] = []  # what bodies did, in order
SEEN: list[Any] = []  # what workflow code saw, once per run of the workflow function
INFLIGHT = {"now": 0, "peak": 0}


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()
    LOG.clear()
    SEEN.clear()
    INFLIGHT.update(now=0, peak=0)


def _ran() -> str:
    key = idempotency_key()
    RAN.append(key)
    return key


def _call_ids_ran() -> set[str]:
    return {key.rpartition(":")[2] for key in RAN}


def records(ctx: ExecutionContext[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(ctx.journal_path).read_bytes().splitlines()]


def kinds(ctx: ExecutionContext[Any]) -> list[tuple[str, str]]:
    """(kind, call_id) of every record after the header."""
    return [(r["kind"], r.get("call_id", "")) for r in records(ctx)[1:]]


def labels(ctx: ExecutionContext[Any]) -> dict[str, str]:
    """call_id -> `name(args)` of every task call in the journal."""
    return {
        r["call_id"]: f"{r['name']}({','.join(orjson.dumps(a).decode() for a in r.get('args', []))})"
        for r in records(ctx)
        if r["kind"] == "task_started"
    }


def events(ctx: ExecutionContext[Any]) -> list[tuple[str, str]]:
    """(event type, `name(args)` of the task call or "wf") of every event."""
    named = labels(ctx)
    return [
        (e.type.value, "wf" if e.source_id == ctx.execution_id else named.get(e.source_id, e.source_id))
        for e in ctx.events
    ]


def started(ctx: ExecutionContext[Any]) -> list[str]:
    """`name(args)` of the task calls in the order their task_started records were written."""
    return [labels(ctx)[r["call_id"]] for r in records(ctx) if r["kind"] == "task_started"]


def completed(ctx: ExecutionContext[Any]) -> list[str]:
    return [labels(ctx)[r["call_id"]] for r in records(ctx) if r["kind"] == "task_completed"]


def every_byte_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


def assert_every_cut_resumes(wf: Any, input: Any, expected: Any) -> int:
    """Runs `wf` once, then for every k cuts its journal after k records (a crash there) and
    resumes: the output is the uninterrupted one and no body whose completion was recorded
    before the cut runs again. Returns how many cuts were tried."""
    first = wf.run(input)
    assert first.status == "completed" and first.output == expected
    path = Path(first.journal_path)
    lines = path.read_bytes().splitlines(keepends=True)
    for k in range(1, len(lines)):
        path.write_bytes(b"".join(lines[:k]))
        done = {r["call_id"] for r in map(orjson.loads, lines[:k]) if r["kind"] == "task_completed"}
        RAN.clear()
        again = wf.run(execution_id=first.execution_id)
        assert again.status == "completed" and again.output == expected, (k, again.output)
        assert not _call_ids_ran() & done, f"cut after {k} records: {sorted(_call_ids_ran() & done)} ran again"
    return len(lines) - 1


# -- composition: parallel, pipeline, map -------------------------------------------------------


@task
async def square(x: int, delay: float = 0.0) -> int:
    _ran()
    LOG.append(f"start:{x}")
    INFLIGHT["now"] += 1
    INFLIGHT["peak"] = max(INFLIGHT["peak"], INFLIGHT["now"])
    try:
        await asyncio.sleep(delay)
    finally:
        INFLIGHT["now"] -= 1
    LOG.append(f"end:{x}")
    return x * x


@task
async def hang(x: int) -> None:
    _ran()
    LOG.append(f"start:{x}")
    await asyncio.sleep(60)
    LOG.append(f"end:{x}")


@task
async def fails(x: int) -> None:
    _ran()
    LOG.append(f"fail:{x}")
    raise ValueError(f"no {x}")


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
        ("TASK_STARTED", "hang(1)"), ("TASK_STARTED", "fails(2)"), ("TASK_STARTED", "hang(3)"),
        ("TASK_FAILED", "fails(2)"),
        ("TASK_CANCELLED", "hang(1)"), ("TASK_CANCELLED", "hang(3)"),
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
        ("WORKFLOW_STARTED", "wf"), ("TASK_STARTED", "fails(1)"), ("TASK_FAILED", "fails(1)"),
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
    assert [k for k, _ in kinds(done)].count("task_cancelled") == 2


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


@task
async def inc(x: int) -> int:
    _ran()
    return x + 1


@task
async def double(x: int) -> int:
    _ran()
    return x * 2


@task
async def describe(x: int) -> str:
    _ran()
    return f"<{x}>"


@workflow
async def piped(ctx: ExecutionContext[int]) -> str:
    return await pipeline(inc, double, inc, describe, input=ctx.input)


def test_pipeline_hands_each_step_the_previous_result(home: Path) -> None:
    ctx = piped.run(3)
    assert ctx.output == "<9>"
    started = [r for r in records(ctx) if r["kind"] == "task_started"]
    assert [(r["call_id"], r["name"], r["args"]) for r in started] == [
        ("1", "inc", [3]), ("2", "double", [4]), ("3", "inc", [8]), ("4", "describe", [9]),
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
    assert [k for k, _ in kinds(ctx)][:4] == ["workflow_started", "task_started", "task_started", "task_started"]
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
    assert sources == {"test_builtins.py"}


# -- Graph ----------------------------------------------------------------------------------------


@task
async def node_task(label: str, x: Any) -> Any:
    _ran()
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
    async def action(x: Any) -> Any:
        return await node_task(label, x)

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
    assert ctx.output == {"b": 20, "c": 200}
    assert INFLIGHT["peak"] == 2  # b and c overlapped
    assert LOG[0:2] == ["start:a", "end:a"] and LOG[-2:] == ["start:d", "end:d"]
    assert set(LOG[2:4]) == {"start:b", "start:c"}  # both started before either ended
    # The start node got the input, b and c the result of a, the join node a dict by source name.
    assert sorted(started(ctx)) == [
        'node_task("a",1)', 'node_task("b",2)', 'node_task("c",2)', 'node_task("d",{"b":20,"c":200})',
    ]


def test_graph_cut_after_any_record_resumes_without_running_a_completed_node(home: Path) -> None:
    assert assert_every_cut_resumes(diamond_flow, 1, {"b": 20, "c": 200}) == 10


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
    assert LOG == [] and [k for k, _ in kinds(ctx)] == ["workflow_started", "workflow_failed"]


# -- sub-workflows ----------------------------------------------------------------------------------


@task
async def child_step(x: int) -> int:
    _ran()
    return x + 10


@workflow
async def kid(ctx: ExecutionContext[int]) -> int:
    a = await child_step(ctx.input)
    b = await child_step(a)
    return a + b


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
    path = home / "executions" / f"{execution_id}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


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
    # The child failed with the ExecutionError of its failed task; the call raises it again.
    assert ctx.output == "ExecutionError: ValueError: no 7"
    assert [k for k, _ in kinds(ctx)] == ["workflow_started", "task_started", "task_failed", "workflow_completed"]
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


def test_a_parent_cut_while_the_child_ran_resumes_both_without_running_a_completed_task(home: Path) -> None:
    first = parent.run(1)
    child_id = f"{first.execution_id}-2"
    parent_path = Path(first.journal_path)
    child_path = home / "executions" / f"{child_id}.jsonl"
    parent_lines = parent_path.read_bytes().splitlines(keepends=True)
    child_lines = child_path.read_bytes().splitlines(keepends=True)
    # The parent died after starting the child's call; the child had finished its first task.
    cut = next(i for i, line in enumerate(parent_lines) if b'"child"' in line) + 1
    parent_path.write_bytes(b"".join(parent_lines[:cut]))
    child_cut = next(i for i, line in enumerate(child_lines) if b'"task_completed"' in line) + 1
    child_path.write_bytes(b"".join(child_lines[:child_cut]))
    RAN.clear()
    resumed = parent.run(execution_id=first.execution_id)
    assert resumed.output == [11, 52, 62]
    assert RAN == [f"{child_id}:2", f"{first.execution_id}:3"]
    child = _child_journal(home, child_id)
    assert [r["kind"] for r in child].count("task_started") == 2
    assert child[child_cut]["kind"] == "workflow_resumed" and child[-1]["kind"] == "workflow_completed"
    # And when the child had finished but the parent had not recorded it, nothing runs in the child.
    child_path.write_bytes(b"".join(child_lines))
    parent_path.write_bytes(b"".join(parent_lines[:cut]))
    RAN.clear()
    assert parent.run(execution_id=first.execution_id).output == [11, 52, 62]
    assert RAN == [f"{first.execution_id}:3"]


# -- recorded time and randomness -----------------------------------------------------------------


@workflow
async def chancy(ctx: ExecutionContext[None]) -> Any:
    seen = [
        await now(),
        await uuid4(),
        await randint(1, 10**12),
        await choice(["red", "green", "blue", "cyan", "magenta", "yellow", "black", "white"]),
        await randrange(0, 10**12, 7),
    ]
    SEEN.append(seen)
    answer = await pause("go")
    SEEN.append([await now(), await uuid4()])
    return [answer, *seen]


def test_recorded_values_are_the_same_after_a_pause_and_resume(home: Path) -> None:
    first = chancy.run()
    assert first.status == "paused"
    done = chancy.resume(first.execution_id, "ok")
    before, replayed, after = SEEN
    assert replayed == before  # the replay saw exactly the values the first run saw
    assert done.output == ["ok", *before]
    when, ident, number, colour, ranged = before
    assert isinstance(when, dt.datetime) and when.tzinfo == dt.UTC
    assert isinstance(ident, uuid.UUID) and ident.version == 4
    assert 1 <= number <= 10**12
    assert colour in {"red", "green", "blue", "cyan", "magenta", "yellow", "black", "white"}
    assert ranged % 7 == 0 and 0 <= ranged < 10**12
    values = [r for r in records(done) if r["kind"] == "value_recorded"]
    assert [(r["call_id"], r["name"]) for r in values] == [
        ("1", "now"), ("2", "uuid4"), ("3", "randint"), ("4", "choice"), ("5", "randrange"), ("7", "now"),
        ("8", "uuid4"),
    ]
    assert values[2]["value"] == number and values[3]["value"] == colour
    assert values[1]["value"] == {"$uuid": str(ident)}
    assert after[1] != ident  # a new call after the pause draws a new value


def test_now_is_the_engine_clocks_time(home: Path) -> None:
    clock = VirtualClock(start=1_800_000_000.25)
    chancy.run(clock=clock)
    assert SEEN[0][0] == dt.datetime.fromtimestamp(1_800_000_000.25, dt.UTC)


def test_flux_replay_reproduces_a_run_that_drew_random_values(home: Path) -> None:
    first = chancy.run()
    chancy.resume(first.execution_id, 3)
    from flux.debug import replay

    report = replay(first.journal_path)
    assert report.matches and report.note == "the code reproduces the recorded output"


@workflow
async def draws(ctx: ExecutionContext[str]) -> Any:
    value = await (now() if ctx.input == "now" else uuid4())
    await pause("p")
    return str(value)


def test_asking_for_another_value_where_one_was_recorded_is_divergence(home: Path) -> None:
    first = draws.run("now")
    path = Path(first.journal_path)
    data = path.read_bytes()
    header, rest = data.split(b"\n", 1)
    # Same execution, but the code now asks uuid4() where the journal recorded now().
    from flux._engine.journal import encode_line, seed_for

    head = orjson.loads(header)
    head["input"] = "uuid"
    del head["crc"]
    path.write_bytes(encode_line(head, seed_for(first.execution_id)) + rest)
    with pytest.raises(NondeterminismError) as info:
        draws.resume(first.execution_id, 1)
    assert "uuid4()" in str(info.value) and "call 1" in str(info.value)


# -- durable sleep and timed pause ---------------------------------------------------------------

HOUR = 3600.0


@workflow
async def nap(ctx: ExecutionContext[float]) -> list[dt.datetime]:
    before = await now()
    await sleep(ctx.input)
    after = await now()
    return [before, after]


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def test_sleep_records_its_wake_up_time_and_waits_on_the_engine_clock(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    ctx = nap.run(HOUR, clock=clock)
    assert clock.now() - start == HOUR
    assert ctx.output == [_at(start), _at(start + HOUR)]
    timer = [r for r in records(ctx) if r["kind"] in ("timer_started", "timer_fired")]
    assert timer[0]["wake_at"] == start + HOUR and timer[0]["call_id"] == "2" and timer[0]["name"] == "sleep"
    assert timer[1]["at"] == iso(start + HOUR)


def _cut_after(ctx: ExecutionContext[Any], kind: str) -> None:
    path = Path(ctx.journal_path)
    lines = path.read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if f'"kind":"{kind}"'.encode() in line) + 1
    path.write_bytes(b"".join(lines[:cut]))


def test_a_sleep_resumed_50_minutes_into_an_hour_sleeps_the_remaining_10_minutes(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    first = nap.run(HOUR, clock=clock)
    _cut_after(first, "timer_started")  # the process died during the sleep ...
    later = VirtualClock(start=start + 50 * 60)  # ... and was resumed 50 minutes later
    resumed = nap.run(execution_id=first.execution_id, clock=later)
    assert later.now() - (start + 50 * 60) == 10 * 60
    assert resumed.output == [_at(start), _at(start + HOUR)]
    recorded = records(resumed)
    assert [r["kind"] for r in recorded].count("timer_started") == 1
    assert next(r for r in recorded if r["kind"] == "timer_fired")["at"] == iso(start + HOUR)


def test_a_sleep_resumed_after_its_wake_up_time_does_not_sleep(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    first = nap.run(HOUR, clock=clock)
    _cut_after(first, "timer_started")
    late = VirtualClock(start=start + 2 * HOUR)
    resumed = nap.run(execution_id=first.execution_id, clock=late)
    assert late.now() == start + 2 * HOUR
    assert resumed.output == [_at(start), _at(start + 2 * HOUR)]


@workflow
async def nap_then_wait(ctx: ExecutionContext[None]) -> Any:
    await sleep(dt.timedelta(minutes=30))
    return await pause("after-nap")


def test_a_finished_sleep_is_not_slept_again_on_replay_and_takes_a_timedelta(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    first = nap_then_wait.run(clock=clock)
    assert clock.now() - start == 1800
    again = VirtualClock(start=start + 1800)
    done = nap_then_wait.resume(first.execution_id, "x", clock=again)
    assert done.output == "x" and again.now() == start + 1800


@workflow
async def two_naps(ctx: ExecutionContext[None]) -> list[dt.datetime]:
    async def lane(seconds: float) -> dt.datetime:
        await sleep(seconds)
        return await now()

    return await parallel(lane(600), lane(1200))


def test_sleeps_in_parallel_branches_overlap(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    ctx = two_naps.run(clock=clock)
    assert clock.now() - start == 1200
    assert ctx.output == [_at(start + 600), _at(start + 1200)]


@pytest.mark.parametrize("bad", ["1h", float("nan"), None, True])
def test_sleep_refuses_a_duration_that_is_not_seconds_or_a_timedelta(bad: Any) -> None:
    with pytest.raises(InvalidOptionError, match="must be a number of seconds or a timedelta"):
        asyncio.run(sleep(bad))


@workflow
async def gate(ctx: ExecutionContext[None]) -> Any:
    answer = await pause("approve", delay=600)
    return {"answer": answer}


def _resume_without_input(wf: Any, execution_id: str, clock: VirtualClock) -> ExecutionContext[Any]:
    return asyncio.run(wf.run_async(None, execution_id=execution_id, resume=True, resume_has_input=False, clock=clock))


def test_a_timed_pause_continues_without_input_only_after_its_wake_up_time(home: Path) -> None:
    clock = VirtualClock()
    start = clock.now()
    first = gate.run(clock=clock)
    assert first.status == "paused"
    paused = records(first)[-1]
    assert paused["kind"] == "workflow_paused" and paused["wake_at"] == start + 600
    before = Path(first.journal_path).read_bytes()
    with pytest.raises(ExecutionStateError) as info:
        _resume_without_input(gate, first.execution_id, VirtualClock(start=start + 599))
    assert f"paused at 'approve' until {iso(start + 600)}" in str(info.value) and "give an input" in str(info.value)
    assert Path(first.journal_path).read_bytes() == before  # nothing written
    done = _resume_without_input(gate, first.execution_id, VirtualClock(start=start + 601))
    assert done.status == "completed" and done.output == {"answer": None}


def test_a_timed_pause_can_be_resumed_early_with_an_input(home: Path) -> None:
    clock = VirtualClock()
    first = gate.run(clock=clock)
    done = gate.resume(first.execution_id, "yes", clock=VirtualClock(start=clock.now() + 1))
    assert done.output == {"answer": "yes"}


@workflow
async def gate_until(ctx: ExecutionContext[float]) -> Any:
    return await pause("deadline", until=_at(ctx.input))


def test_pause_until_records_that_time_and_refuses_until_with_delay(home: Path) -> None:
    ctx = gate_until.run(1_900_000_000.5, clock=VirtualClock())
    assert records(ctx)[-1]["wake_at"] == 1_900_000_000.5
    with pytest.raises(InvalidOptionError, match="not both"):
        asyncio.run(pause("x", until=1.0, delay=1.0))


# -- cancellation --------------------------------------------------------------------------------


@task
async def book(n: int) -> str:
    _ran()
    LOG.append(f"book{n}")
    return f"ref{n}"


@task
async def unbook(ref: str) -> None:
    _ran()
    LOG.append(f"undo:{ref}")


@workflow
async def trip(ctx: ExecutionContext[str]) -> Any:
    async with Saga() as saga:
        await saga.step(book(1), compensate=unbook)
        await saga.step(book(2), compensate=unbook)
        if ctx.input == "pause":
            answer = await pause("approve")
        else:
            answer = await parallel(hang(3), hang(4))
        await saga.step(book(5), compensate=unbook)
    return answer


def test_cancelling_a_paused_execution_compensates_and_records_workflow_cancelled(home: Path) -> None:
    first = trip.run("pause")
    assert first.status == "paused" and LOG == ["book1", "book2"]
    cancelled = trip.cancel(first.execution_id)
    assert cancelled.status == "cancelled"
    assert LOG == ["book1", "book2", "undo:ref2", "undo:ref1"]
    assert events(cancelled)[-6:] == [
        ("WORKFLOW_RESUMED", "wf"),
        ("TASK_STARTED", 'unbook("ref2")'), ("TASK_COMPLETED", 'unbook("ref2")'),
        ("TASK_STARTED", 'unbook("ref1")'), ("TASK_COMPLETED", 'unbook("ref1")'),
        ("WORKFLOW_CANCELLED", "wf"),
    ]
    # A later resume reports the cancellation instead of running anything.
    LOG.clear()
    again = trip.resume(first.execution_id, "approved")
    assert again.status == "cancelled" and again.is_cancelled and LOG == []
    assert records(again)[-1]["kind"] == "workflow_cancelled"
    with pytest.raises(ExecutionStateError, match="has already cancelled"):
        runner.cancel_execution(first.execution_id)


def test_cancelling_a_running_execution_through_the_api(home: Path) -> None:
    result: dict[str, ExecutionContext[Any]] = {}
    thread = threading.Thread(target=lambda: result.update(ctx=trip.run("run")))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not {"start:3", "start:4"} <= set(LOG):
            assert time.monotonic() < deadline, LOG
            time.sleep(0.01)
        (execution_id,) = [p.stem for p in (home / "executions").glob("*.jsonl")]
        status = runner.cancel_execution(execution_id)
    finally:
        thread.join(timeout=30)
    assert status == "cancelled"
    ctx = result["ctx"]
    assert ctx.status == "cancelled"
    assert LOG == ["book1", "book2", "start:3", "start:4", "undo:ref2", "undo:ref1"]  # the hanging bodies never ended
    tail = events(ctx)[-7:]
    assert sorted(tail[:2]) == [("TASK_CANCELLED", "hang(3)"), ("TASK_CANCELLED", "hang(4)")]
    assert tail[2:] == [
        ("TASK_STARTED", 'unbook("ref2")'), ("TASK_COMPLETED", 'unbook("ref2")'),
        ("TASK_STARTED", 'unbook("ref1")'), ("TASK_COMPLETED", 'unbook("ref1")'),
        ("WORKFLOW_CANCELLED", "wf"),
    ]
    assert not (home / "executions" / f"{execution_id}.cancel").exists()


@task
async def charge(n: int) -> str:
    _ran()
    LOG.append(f"charge-start:{n}")
    await asyncio.sleep(0.1)
    LOG.append(f"charge-end:{n}")
    return f"ref{n}"


@workflow
async def checkout(ctx: ExecutionContext[None]) -> str:
    async with Saga() as saga:
        await saga.step(book(1), compensate=unbook)
        await saga.step(charge(2), compensate=unbook)
        await saga.step(book(3), compensate=unbook)
    return "ok"


def test_cancelling_an_interrupted_execution_does_not_start_the_interrupted_call_again(home: Path) -> None:
    first = checkout.run()
    _cut_after_call(first, "charge")  # the process died while charge(2) ran
    LOG.clear()
    cancelled = checkout.cancel(first.execution_id)
    assert cancelled.status == "cancelled"
    assert LOG == ["undo:ref1"]


def _cut_after_call(ctx: ExecutionContext[Any], name: str) -> None:
    path = Path(ctx.journal_path)
    lines = path.read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if b'"task_started"' in line and f'"name":"{name}"'.encode() in line)
    path.write_bytes(b"".join(lines[: cut + 1]))


def test_cancelling_a_finished_execution_is_refused(home: Path) -> None:
    done = piped.run(1)
    with pytest.raises(ExecutionStateError, match="has already completed; there is nothing to cancel"):
        runner.cancel_execution(done.execution_id)


# -- secrets ----------------------------------------------------------------------------------------

CANARY = "cAnArY-7f3e9d2b-0xDEADBEEF"
SECRET = "FLUX_TEST_API_KEY"


@task.with_options(secret_requests=[SECRET])
async def fingerprint(label: str, secrets: dict[str, str]) -> str:
    _ran()
    return f"{label}:{hashlib.sha256(secrets[SECRET].encode()).hexdigest()[:12]}"


@task.with_options(secret_requests=[SECRET])
async def leaks_in_result(secrets: dict[str, str]) -> dict[str, Any]:
    return {"token": secrets[SECRET], "nested": [f"Bearer {secrets[SECRET]}"], secrets[SECRET]: 1}


@task.with_options(secret_requests=[SECRET])
async def leaks_in_error(secrets: dict[str, str]) -> None:
    raise PermissionError(f"key {secrets[SECRET]} was rejected")


@task.with_options(secret_requests=[SECRET], retry_max_attempts=1, retry_delay=0)
async def leaks_in_every_attempt(secrets: dict[str, str]) -> None:
    raise ConnectionError(f"refused {secrets[SECRET]}")


@workflow
async def keyed(ctx: ExecutionContext[str]) -> str:
    return await fingerprint(ctx.input)


@workflow
async def leaky(ctx: ExecutionContext[None]) -> Any:
    result = await leaks_in_result()
    try:
        await leaks_in_error()
    except ExecutionError as err:
        message = str(err.inner_exception)
    try:
        await leaks_in_every_attempt()
    except ExecutionError as err:
        retried = str(err)
    SEEN.append([result, message, retried])
    await pause("half-way")
    await leaks_in_error()  # uncaught: the workflow fails with it
    return [result, message, retried]


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def test_a_task_gets_its_secret_from_the_environment_and_the_kwarg_is_not_recorded(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET, CANARY)
    ctx = keyed.run("env")
    assert ctx.output == f"env:{_sha(CANARY)}"
    started = next(r for r in records(ctx) if r["kind"] == "task_started")
    assert started["args"] == ["env"] and "kwargs" not in started


def test_a_task_gets_its_secret_from_a_private_secrets_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    path = tmp_path / "secrets.json"
    path.write_bytes(orjson.dumps({SECRET: "from-the-file"}))
    path.chmod(0o600)
    monkeypatch.setenv("FLUX_SECRETS_FILE", str(path))
    assert keyed.run("file").output == f"file:{_sha('from-the-file')}"
    monkeypatch.setenv(SECRET, "from-the-env")  # the environment comes first
    assert keyed.run("env").output == f"env:{_sha('from-the-env')}"


def test_the_default_secrets_file_is_in_the_store(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    monkeypatch.delenv("FLUX_SECRETS_FILE", raising=False)
    home.mkdir(mode=0o700)
    (home / "secrets.json").write_bytes(orjson.dumps({SECRET: "in-home"}))
    (home / "secrets.json").chmod(0o600)
    assert keyed.run("home").output == f"home:{_sha('in-home')}"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_secrets_file_others_can_read_or_write_is_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    path = tmp_path / "secrets.json"
    path.write_bytes(orjson.dumps({SECRET: CANARY}))
    path.chmod(mode)
    monkeypatch.setenv("FLUX_SECRETS_FILE", str(path))
    with pytest.raises(SecretError) as info:
        keyed.run("x")
    message = str(info.value)
    assert str(path) in message and f"mode {mode:o}" in message and f"chmod 600 {path}" in message
    assert CANARY not in message and RAN == []


def test_a_missing_secret_stops_the_run_naming_it_and_the_run_resumes_once_it_is_set(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    monkeypatch.setenv("FLUX_SECRETS_FILE", str(tmp_path / "absent.json"))
    with pytest.raises(SecretError) as info:
        keyed.run("x")
    assert f"task 'fingerprint' needs secret '{SECRET}'" in str(info.value)
    assert f"environment variable {SECRET}" in str(info.value) and "absent.json" in str(info.value)
    assert RAN == []
    (path,) = (home / "executions").glob("*.jsonl")
    assert [orjson.loads(line)["kind"] for line in path.read_bytes().splitlines()][-1] == "task_started"
    monkeypatch.setenv(SECRET, CANARY)
    assert keyed.run(execution_id=path.stem).output == f"x:{_sha(CANARY)}"


def test_a_secret_returned_or_raised_by_a_task_is_in_no_byte_written(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET, CANARY)
    first = leaky.run()
    assert first.status == "paused"
    redacted = f"[secret:{SECRET}]"
    done = leaky.resume(first.execution_id, None)
    assert done.status == "failed"
    assert f"key {redacted} was rejected" in str(done.output)
    # The workflow saw the recorded (redacted) forms, live and on replay alike.
    live, replayed = SEEN
    assert live == replayed
    assert live == [
        {"token": redacted, "nested": [f"Bearer {redacted}"], redacted: 1},
        f"key {redacted} was rejected",
        f"RetryError: task 'leaks_in_every_attempt' failed after 2 attempts; last: ConnectionError: refused {redacted}",
    ]
    kinds_written = {r["kind"] for r in records(done)}
    assert {"attempt_failed", "task_failed", "workflow_failed"} <= kinds_written
    # A wide console: no line is wrapped, so no canary can hide across two lines.
    monkeypatch.setattr(flux._cli.main, "out", Console(highlight=False, soft_wrap=True, width=1000))
    shown = CliRunner().invoke(app, ["show", done.execution_id, "--home", str(home)])
    listed = CliRunner().invoke(app, ["list", "--home", str(home)])
    assert shown.exit_code == 0 and "leaks_in_error" in shown.output and redacted in shown.output
    texts = [
        every_byte_under(home),
        repr([(e.type, e.name, e.value) for e in done.events]).encode(),
        repr(done.output).encode(),
        str(done.output).encode(),
        getattr(done.output, "__flux_traceback__", "").encode(),
        shown.output.encode(),
        listed.output.encode(),
    ]
    for text in texts:
        assert CANARY.encode() not in text
    assert redacted.encode() in texts[0]


@task
async def send_with(token: str) -> int:
    return len(token)


@task.with_options(secret_requests=[SECRET])
async def authorised_call(secrets: dict[str, str]) -> int:
    return await send_with(secrets[SECRET])  # a task called from the body, with the secret


@workflow
async def nested_secret(ctx: ExecutionContext[None]) -> int:
    return await authorised_call()


def test_a_secret_passed_to_a_task_called_inside_a_secret_task_is_not_recorded(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET, CANARY)
    ctx = nested_secret.run()
    assert ctx.output == len(CANARY)
    assert CANARY.encode() not in every_byte_under(home)


@task.with_options(secret_requests=[SECRET])
async def secret_bytes(secrets: dict[str, str]) -> bytes:
    return secrets[SECRET].encode()


@workflow
async def bytes_secret(ctx: ExecutionContext[None]) -> bytes:
    return await secret_bytes()


def test_a_secret_returned_as_bytes_is_not_recorded_or_shown(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET, CANARY)
    ctx = bytes_secret.run()
    written = every_byte_under(home)
    assert base64.b64encode(CANARY.encode()) not in written
    assert CANARY.encode() not in written
    assert CANARY.encode() not in repr(ctx.output).encode()


@pytest.mark.parametrize(
    ("value", "message"),
    [("API_KEY", "must be a list of secret names"), ([""], "must be a list of secret names"), ([1], "must be a list")],
)
def test_bad_secret_requests_are_refused_when_decorating(value: Any, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        task.with_options(secret_requests=value)


# -- output storage and the record size limit ----------------------------------------------------


@task.with_options(output_storage=LocalFileStorage())
async def big_text(n: int) -> str:
    _ran()
    return "x" * n


@task.with_options(output_storage=True)
async def big_rows(n: int) -> list[dict[str, Any]]:
    _ran()
    return [{"row": i, "when": dt.date(2026, 1, 1 + i % 28)} for i in range(n)]


@task
async def big_plain(n: int) -> str:
    _ran()
    return "y" * n


@workflow
async def stores(ctx: ExecutionContext[int]) -> Any:
    text = await big_text(ctx.input)
    rows = await big_rows(3)
    SEEN.append((len(text), text[:3], rows))
    await pause("p")
    return [len(text), rows[2]]


@workflow.with_options(output_storage=True)
async def stored_output(ctx: ExecutionContext[int]) -> str:
    return "z" * ctx.input


@workflow
async def too_big(ctx: ExecutionContext[int]) -> Any:
    return len(await big_plain(ctx.input))


def _blob_of(record: dict[str, Any], home: Path) -> Path:
    return home / "blobs" / f"{record['value']['$blob']}.json"


def test_output_storage_writes_a_private_blob_and_the_journal_keeps_only_digest_and_size(home: Path) -> None:
    n = 2 * 1024 * 1024
    ctx = stores.run(n)
    assert ctx.status == "paused"
    assert SEEN == [(n, "xxx", [{"row": i, "when": dt.date(2026, 1, 1 + i)} for i in range(3)])]
    completed = [r for r in records(ctx) if r["kind"] == "task_completed"]
    for record in completed:
        assert set(record) == {"seq", "kind", "at", "call_id", "value", "crc"}
        assert set(record["value"]) == {"$blob", "size"}
        blob = _blob_of(record, home)
        data = blob.read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["value"]["$blob"]
        assert len(data) == record["value"]["size"]
        assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    assert orjson.loads(_blob_of(completed[0], home).read_bytes()) == "x" * n
    assert orjson.loads(_blob_of(completed[1], home).read_bytes())[2] == {"row": 2, "when": {"$date": "2026-01-03"}}
    assert stat.S_IMODE((home / "blobs").stat().st_mode) == 0o700
    assert sorted(p.name for p in (home / "blobs").iterdir()) == sorted(_blob_of(r, home).name for r in completed)
    assert Path(ctx.journal_path).stat().st_size < 4096  # 2 MiB stayed out of the journal
    values = [e.value for e in ctx.events if e.type == E.TASK_COMPLETED]
    assert len(values[0]) == n and values[1][0] == {"row": 0, "when": dt.date(2026, 1, 1)}


def test_replay_reads_stored_outputs_back(home: Path) -> None:
    first = stores.run(5000)
    RAN.clear()
    done = stores.resume(first.execution_id, "go")
    assert done.output == [5000, {"row": 2, "when": dt.date(2026, 1, 3)}]
    assert SEEN[1] == SEEN[0] and RAN == []


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_a_missing_or_altered_blob_stops_the_replay_with_blob_error_naming_the_file(home: Path, damage: str) -> None:
    first = stores.run(5000)
    blob = _blob_of(next(r for r in records(first) if r["kind"] == "task_completed"), home)
    if damage == "missing":
        blob.unlink()
    else:
        blob.write_bytes(blob.read_bytes().replace(b"xxxx", b"xxxy", 1))
    before = Path(first.journal_path).read_bytes()
    with pytest.raises(BlobError) as info:
        stores.resume(first.execution_id, "go")
    assert str(blob) in str(info.value)
    assert ("missing" if damage == "missing" else "altered") in str(info.value)
    assert Path(first.journal_path).read_bytes() == before  # nothing written
    assert RAN == [f"{first.execution_id}:1", f"{first.execution_id}:2"]  # no body ran on the resume


def test_a_workflows_output_can_go_to_output_storage(home: Path) -> None:
    ctx = stored_output.run(100)
    assert ctx.output == "z" * 100
    final = records(ctx)[-1]
    assert final["kind"] == "workflow_completed" and set(final["value"]) == {"$blob", "size"}
    again = stored_output.run(execution_id=ctx.execution_id)
    assert again.status == "completed" and again.output == "z" * 100
    _blob_of(final, home).unlink()
    with pytest.raises(BlobError, match=str(_blob_of(final, home))):
        stored_output.run(execution_id=ctx.execution_id)


def test_a_result_over_the_record_limit_without_output_storage_fails_suggesting_it(home: Path) -> None:
    ctx = too_big.run(1024 * 1024 + 1)
    assert ctx.status == "failed"
    assert isinstance(ctx.output, ExecutionError)
    inner = ctx.output.inner_exception
    assert isinstance(inner, RecordTooLargeError)
    assert "over the limit of 1048576 bytes" in str(inner) and "output_storage=True" in str(inner)
    failed = [r for r in records(ctx) if r["kind"] == "task_failed"]
    assert len(failed) == 1 and failed[0]["error"]["$error"].endswith("RecordTooLargeError")
    assert max(len(line) for line in Path(ctx.journal_path).read_bytes().splitlines()) < 1024 * 1024
    assert too_big.run(1000).output == 1000  # under the limit it is recorded as usual


def test_output_storage_option_is_validated_when_decorating() -> None:
    with pytest.raises(InvalidOptionError, match="output_storage='disk' must be True or a"):
        task.with_options(output_storage="disk")


# -- cache ----------------------------------------------------------------------------------------


@task.with_options(cache=True)
async def expensive(x: int) -> dict[str, Any]:
    _ran()
    return {"x": x, "at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "pair": (x, -x)}


@task.with_options(cache=True)
async def cached_failure(x: int) -> None:
    _ran()
    raise ValueError(f"not cached {x}")


@workflow
async def uses_cache(ctx: ExecutionContext[int]) -> Any:
    return await expensive(ctx.input)


@workflow
async def uses_cached_failure(ctx: ExecutionContext[int]) -> Any:
    try:
        await cached_failure(ctx.input)
    except ExecutionError as err:
        return str(err.inner_exception)


def _expected(x: int) -> dict[str, Any]:
    return {"x": x, "at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "pair": (x, -x)}


def test_an_identical_call_in_a_later_execution_reuses_the_cached_result(home: Path) -> None:
    first = uses_cache.run(4)
    second = uses_cache.run(4)
    assert first.output == second.output == _expected(4)
    assert type(second.output["pair"]) is tuple
    assert RAN == [f"{first.execution_id}:1"]  # the body ran once
    one = next(r for r in records(first) if r["kind"] == "task_completed")
    two = next(r for r in records(second) if r["kind"] == "task_completed")
    assert "cached" not in one and two["cached"] is True and two["value"] == one["value"]
    assert [k for k, _ in kinds(second)] == ["workflow_started", "task_started", "task_completed", "workflow_completed"]
    third = uses_cache.run(5)  # other arguments: a miss
    assert third.output == _expected(5) and RAN[-1] == f"{third.execution_id}:1"


def test_cache_entries_are_private_json_in_the_journals_value_format(home: Path) -> None:
    ctx = uses_cache.run(7)
    (entry,) = (home / "cache").iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    data = orjson.loads(entry.read_bytes())
    assert data["task"] == "tests.test_builtins:expensive" and data["name"] == "expensive"
    assert data["execution_id"] == ctx.execution_id
    assert data["value"] == next(r for r in records(ctx) if r["kind"] == "task_completed")["value"]
    assert data["value"]["at"] == {"$datetime": "2026-01-02T03:04:05+00:00"}


def test_a_damaged_cache_entry_is_a_miss(home: Path) -> None:
    uses_cache.run(8)
    (entry,) = (home / "cache").iterdir()
    entry.write_bytes(b"\x80not json")
    ctx = uses_cache.run(8)
    assert ctx.output == _expected(8) and len(RAN) == 2
    assert "cached" not in next(r for r in records(ctx) if r["kind"] == "task_completed")


def test_failures_are_not_cached(home: Path) -> None:
    assert uses_cached_failure.run(1).output == "not cached 1"
    assert uses_cached_failure.run(1).output == "not cached 1"
    assert len(RAN) == 2
    assert not (home / "cache").exists() or not list((home / "cache").iterdir())


def test_flux_clear_cache_empties_the_cache(home: Path) -> None:
    uses_cache.run(1)
    uses_cache.run(2)
    assert len(list((home / "cache").iterdir())) == 2
    result = CliRunner().invoke(app, ["clear-cache", "--home", str(home)])
    assert result.exit_code == 0 and "removed 2 cached results" in result.output
    assert list((home / "cache").iterdir()) == []
    RAN.clear()
    ctx = uses_cache.run(1)
    assert RAN == [f"{ctx.execution_id}:1"]  # the body ran again
    assert runner.clear_cache(str(home)) == 1 and runner.clear_cache(str(home)) == 0


def test_how_to_clear_the_cache_is_documented() -> None:
    spec = (ROOT / "SPEC.md").read_text()
    assert "flux clear-cache" in spec
    help_text = CliRunner().invoke(app, ["--help"]).output
    assert "clear-cache" in help_text


def test_cache_option_is_validated_when_decorating() -> None:
    with pytest.raises(InvalidOptionError, match="cache='yes' must be True or False"):
        task.with_options(cache="yes")


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: now(), "now()"),
        (lambda: uuid4(), "uuid4()"),
        (lambda: choice([1]), "choice()"),
        (lambda: sleep(1), "sleep()"),
        (lambda: pause("p"), "pause()"),
        (lambda: call(kid, 1), "call()"),
    ],
)
def test_the_recording_builtins_refuse_to_run_outside_a_workflow(make: Any, name: str) -> None:
    pattern = f"{name.replace('(', '[(]').replace(')', '[)]')} can only be awaited inside a running workflow"
    with pytest.raises(OutsideWorkflowError, match=pattern):
        asyncio.run(make())
