"""Changing code under running executions with `ctx.patched` (SPEC.md 4.10).

Executions that shipped before the change was deployed replay `ship`; new ones, and ones that
had not reached this point yet, run `ship_tracked`. Once no old execution is in flight, delete
the `patched` branch and keep only the new call.

    flux exec examples/versioning.py order --input '{"id": "A-7", "amount": 12}'
"""

from __future__ import annotations

from flux import ExecutionContext, task, workflow


@task
async def charge(order: dict) -> dict:
    return {**order, "paid": True}


@task
async def ship(order: dict) -> str:
    return f"label-{order['id']}"


@task
async def ship_tracked(order: dict) -> str:
    return f"label-{order['id']}-tracked"


@workflow
async def order(ctx: ExecutionContext[dict]) -> str:
    paid = await charge(ctx.input)
    if ctx.patched("ship-with-tracking"):
        return await ship_tracked(paid)
    return await ship(paid)
