"""Workflows that react to completion order (SPEC.md 4.1), for tests/test_completion_order.py.

`wait` and `FIRST_COMPLETED` are imported from asyncio before Flux, as sorted imports put them:
`@workflow` rebinds such names to the recording versions.
"""

from __future__ import annotations

import asyncio
from asyncio import FIRST_COMPLETED, wait

from flux import ExecutionContext, task, workflow
from flux.tasks import pause

BODIES: list[str] = []  # every body that ran, in order: "fetch <source>"


@task
async def fetch(source: str, delay: float) -> str:
    BODIES.append(f"fetch {source}")
    await asyncio.sleep(delay)
    return source


@task
async def report(text: str) -> str:
    BODIES.append(f"report {text}")
    return f"reported {text}"


@workflow
async def race(ctx: ExecutionContext[list[float]]) -> dict[str, object]:
    """The first of three sources wins; the others are cancelled."""
    slow, fast, middle = ctx.input
    lanes = {
        asyncio.create_task(fetch("slow", slow)),
        asyncio.create_task(fetch("fast", fast)),
        asyncio.create_task(fetch("middle", middle)),
    }
    done, pending = await wait(lanes, return_when=FIRST_COMPLETED)
    for lane in pending:
        lane.cancel()
    winners = sorted(lane.result() for lane in done)
    return {"done": len(done), "pending": len(pending), "report": await report(winners[0])}


@workflow
async def arrivals(ctx: ExecutionContext[list[float]]) -> str:
    """Results in the order they arrived, over coroutines given as a list."""
    seen = [await arrival for arrival in asyncio.as_completed([fetch(str(i), d) for i, d in enumerate(ctx.input)])]
    return await report(",".join(seen))


@workflow
async def deadline(ctx: ExecutionContext[float]) -> str:
    """Waits for a slow source at most `ctx.input` seconds, then gives up on it."""
    slow = asyncio.create_task(fetch("slow", 30.0))
    done, pending = await asyncio.wait([slow], timeout=ctx.input)
    if done:
        return await report("in time")
    slow.cancel()
    return await report("gave up")


@workflow
async def arrivals_in_time(ctx: ExecutionContext[float]) -> list[str]:
    """as_completed with a timeout: the quick source arrives, the slow one times out."""
    got: list[str] = []
    for arrival in asyncio.as_completed([fetch("slow", 30.0), fetch("quick", 0.001)], timeout=ctx.input):
        try:
            got.append(await arrival)
        except TimeoutError:
            got.append("timeout")
    return got


@workflow
async def in_turn(ctx: ExecutionContext[list[float]]) -> list[str]:
    """The loop that hands `pending` back to wait until every lane is in, named by the code."""
    pending = {asyncio.create_task(fetch(f"s{i}", d), name=f"lane-{i}") for i, d in enumerate(ctx.input)}
    order: list[str] = []
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        order.extend(sorted(t.result() for t in done))
        if pending:
            order.append(await report(f"{len(pending)} left"))
    return order


@task
async def fastest_mirror(delays: list[float]) -> str:
    """A task body racing its own requests: live on every run, never recorded."""
    async def get(i: int, d: float) -> str:
        await asyncio.sleep(d)
        return f"mirror {i}"

    requests = [asyncio.create_task(get(i, d)) for i, d in enumerate(delays)]
    done, pending = await asyncio.wait(requests, return_when=asyncio.FIRST_COMPLETED)
    for request in pending:
        request.cancel()
    return done.pop().result()


@workflow
async def download(ctx: ExecutionContext[list[float]]) -> str:
    return await fastest_mirror(ctx.input)


@workflow
async def set_of_coroutines(ctx: ExecutionContext[None]) -> list[str]:
    return [await a for a in asyncio.as_completed({fetch("a", 0), fetch("b", 0)})]


@workflow
async def same_names(ctx: ExecutionContext[None]) -> object:
    lanes = [asyncio.create_task(fetch(s, 0), name="lane") for s in ("a", "b")]
    return await asyncio.wait(lanes, return_when=FIRST_COMPLETED)


@workflow
async def task_names(ctx: ExecutionContext[None]) -> list[str]:
    mine = asyncio.create_task(fetch("a", 0))
    named = asyncio.create_task(fetch("b", 0), name="backup")
    await asyncio.gather(mine, named)
    return [mine.get_name(), named.get_name()]


@workflow
async def bounded(ctx: ExecutionContext[float]) -> str:
    """wait_for: a source slower than the limit is given up on."""
    try:
        got = await asyncio.wait_for(fetch("source", ctx.input), timeout=0.05)
    except TimeoutError:
        got = "timed out"
    return await report(got)


async def fetch_within_deadline(delay: float) -> str:
    """asyncio.timeout around a task call that takes `delay` seconds (awaited in the caller's
    branch: the timeout's call id comes first, then the fetch's)."""
    try:
        async with asyncio.timeout(0.05):
            return await fetch("source", delay)
    except TimeoutError:
        return "timed out"


@workflow
async def scoped(ctx: ExecutionContext[float]) -> str:
    return await report(await fetch_within_deadline(ctx.input))


@workflow
async def scoped_at(ctx: ExecutionContext[float]) -> str:
    """asyncio.timeout_at, moved with reschedule once entered."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(None) as scope:
            scope.reschedule(loop.time() + 0.05)
            got = await fetch("source", ctx.input)
    except TimeoutError:
        got = "timed out"
    return await report(got)


@workflow
async def scoped_then_pause(ctx: ExecutionContext[float]) -> str:
    got = await fetch_within_deadline(ctx.input)
    answer = await pause("confirm")
    return await report(f"{got}, {answer}")


@workflow
async def nested_scopes(ctx: ExecutionContext[None]) -> list[str]:
    """The outer deadline passes first: it cuts through the inner block, which does not expire."""
    out: list[str] = []
    try:
        async with asyncio.timeout(0.05):
            try:
                async with asyncio.timeout(10):
                    out.append(await fetch("source", 30.0))
            except TimeoutError:
                out.append("inner expired")
    except TimeoutError:
        out.append("outer expired")
    out.append(await report("done"))
    return out


@workflow
async def pause_in_scope(ctx: ExecutionContext[None]) -> str:
    try:
        async with asyncio.timeout(30):
            answer = await pause("inside")
    except TimeoutError:
        answer = "timed out"
    return await report(str(answer))
