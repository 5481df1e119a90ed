"""Workflows that worker processes run in the fleet tests (tests/test_fleet.py).

Every task body counts its side effect in the table `effects` of the database named by
$FLUX_TEST_EFFECTS, keyed by `idempotency_key()`: the tests read how often each body ran.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import psycopg

from flux import ExecutionContext, task, workflow
from flux.tasks import call, idempotency_key, pause, sleep

_local = threading.local()
_counts: dict[str, int] = {}


def effect(kind: str) -> int:
    """Counts one run of the calling body; returns how many runs of it there have been. Waits
    out a database that restarts (the fault tests stop it). Without $FLUX_TEST_EFFECTS the
    count is kept in the process."""
    if not os.environ.get("FLUX_TEST_EFFECTS"):
        key = idempotency_key()
        _counts[key] = _counts.get(key, 0) + 1
        return _counts[key]
    conn = None
    for _attempt in range(300):
        try:
            conn = getattr(_local, "conn", None)
            if conn is None or conn.closed:
                conn = _local.conn = psycopg.connect(os.environ["FLUX_TEST_EFFECTS"], autocommit=True)
            row = conn.execute(
                "INSERT INTO effects (key, kind, n) VALUES (%s, %s, 1) ON CONFLICT (key) DO UPDATE SET n = effects.n "
                "+ 1 RETURNING n",
                (idempotency_key(), kind),
            ).fetchone()
            return int(row[0])
        except psycopg.OperationalError:
            if conn is not None:
                conn.close()
            time.sleep(0.1)
    raise RuntimeError("the effects database did not come back")


@task
def charge(order: str, i: int) -> int:
    effect("charge")
    delay = float(os.environ.get("FLUX_TEST_TASK_SECONDS", "0"))
    if delay:
        time.sleep(delay)
    return i * 2


@task.with_options(retry_max_attempts=2, retry_delay=0.05, retry_backoff=1)
def flaky(order: str) -> int:
    if effect("flaky") == 1:
        raise RuntimeError("the first attempt fails")
    return 1


@workflow
async def order_flow(ctx: ExecutionContext[dict[str, Any]]) -> int:
    values = await asyncio.gather(*(charge(ctx.input["id"], i) for i in range(ctx.input["n"])))
    extra = await flaky(ctx.input["id"]) if ctx.input.get("flaky", True) else 0
    return sum(values) + extra


@workflow
async def parent_flow(ctx: ExecutionContext[str]) -> int:
    """Runs one order as a sub-workflow."""
    return int(await call(order_flow, {"id": ctx.input, "n": 1, "flaky": False}))


@workflow
async def nap_flow(ctx: ExecutionContext[float]) -> str:
    await sleep(ctx.input)
    return await stamp()


@workflow
async def grouped_nap_flow(ctx: ExecutionContext[float]) -> list[str]:
    """Two branches of a TaskGroup, each asleep for `ctx.input` seconds, then a stamp."""

    async def lane() -> str:
        await sleep(ctx.input)
        return await stamp()

    async with asyncio.TaskGroup() as group:
        first = group.create_task(lane())
        second = group.create_task(lane())
    return [first.result(), second.result()]


@task
def stamp() -> str:
    effect("stamp")
    return "woke"


@workflow
async def approval_flow(ctx: ExecutionContext[str]) -> str:
    first = await charge(ctx.input, 1)
    answer = await pause("approve")
    return f"{first}:{answer}"


@workflow
async def long_flow(ctx: ExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await charge("long", i)
    return total


@task
def step_a() -> str:
    effect("a")
    return "a"


@task
def step_b() -> str:
    effect("b")
    return "b"


@workflow
async def changing_flow(ctx: ExecutionContext[float]) -> str:
    """Its code changes under it: FLUX_TEST_VARIANT=b calls another task where `a` ran."""
    first = await (step_b() if os.environ.get("FLUX_TEST_VARIANT") == "b" else step_a())
    await sleep(ctx.input)
    return first + await step_a()


@workflow
async def timed_flow(ctx: ExecutionContext[float]) -> Any:
    """Waits at a pause that goes on by itself after `ctx.input` seconds."""
    answer = await pause("auto", delay=ctx.input)
    return ["woke", answer]
