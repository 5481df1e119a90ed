"""The async client: what a service calls, inside its own running event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, task, workflow
from flux.client import Client, ExecutionView
from flux.errors import ExecutionStateError, InvalidExecutionIdError
from flux.tasks import pause

BODIES: list[str] = []
GATE: dict[str, asyncio.Event] = {}


@task
async def step(name: str) -> str:
    BODIES.append(name)
    gate = GATE.get(name)
    if gate is not None:
        await gate.wait()
    return name.upper()


@workflow
async def ordered(ctx: ExecutionContext[str]) -> list[str]:
    first = await step(f"{ctx.input}-1")
    answer = await pause("confirm")
    return [first, answer, await step(f"{ctx.input}-2")]


@workflow
async def other(ctx: ExecutionContext[None]) -> int:
    return 1


def test_start_returns_once_the_header_is_durable_and_the_run_goes_on_in_the_loop(home: Path) -> None:
    BODIES.clear()

    async def scenario() -> None:
        GATE["a-1"] = asyncio.Event()
        async with Client(str(home)) as client:
            handle = await client.start(ordered, "a")
            assert handle.local
            # The header is on disk before the workflow's first step has run.
            journal = home / "executions" / f"{handle.execution_id}.jsonl"
            assert journal.read_bytes().count(b"\n") >= 1
            assert client.store.header(handle.execution_id)["input"] == "a"
            for _ in range(200):
                if BODIES:
                    break
                await asyncio.sleep(0.005)
            assert BODIES == ["a-1"]
            assert (await client.get(handle.execution_id)).status == "running"
            GATE["a-1"].set()
            ctx = await handle.result()
            assert ctx.status == "paused" and ctx.execution_id == handle.execution_id
        GATE.clear()

    asyncio.run(scenario())


def test_a_start_with_an_existing_execution_id_never_makes_a_second_one(home: Path) -> None:
    BODIES.clear()

    async def scenario() -> None:
        async with Client(str(home)) as client:
            first = await client.start(ordered, "b", execution_id="order-B-1")
            await first.result()
            again = await client.start(ordered, "ignored", execution_id="order-B-1")
            ctx = await again.result()
            assert ctx.status == "paused" and ctx.input == "b"
            with pytest.raises(ExecutionStateError, match="is of workflow 'ordered', not 'other'"):
                await client.start(other, None, execution_id="order-B-1")
            page = await client.list()
            assert [s.execution_id for s in page.items] == ["order-B-1"]

    asyncio.run(scenario())
    assert BODIES == ["b-1"]  # one run, one body


def test_run_with_a_new_execution_id_makes_it_and_run_again_returns_it(home: Path) -> None:
    ctx = ordered.run("c", execution_id="order-C-1")
    assert ctx.execution_id == "order-C-1" and ctx.status == "paused"
    assert ordered.run("zzz", execution_id="order-C-1").input == "c"
    with pytest.raises(InvalidExecutionIdError):
        ordered.run("c", execution_id="../escape")


def test_get_list_resume_and_result_from_another_client(home: Path) -> None:
    async def scenario() -> tuple[ExecutionView, ExecutionContext[Any]]:
        async with Client(str(home)) as starter:
            handle = await starter.start(ordered, "d")
            await handle.result()
        reader = Client(str(home))
        view = await reader.get(handle.execution_id)
        assert view.status == "paused" and view.workflow == "ordered" and view.input == "d"
        assert [w.name for w in view.waiting] == ["confirm"]
        assert [(row.name, row.args) for row in view.calls] == [("step", ["d-1"]), ("confirm", None)]
        assert view.to_json()["waiting"][0]["call_id"] == "2"
        assert (await reader.result(handle.execution_id, timeout=1)).status == "paused"
        resumed = await reader.resume(handle.execution_id, "ok")
        done = await resumed.result()
        return await reader.get(handle.execution_id), done

    view, done = asyncio.run(scenario())
    assert done.status == "completed" and done.output == ["D-1", "ok", "D-2"]
    assert view.status == "completed" and view.output == ["D-1", "ok", "D-2"]


def test_result_of_an_execution_run_elsewhere_waits_for_its_journal(home: Path) -> None:
    async def scenario() -> None:
        runner = Client(str(home))
        watcher = Client(str(home))
        GATE["e-1"] = asyncio.Event()
        handle = await runner.start(ordered, "e")

        async def release() -> None:
            await asyncio.sleep(0.1)
            GATE["e-1"].set()

        with pytest.raises(TimeoutError, match="still running"):
            await watcher.result(handle.execution_id, timeout=0.1)  # blocked at its gate
        releasing = asyncio.create_task(release())
        ctx = await watcher.result(handle.execution_id, timeout=60)
        await releasing
        assert ctx.status == "paused" and ctx.output is None
        await runner.wait()

    asyncio.run(scenario())
    GATE.clear()


def test_cancel_asks_the_running_process_and_waits_for_the_journal_without_polling_sleeps(home: Path) -> None:
    async def scenario() -> str:
        async with Client(str(home)) as client:
            GATE["f-1"] = asyncio.Event()
            handle = await client.start(ordered, "f")
            for _ in range(200):
                if "f-1" in BODIES:
                    break
                await asyncio.sleep(0.005)
            status = await Client(str(home)).cancel(handle.execution_id, wait=10)
            ctx = await handle.result()
            assert ctx.status == "cancelled"
            return status

    BODIES.clear()
    assert asyncio.run(scenario()) == "cancelled"
    GATE.clear()


def test_the_sync_forms_refuse_to_run_inside_a_running_loop_and_say_what_to_use(home: Path) -> None:
    async def inside() -> None:
        with pytest.raises(RuntimeError, match="use its async form"):
            ordered.run("g")
        ctx = await ordered.run_async("g")  # the async form works in the same loop
        assert ctx.status == "paused"

    asyncio.run(inside())


def test_a_run_that_ends_between_reading_its_journal_and_asking_for_its_owner_is_read_again(home: Path) -> None:
    """The journal is read while the run still goes on; its worker finishes and lets go before
    the store is asked who owns it. The client must not answer "completed" with no output."""
    from flux._engine.stores.files import FileStore

    async def first() -> None:
        async with Client(str(home)) as client:
            await (await client.start(ordered, "r", execution_id="race-1")).result()
            await client.resume("race-1", "yes")
            await client.result("race-1", timeout=10)

    asyncio.run(first())
    journal = home / "executions" / "race-1.jsonl"
    full = journal.read_bytes()
    lines = full.splitlines(keepends=True)
    assert b'"workflow_completed"' in lines[-1]

    class FinishesMeanwhile(FileStore):
        landed = 0

        def owner(self, execution_id: str) -> dict[str, Any] | None:
            if not self.landed:  # the last record lands now, and the worker lets go
                journal.write_bytes(full)
            self.landed += 1
            return super().owner(execution_id)

    for read in ("result", "get"):
        journal.write_bytes(b"".join(lines[:-1]))  # as read while the run went on
        store = FinishesMeanwhile(str(home))

        async def scenario(store: FileStore = store, read: str = read) -> Any:
            async with Client(store) as client:
                if read == "result":
                    return await client.result("race-1", timeout=10)
                return await client.get("race-1")

        seen = asyncio.run(scenario())
        assert seen.status == "completed"
        assert seen.output == ["R-1".upper(), "yes", "R-2"], read
        assert store.landed == 1  # the run ended after its journal was first read
