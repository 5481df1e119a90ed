"""Workflows for tests/test_testing.py: one correct, four with a planted determinism bug.

They live in a module of their own so that the replay subprocess of flux.testing can load them
(a journal's header names the workflow's file). Task bodies log each run to `RUNS`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import uuid
from typing import Any

from flux import ExecutionContext, task, workflow
from flux.tasks import choice, idempotency_key, now, pause, sleep

RUNS: list[str] = []
_ATTEMPTS: dict[str, int] = {}


# -- a correct workflow: fan-out, a pause, retries --------------------------------------------


@task
async def price(item: int) -> int:
    RUNS.append(f"price {item}")
    await asyncio.sleep(0.001 * (item % 3))  # lanes finish in another order than they started
    return item * 10


@task
def tax(amount: int) -> int:
    RUNS.append(f"tax {amount}")
    return amount + amount // 5


@task.with_options(retry_max_attempts=2, retry_delay=0.001)
async def reserve(count: int) -> str:
    key = idempotency_key()
    _ATTEMPTS[key] = _ATTEMPTS.get(key, 0) + 1
    if _ATTEMPTS[key] == 1:
        raise ConnectionError("stock service unavailable")  # the first attempt fails; a retry succeeds
    return f"reserved {count}"


async def _lane(item: int) -> int:
    return await tax(await price(item))


@workflow
async def fulfil(ctx: ExecutionContext[list[int]]) -> dict[str, Any]:
    totals = await asyncio.gather(*(_lane(item) for item in ctx.input))
    approval = await pause("approve")
    reservation = await reserve(len(totals))
    return {"totals": totals, "approval": approval, "reservation": reservation, "sum": sum(totals)}


# -- (a) the wall clock read outside a task ---------------------------------------------------


@task
async def fetch_quote(n: int) -> int:
    RUNS.append(f"fetch_quote {n}")
    await asyncio.sleep(0.05)
    return n * 2


@task
async def notify_slow(quote: int) -> str:
    RUNS.append(f"notify_slow {quote}")
    return f"supplier was slow for quote {quote}"


@workflow
async def quote(ctx: ExecutionContext[int]) -> dict[str, Any]:
    started = time.time()
    amount = await fetch_quote(ctx.input)
    # BUG: elapsed wall-clock time, read outside a task. Live, the supplier takes 50 ms; on
    # replay its recorded answer is at hand at once, so the workflow takes the other branch.
    escalated = time.time() - started > 0.025
    if escalated:
        await notify_slow(amount)
    return {"quote": amount, "escalated": escalated}


# -- (b) `random` used directly ----------------------------------------------------------------


@task
async def reserve_stock(order: int) -> int:
    RUNS.append(f"reserve_stock {order}")
    return order


@task
async def ship(order: int, warehouse: str) -> str:
    RUNS.append(f"ship {order}")
    return f"order {order} shipped"


@workflow
async def dispatch(ctx: ExecutionContext[int]) -> str:
    order = await reserve_stock(ctx.input)
    warehouse = random.choice(["north", "south", "east", "west"])  # BUG: use flux.tasks.choice
    return await ship(order, warehouse)


# -- (c) iterating a set of strings ------------------------------------------------------------

TEAM = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


@task
async def greet(name: str, round_no: int) -> str:
    RUNS.append(f"greet {name}")
    return f"hello {name} ({round_no})"


@workflow
async def greet_team(ctx: ExecutionContext[int]) -> list[str]:
    greetings = []
    # BUG: a set of strings iterates in an order that changes between processes (hash
    # randomization); iterate sorted(...) instead.
    for name in set(TEAM):
        greetings.append(await greet(name, ctx.input))
    return sorted(greetings)


# -- (d) a task result whose type changes on replay --------------------------------------------


class ShopTime(dt.tzinfo):
    """A hand-written time zone. The journal keeps only a datetime's UTC offset (and the key of a
    zoneinfo.ZoneInfo), so on replay this comes back as a plain datetime.timezone."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, when: dt.datetime | None) -> str:
        return "SHOP"

    def __repr__(self) -> str:
        return "ShopTime()"


@task
async def opening_time(shop: int) -> dt.datetime:
    RUNS.append(f"opening_time {shop}")
    return dt.datetime(2026, 3, 1, 9, shop % 60, tzinfo=ShopTime())


@workflow
async def opening(ctx: ExecutionContext[int]) -> dict[str, Any]:
    opens = await opening_time(ctx.input)
    return {"shop": ctx.input, "opens": opens}


# -- more correct workflows --------------------------------------------------------------------


@workflow
async def dispatch_fixed(ctx: ExecutionContext[int]) -> str:
    order = await reserve_stock(ctx.input)
    warehouse = await choice(["north", "south", "east", "west"])  # recorded: replay sees the same one
    return await ship(order, warehouse)


@task
async def refund_payment(order: int) -> str:
    RUNS.append(f"refund_payment {order}")
    raise ValueError(f"cannot refund order {order}")


@workflow
async def refund(ctx: ExecutionContext[int]) -> str:
    await reserve_stock(ctx.input)
    return await refund_payment(ctx.input)  # fails the workflow, the same way on every run


@workflow
async def reminder(ctx: ExecutionContext[int]) -> str:
    order = await reserve_stock(ctx.input)
    await sleep(3600)  # a durable timer: an hour of real time, or none on a VirtualClock
    return await ship(order, "north")


@task.with_options(secret_requests=["FLUX_TESTING_NO_SUCH_SECRET"])
async def charge(order: int, secrets: dict[str, str]) -> str:
    return f"charged {order}"


@workflow
async def needs_secret(ctx: ExecutionContext[int]) -> str:
    return await charge(ctx.input)


@task
async def issue_ticket(order: int) -> str:
    RUNS.append(f"issue_ticket {order}")
    return f"T-{uuid.uuid4().hex[:8]}"  # a new id each time the body runs: the world, not the workflow


@workflow
async def ticketing(ctx: ExecutionContext[int]) -> dict[str, Any]:
    ticket = await issue_ticket(ctx.input)
    issued = await now()  # recorded, but a run that reaches it again live gets another time
    label = await ship(ctx.input, ticket)
    return {"ticket": ticket, "issued": issued, "label": label}


# -- reacting to completion order (SPEC.md 4.1) -------------------------------------------------


@task
async def probe(region: str) -> str:
    RUNS.append(f"probe {region}")
    return region


@task
async def deploy(region: str) -> str:
    return f"deployed to {region}"


@workflow
async def fastest_region(ctx: ExecutionContext[int]) -> str:
    probes = [asyncio.ensure_future(probe(region)) for region in ("eu", "us", "ap")]
    for finished in asyncio.as_completed(probes):  # not a bug: the order observed is recorded
        first = await finished
        break
    await asyncio.gather(*probes)
    return await deploy(first)


@workflow
async def first_responder(ctx: ExecutionContext[int]) -> str:
    answered: list[str] = []

    async def ask(region: str) -> None:
        answered.append(await probe(region))  # BUG: the order lanes finish in, seen through a list

    await asyncio.gather(*(ask(region) for region in ("eu", "us", "ap")))
    return await deploy(answered[0])


@workflow
async def greet_trio(ctx: ExecutionContext[int]) -> list[str]:
    # BUG: as greet_team, with a set of three: small sets change order between processes too.
    return [await greet(name, ctx.input) for name in {"ann", "bob", "cy"}]
