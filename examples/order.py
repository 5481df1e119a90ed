"""An order workflow with several tasks: reserve stock, charge, ship, notify.

    flux exec examples/order.py process_order --input '{"order_id": "A-1", "items": ["book", "pen"], "amount": 42.5}'
"""

from __future__ import annotations

from dataclasses import dataclass

from flux import ExecutionContext, task, workflow
from flux.tasks import idempotency_key


@dataclass(frozen=True)
class Receipt:
    order_id: str
    charged: float
    payment_ref: str


@task
async def reserve_stock(items: list[str]) -> dict[str, int]:
    return dict.fromkeys(items, 1)


@task.with_options(name="charge_{order_id}")
async def charge(order_id: str, amount: float) -> Receipt:
    # The key is the same on every attempt, so a payment API can refuse a second charge.
    return Receipt(order_id, amount, payment_ref=idempotency_key())


@task
def ship(order_id: str, reserved: dict[str, int]) -> str:
    return f"parcel-{order_id}-{sum(reserved.values())}"


@task
async def notify(order_id: str, parcel: str) -> str:
    return f"order {order_id} shipped as {parcel}"


@workflow
async def process_order(ctx: ExecutionContext[dict]) -> dict:
    order = ctx.input
    reserved = await reserve_stock(order["items"])
    receipt = await charge(order["order_id"], order["amount"])
    parcel = await ship(order["order_id"], reserved)
    message = await notify(order["order_id"], parcel)
    return {"receipt": receipt.payment_ref, "parcel": parcel, "message": message}
