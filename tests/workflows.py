"""Workflows used by the tests. Their task bodies log each run to `RUNS`, so a test can tell
which bodies ran again after a crash."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from flux import ExecutionContext, task, workflow
from flux.tasks import pause

RUNS: list[Any] = []
DELAYS: dict[Any, float] = {}


@task
async def step(tag: Any, value: int) -> int:
    RUNS.append(tag)
    delay = DELAYS.get(tag, 0.0)
    if delay:
        await asyncio.sleep(delay)
    return value * 2 + 1


@task
def sync_step(tag: Any, value: int) -> int:
    RUNS.append(tag)
    return value + 7


@task
async def boom(tag: Any) -> None:
    RUNS.append(tag)
    raise ValueError(f"boom {tag}")


async def _lane(prefix: str, lane: list[int]) -> int:
    total = 0
    for i, v in enumerate(lane):
        total += await step(f"{prefix}.{i}", v + total)
    return total


@workflow
async def program(ctx: ExecutionContext[list[Any]]) -> Any:
    """Interprets a generated program: ["seq", v] | ["par", [[v...], ...]] | ["pause", name] | ["sync", v]."""
    out: list[Any] = []
    for n, op in enumerate(ctx.input):
        kind = op[0]
        if kind == "seq":
            out.append(await step(f"s{n}", op[1]))
        elif kind == "sync":
            out.append(await sync_step(f"y{n}", op[1]))
        elif kind == "par":
            out.append(await asyncio.gather(*(_lane(f"p{n}.{j}", lane) for j, lane in enumerate(op[1]))))
        elif kind == "pause":
            out.append(await pause(op[1]))
        elif kind == "fail":
            try:
                await boom(f"f{n}")
            except Exception as err:  # noqa: BLE001 - the test records what the workflow saw
                out.append(type(err).__name__ + ":" + type(err.__cause__).__name__)
    return out


def random_delays(seed: int, tags: list[Any]) -> None:
    rng = random.Random(seed)
    DELAYS.clear()
    for tag in tags:
        DELAYS[tag] = rng.random() * 0.002
