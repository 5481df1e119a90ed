"""The Flux API on the engine: results, failures, pauses, events, methods, names, values."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import gc
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from flux import ExecutionContext, task, workflow
from flux.domain.events import ExecutionEventType as E
from flux.errors import EncodeError, ExecutionError, ExecutionStateError, InvalidOptionError
from flux.tasks import idempotency_key, pause

RAN: list[str] = []


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Order:
    id: int
    items: tuple[str, ...]
    placed: dt.datetime


class Point(NamedTuple):
    x: int
    y: int


class OrderError(Exception):
    pass


@task
async def echo(value: Any) -> Any:
    RAN.append("echo")
    return value


@task.with_options(name="sum_{n}")
async def total(n: int) -> int:
    RAN.append(f"sum_{n}")
    return sum(range(n + 1))


@task
def plain(x: int) -> int:
    RAN.append("plain")
    return x * 10


@task
async def outer(x: int) -> int:
    RAN.append("outer")
    return await plain(x) + await plain(x + 1)


@task
async def fails(msg: str) -> None:
    RAN.append("fails")
    raise OrderError(msg)


@task
async def key() -> str:
    return idempotency_key()


class Shop:
    def __init__(self, rate: int) -> None:
        self.rate = rate

    @task
    async def price(self, qty: int) -> int:
        RAN.append("price")
        return qty * self.rate


@workflow
async def values_wf(ctx: ExecutionContext[Any]) -> Any:
    got = await echo(ctx.input)
    await pause("check")
    return got


@workflow
async def composite(ctx: ExecutionContext[int]) -> Any:
    a = await total(ctx.input)
    b = await outer(ctx.input)
    c = await Shop(3).price(ctx.input)
    try:
        await fails("no stock")
    except ExecutionError as err:
        d = f"{type(err.inner_exception).__name__}:{err.__cause__}"
    return [a, b, c, d]


@workflow
async def two_pauses(ctx: ExecutionContext[str]) -> list[Any]:
    first = await pause("first")
    second = await pause("second")
    return [ctx.input, first, second]


@workflow
async def failing(ctx: ExecutionContext[None]) -> None:
    await fails("card declined")


@workflow.with_options(name="keyed")
async def keyed(ctx: ExecutionContext[None]) -> list[str]:
    a = await key()
    await pause("p")
    return [a, await key()]


@workflow
async def unrecordable(ctx: ExecutionContext[None]) -> Any:
    return object()


SAMPLES = [
    None,
    True,
    2**100,
    float("inf"),
    "text",
    b"\x00\xff",
    (1, (2, "x")),
    {1: "a", (2, 3): "b"},
    {"$t": 1},
    {1, 2, 3},
    frozenset({"a"}),
    dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.date(2024, 5, 1),
    dt.time(12, 30, 1, 5),
    dt.timedelta(days=2, microseconds=3),
    Decimal("1.10"),
    uuid.UUID(int=7),
    Colour.RED,
    Order(1, ("a", "b"), dt.datetime(2024, 1, 1)),
    Point(1, 2),
]


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_replayed_values_equal_the_originals_and_keep_their_type(value: Any, home: Path) -> None:
    ctx = values_wf.run(value)
    assert ctx.is_paused
    RAN.clear()
    done = values_wf.resume(ctx.execution_id)
    assert RAN == []  # echo was replayed, not run
    assert done.output == value and type(done.output) is type(value)


def test_composite_workflow_results_and_events(home: Path) -> None:
    RAN.clear()
    ctx = composite.run(3)
    assert ctx.has_succeeded and ctx.has_finished and not ctx.has_failed
    assert ctx.output == [6, 30 + 40, 9, "OrderError:no stock"]
    assert RAN == ["sum_3", "outer", "plain", "plain", "price", "fails"]
    kinds = [e.type for e in ctx.events]
    assert kinds[0] == E.WORKFLOW_STARTED and kinds[-1] == E.WORKFLOW_COMPLETED
    names = [e.name for e in ctx.events if e.type == E.TASK_STARTED]
    assert names == ["sum_3", "outer", "plain", "plain", "price", "fails"]
    ids = [e.source_id for e in ctx.events if e.type == E.TASK_STARTED]
    assert ids == ["1", "2", "2.1", "2.2", "3", "4"]  # tasks called from a task take ids under it
    failed = [e for e in ctx.events if e.type == E.TASK_FAILED]
    # As in Flux, TASK_FAILED's value is the ExecutionError the workflow saw.
    assert len(failed) == 1 and isinstance(failed[0].value.inner_exception, OrderError)


def test_a_failing_task_fails_the_workflow_with_the_exception_as_output(home: Path) -> None:
    ctx = failing.run()
    assert ctx.has_failed and ctx.has_finished
    assert isinstance(ctx.output, ExecutionError)
    assert isinstance(ctx.output.inner_exception, OrderError)
    assert str(ctx.output.inner_exception) == "card declined"
    assert ctx.events[-1].type == E.WORKFLOW_FAILED
    again = failing.run(execution_id=ctx.execution_id)  # a finished execution is returned as recorded
    assert again.has_failed and isinstance(again.output, ExecutionError)
    assert isinstance(again.output.inner_exception, OrderError)


def test_several_pauses_resume_one_after_another(home: Path) -> None:
    ctx = two_pauses.run("in")
    assert ctx.is_paused and ctx.events[-1].type == E.WORKFLOW_PAUSED
    ctx = two_pauses.run(execution_id=ctx.execution_id)
    assert ctx.is_paused  # running a paused execution resumes it: its first pause returns None
    ctx = two_pauses.resume(ctx.execution_id, [2])
    assert ctx.has_succeeded and ctx.output == ["in", None, [2]]
    types = [e.type for e in ctx.events]
    assert types.count(E.WORKFLOW_PAUSED) == 2 and types.count(E.WORKFLOW_RESUMED) == 2


def test_idempotency_key_is_stable_across_replays(home: Path) -> None:
    ctx = keyed.run()
    done = keyed.resume(ctx.execution_id)
    first, second = done.output
    assert first == f"{ctx.execution_id}:1" and second == f"{ctx.execution_id}:3"


def test_an_unrecordable_result_fails_the_run_naming_the_type(home: Path) -> None:
    ctx = unrecordable.run()
    assert ctx.has_failed and isinstance(ctx.output, EncodeError)
    assert "builtins.object" in str(ctx.output)


def test_an_unrecordable_argument_is_refused_naming_the_task(home: Path) -> None:
    @workflow
    async def bad_arg(ctx: ExecutionContext[None]) -> Any:
        return await echo(object())

    ctx = bad_arg.run()
    assert ctx.has_failed and "task 'echo' argument" in str(ctx.output)


def test_tasks_run_directly_outside_a_workflow() -> None:
    assert asyncio.run(total(4)) == 10


def test_unknown_and_bad_options_are_refused_when_decorating() -> None:
    with pytest.raises(InvalidOptionError, match="unknown task option colour"):
        task.with_options(colour="red")  # type: ignore[arg-type]  # refused by the type checker too
    with pytest.raises(InvalidOptionError, match="name=''"):
        workflow.with_options(name="")
    with pytest.raises(InvalidOptionError, match="async def"):
        workflow(lambda ctx: None)


def test_resuming_under_another_workflow_is_refused(home: Path) -> None:
    ctx = two_pauses.run("x")
    with pytest.raises(ExecutionStateError, match="is of workflow 'two_pauses'"):
        values_wf.resume(ctx.execution_id)


def test_home_is_read_when_the_run_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_HOME", str(tmp_path / "a"))
    ctx = values_wf.run(1)
    assert Path(ctx.journal_path).parent.parent == tmp_path / "a"
    monkeypatch.setenv("FLUX_HOME", str(tmp_path / "b"))
    assert Path(values_wf.run(1).journal_path).parent.parent == tmp_path / "b"


PREMADE: list[Any] = []


@workflow
async def awaits_premade(ctx: ExecutionContext[None]) -> Any:
    made_inside = echo("inside")
    PREMADE.append(made_inside)
    return await PREMADE[0]  # made before the run, outside any workflow


def test_a_call_made_outside_a_workflow_is_recorded_where_it_is_awaited(home: Path) -> None:
    PREMADE.clear()
    PREMADE.append(echo("outside"))
    RAN.clear()
    ctx = awaits_premade.run()
    assert ctx.output == "outside" and RAN == ["echo"]
    started = [r for r in ctx._records if r["kind"] == "task_started"]
    assert [(r["call_id"], r["args"]) for r in started] == [("1", ["outside"])]
    # The call made inside but never awaited there runs as a plain call when awaited outside.
    assert asyncio.run(PREMADE[1]) == "inside"


@task
async def threshold_now() -> int:
    return gc.get_threshold()[0]


@task
async def middle_threshold_now() -> int:
    return gc.get_threshold()[1]


@workflow
async def reads_the_collector_pace(ctx: ExecutionContext[int]) -> list[int]:
    await asyncio.sleep(0.01 * ctx.input)  # the runs overlap, and end in turn
    return [await threshold_now() for _ in range(2)] + [await middle_threshold_now()]


def test_the_cycle_collector_is_paced_while_runs_last_and_restored_after(tmp_path: Path) -> None:
    before = gc.get_threshold()
    assert before[0] < 10_000
    home = str(tmp_path)

    async def overlapping() -> list[Any]:
        return list(await asyncio.gather(*(reads_the_collector_pace.run_async(i, store=home) for i in (1, 2, 3))))

    runs = asyncio.run(overlapping())
    assert [ctx.output for ctx in runs] == [[10_000, 10_000, max(100, before[1])]] * 3
    assert gc.get_threshold() == before


def test_a_worker_keeps_the_pace_between_its_runs_and_restores_it_when_it_stops(tmp_path: Path) -> None:
    """A worker's runs come and go: going back to Python's pace whenever none runs would collect
    at once everything made since, many times a second under load."""
    from flux.worker import Worker

    before = gc.get_threshold()
    seen: list[int] = []

    async def scenario() -> list[Any]:
        worker = Worker(str(tmp_path), [reads_the_collector_pace], poll=0.02)
        stop = asyncio.Event()
        serving = asyncio.create_task(worker.run(stop))
        ctx = await reads_the_collector_pace.run_async(0, store=str(tmp_path))
        await asyncio.sleep(0.1)  # no run now: the worker still keeps the pace
        seen.append(gc.get_threshold()[0])
        stop.set()
        await serving
        return list(ctx.output)

    assert asyncio.run(scenario()) == [10_000, 10_000, max(100, before[1])]
    assert seen == [10_000]
    assert gc.get_threshold() == before


@workflow
async def changes_the_collector_pace(ctx: ExecutionContext[None]) -> int:
    gc.set_threshold(5_000)
    return await threshold_now()


def test_a_pace_the_workflow_set_itself_is_kept(tmp_path: Path) -> None:
    before = gc.get_threshold()
    try:
        assert changes_the_collector_pace.run(None, store=str(tmp_path)).output == 5_000
        assert gc.get_threshold()[0] == 5_000
    finally:
        gc.set_threshold(*before)


@workflow
async def echoes_then_pauses(ctx: ExecutionContext[int]) -> int:
    for i in range(ctx.input):
        await echo(i)
    await pause("end")
    return ctx.input


def test_a_finished_run_leaves_nothing_for_the_cycle_collector(tmp_path: Path) -> None:
    """The executor and its replay index are freed when the run returns, by reference counts:
    a cycle through them would keep a large journal's index alive until a full collection."""
    home = str(tmp_path)
    first = echoes_then_pauses.run(50, store=home)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        done = echoes_then_pauses.resume(first.execution_id, None, store=home)
        assert done.output == 50
        del done
        gc.collect()
        kept = sorted({type(o).__name__ for o in gc.garbage if type(o).__module__.startswith(("engine", "flux"))})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert kept == []


def _left_for_the_cycle_collector(run: Any) -> list[str]:
    """The engine's and flux's types among what `run()` leaves that only the cycle collector
    would free."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        return sorted({type(o).__name__ for o in gc.garbage if type(o).__module__.startswith(("engine", "flux"))})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_a_run_that_ends_paused_leaves_nothing_for_the_cycle_collector(tmp_path: Path) -> None:
    """The exception that unwinds a pausing workflow holds the frames of the run in its
    traceback: the root task must not be among their locals, or the executor and its history
    stay in a cycle."""
    home = str(tmp_path)
    assert _left_for_the_cycle_collector(lambda: echoes_then_pauses.run(50, store=home).status) == []


def test_a_read_only_replay_leaves_nothing_for_the_cycle_collector(tmp_path: Path) -> None:
    """`flux replay` of a journal that ends at a pause: the replay stops with EndOfJournal, whose
    traceback holds the frames of the run; 200,000 calls left in a cycle took a quarter of a
    second of cycle collection after a 100,000-task `flux replay --summary`."""
    from flux.debug import replay

    home = str(tmp_path)
    paused = echoes_then_pauses.run(50, store=home)

    def replayed() -> None:
        result = replay(paused.execution_id, store=home, calls=False)
        assert result.status == "replayed" and result.matches

    assert _left_for_the_cycle_collector(replayed) == []


@workflow
async def pauses_in_a_task_group(ctx: ExecutionContext[int]) -> int:
    async with asyncio.TaskGroup() as group:
        echoed = group.create_task(echo(ctx.input))
        first = group.create_task(pause("first"))
        second = group.create_task(pause("second"))
    return echoed.result() + first.result() + second.result()


def test_a_run_that_ends_paused_in_a_task_group_and_its_replay_leave_nothing_for_the_cycle_collector(
    tmp_path: Path,
) -> None:
    """The TaskGroup raises an exception group holding the pauses' unwinding: its tracebacks
    hold the TaskGroup, which holds the root task, which holds the group; and the exception the
    run ends with has the group as its context."""
    from flux.debug import replay

    home = str(tmp_path)
    paused = pauses_in_a_task_group.run(1, store=home)
    assert paused.status == "paused"
    assert _left_for_the_cycle_collector(lambda: pauses_in_a_task_group.run(2, store=home).status) == []

    def replayed() -> None:
        result = replay(paused.execution_id, store=home, calls=False)
        assert result.status == "replayed" and result.matches

    assert _left_for_the_cycle_collector(replayed) == []
