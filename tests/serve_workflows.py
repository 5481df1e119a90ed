"""Workflows that the `flux serve` tests run in a real server process (`flux serve
tests/serve_workflows.py`): one for each status an execution can reach."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from flux import ExecutionContext, task, workflow
from flux.tasks import call, pause, sleep

_ATTEMPTS: dict[str, int] = {}


@task
async def step(n: int) -> int:
    return n * 2


@task
async def fail(message: str) -> None:
    raise ValueError(message)


@task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@task
async def tick(i: int, delay: float) -> int:
    if delay:
        await asyncio.sleep(delay)
    return i


@task.with_options(retry_max_attempts=3, retry_delay=0.05, retry_backoff=1)
async def flaky(key: str, failures: int) -> str:
    """Fails `failures` times for a key, then succeeds."""
    _ATTEMPTS[key] = _ATTEMPTS.get(key, 0) + 1
    if _ATTEMPTS[key] <= failures:
        raise ConnectionError(f"attempt {_ATTEMPTS[key]} of {key} failed")
    return f"{key} after {_ATTEMPTS[key]} attempts"


@task
async def item(i: int, fail_every: int) -> int:
    if fail_every and i % fail_every == fail_every - 1:
        raise ValueError(f"item {i} refused")
    return i


@workflow
async def greet(ctx: ExecutionContext[Any]) -> Any:
    """One task: completes at once."""
    return await step(ctx.input if isinstance(ctx.input, int) else 1)


@workflow
async def echo(ctx: ExecutionContext[Any]) -> Any:
    """Returns its input and its type's name, as the workflow received it."""
    value = ctx.input
    return {
        "type": type(value).__name__,
        "value": value,
        "plus_one": value + 1 if isinstance(value, (int, Decimal)) else None,
    }


@workflow
async def approval(ctx: ExecutionContext[Any]) -> Any:
    """Pauses at "approve" until resumed."""
    first = await step(1)
    answer = await pause("approve")
    return {"first": first, "answer": answer}


@workflow
async def two_pauses(ctx: ExecutionContext[Any]) -> Any:
    a, b = await asyncio.gather(pause("left"), pause("right"))
    return [a, b]


@workflow
async def explode(ctx: ExecutionContext[Any]) -> Any:
    """Fails with a ValueError raised by a task."""
    await step(1)
    await fail(ctx.input or "boom")


@workflow
async def slow(ctx: ExecutionContext[Any]) -> Any:
    """Runs one task for `input` seconds."""
    return await nap(float(ctx.input))


@workflow
async def sleeper(ctx: ExecutionContext[Any]) -> Any:
    """A durable timer of `input` seconds."""
    await sleep(float(ctx.input))
    return "awake"


@workflow
async def counter(ctx: ExecutionContext[Any]) -> Any:
    """`n` tasks one after another, `delay` seconds each: a journal that grows while watched."""
    total = 0
    for i in range(ctx.input["n"]):
        total += await tick(i, ctx.input.get("delay", 0))
    return total


@workflow
async def retrying(ctx: ExecutionContext[Any]) -> Any:
    """A task that fails `failures` times and is retried."""
    return await flaky(ctx.input["key"], ctx.input.get("failures", 1))


@workflow
async def wide(ctx: ExecutionContext[Any]) -> Any:
    """`n` tasks at once; every `fail_every`-th one fails (and the workflow goes on)."""
    n, fail_every = ctx.input["n"], ctx.input.get("fail_every", 0)
    results = await asyncio.gather(*(item(i, fail_every) for i in range(n)), return_exceptions=True)
    return {
        "ok": sum(1 for r in results if not isinstance(r, BaseException)),
        "failed": sum(1 for r in results if isinstance(r, BaseException)),
    }


@workflow
async def child(ctx: ExecutionContext[Any]) -> Any:
    return await step(ctx.input)


@workflow
async def parent(ctx: ExecutionContext[Any]) -> Any:
    """Calls `child` as a sub-workflow."""
    return await call(child, ctx.input)


@task.with_options(secret_requests=["SERVE_TEST_SECRET"])
async def read_secret(secrets: dict[str, str]) -> str:
    return f"the secret is {secrets['SERVE_TEST_SECRET']}"


@workflow
async def uses_secret(ctx: ExecutionContext[Any]) -> Any:
    """Hands a secret to a task, which returns it: the journal records its name only."""
    return await read_secret()


@workflow
async def showcase(ctx: ExecutionContext[Any]) -> Any:
    """An order: a charge that is retried, three reservations at once, an optional step that
    fails, a short durable sleep, then a pause for a person's approval."""
    charged = await flaky(f"charge-{ctx.execution_id}", 1)
    reserved = await asyncio.gather(*(tick(i, 0.05 * (i + 1)) for i in range(3)))
    try:
        await fail("gift wrap is out of stock")
    except Exception:  # noqa: BLE001 - the step is optional
        pass
    await sleep(0.3)
    approved = await pause("approve")
    return {"charged": charged, "reserved": reserved, "approved": approved}
