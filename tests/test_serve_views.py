"""The read models of `flux serve` agree with the client's view of the same executions."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from flux._engine.stores.memory import MemoryStore
from flux.client import Client
from flux.serve.views import call_rows, execution_json, fold_execution, pending_of, row_details
from tests import serve_workflows as w


@pytest.fixture(scope="module")
def executions() -> tuple[Client, dict[str, str]]:
    client = Client(MemoryStore(f"views-{uuid.uuid4().hex}"), durability="os")
    made: dict[str, str] = {}

    async def go() -> None:
        for key, wf, value in [
            ("completed", w.counter, {"n": 3}),
            ("failed", w.explode, "no"),
            ("paused", w.two_pauses, None),
            ("child", w.parent, 4),
            ("retried", w.retrying, {"key": f"views-{uuid.uuid4().hex}", "failures": 1}),
        ]:
            handle = await client.start(wf, value)
            await handle.result()
            made[key] = handle.execution_id
        sleeping = await client.start(w.sleeper, 3600)
        await asyncio.sleep(0.2)
        made["sleeping"] = sleeping.execution_id
        view = client.view(sleeping.execution_id)
        assert view.timers, "the timer is recorded before the test reads it"
        await client.cancel(sleeping.execution_id)

    asyncio.run(go())
    return client, made


@pytest.mark.parametrize("key", ["completed", "failed", "paused", "child", "retried", "sleeping"])
def test_execution_json_is_the_client_view_without_its_calls(executions: Any, key: str) -> None:
    client, made = executions
    execution_id = made[key]
    expected = client.view(execution_id).to_json()
    calls = expected.pop("calls")
    folded = fold_execution(client.store, execution_id)
    assert execution_json(folded, client.store) == expected
    rows = call_rows(folded.history)
    assert [{k: v for k, v in row.items() if k != "segments"} for row in rows] == calls


def test_pending_and_row_details_of_a_paused_and_a_retried_execution(executions: Any) -> None:
    client, made = executions
    paused = fold_execution(client.store, made["paused"])
    assert pending_of(paused) == {"running": [], "timers": [], "retries": []}
    details = row_details(paused)
    assert details["calls"] == 2 and sorted(details["waiting"]) == ["left", "right"] and details["wake_at"] is None
    retried = fold_execution(client.store, made["retried"])
    (row,) = call_rows(retried.history)
    assert [s["kind"] for s in row["segments"]] == ["attempt", "wait", "attempt"]
    assert row["segments"][0]["end"] == row["segments"][1]["start"]
    assert row["segments"][-1]["end"] == row["ended_at"]
