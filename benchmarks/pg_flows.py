"""Workflows of benchmarks/bench_pg.py (worker processes import this file)."""

from __future__ import annotations

import asyncio
import os

from flux import ExecutionContext, task, workflow
from flux.tasks import pause


@task
async def noop(i: int) -> int:
    return i


@task
async def nap(i: int) -> int:
    await asyncio.sleep(float(os.environ.get("FLUX_BENCH_NAP", "0.01")))
    return i


@workflow
async def steps(ctx: ExecutionContext[int]) -> int:
    """`ctx.input` sequential tasks: each sync is one commit, shared across executions."""
    total = 0
    for i in range(ctx.input):
        total += await noop(i)
    return total


@workflow
async def naps(ctx: ExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await nap(i)
    return total


@workflow
async def steps_then_pause(ctx: ExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await noop(i)
    more = await pause("end")
    return total + more
