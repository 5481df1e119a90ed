"""Take the fastest of several quotes, give up on a slow one: a race that replays exactly.

    flux exec examples/fastest_quote.py cheapest_fast_quote --input '{"item": "lamp", "within": 0.5}'
    flux replay <execution_id> --file examples/fastest_quote.py

`asyncio.wait(..., return_when=FIRST_COMPLETED)` and `asyncio.wait_for(..., timeout)` record
which quotes they saw arrive, so a replay (or a resume after a crash) sees the same winner,
although every recorded quote is there at once then (SPEC.md 4.1).
"""

from __future__ import annotations

import asyncio

from flux import ExecutionContext, task, workflow

DELAYS = {"north": 0.2, "south": 0.05, "west": 5.0}  # seconds each supplier takes to answer


@task
async def quote(supplier: str, item: str) -> dict:
    await asyncio.sleep(DELAYS[supplier])
    return {"supplier": supplier, "item": item, "price": 10 + len(supplier)}


@task
async def order(offer: dict) -> str:
    return f"ordered {offer['item']} from {offer['supplier']} at {offer['price']}"


@workflow
async def cheapest_fast_quote(ctx: ExecutionContext[dict]) -> dict:
    item, within = ctx.input["item"], ctx.input["within"]
    asked = [asyncio.create_task(quote(supplier, item)) for supplier in ("north", "south")]
    done, pending = await asyncio.wait(asked, return_when=asyncio.FIRST_COMPLETED)
    for slower in pending:
        slower.cancel()
    first = done.pop().result()
    try:  # a third supplier gets `within` seconds to beat it
        other = await asyncio.wait_for(quote("west", item), timeout=within)
    except TimeoutError:
        other = None
    best = first if other is None or first["price"] <= other["price"] else other
    return {"first": first["supplier"], "west_in_time": other is not None, "result": await order(best)}
