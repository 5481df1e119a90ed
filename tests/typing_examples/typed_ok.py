"""A typed Flux program: mypy --strict and pyright accept it (tests/test_typing.py)."""

from __future__ import annotations

from flux import ExecutionContext, task, workflow
from flux.tasks import call, parallel


@task
async def charge(order_id: str, amount: int) -> float:
    return amount * 1.2


@task.with_options(retry_max_attempts=3, retry_on=(ConnectionError,), timeout=30)
def ship(order_id: str) -> str:
    return f"shipped {order_id}"


@workflow
async def child(ctx: ExecutionContext[int]) -> int:
    return ctx.input * 2


@workflow
async def order(ctx: ExecutionContext[str]) -> str:
    total: float = await charge(ctx.input, 3)
    label: str = await ship(ctx.input)
    doubled: int = await call(child, 4)
    totals: list[float] = await parallel(charge("a", 1), charge("b", 2))
    many: list[float] = await charge.map(["x", "y"])
    return f"{total} {label} {doubled} {totals} {many}"


def main() -> None:
    ctx = order.run("A-1")
    reply: str = ctx.output
    name: str = ctx.input
    print(reply, name, ctx.execution_id)
