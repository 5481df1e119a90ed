"""The same program with mistakes that type checkers must report (tests/test_typing.py)."""

from __future__ import annotations

from flux import ExecutionContext, task, workflow
from flux.tasks import call, parallel


@task
async def charge(order_id: str, amount: int) -> float:
    return amount * 1.2


@workflow
async def order(ctx: ExecutionContext[str]) -> str:
    await charge("x", 3, 4)  # ERROR: one argument too many
    total: str = await charge("x", 3)  # ERROR: the result is a float
    await charge(order_id=1, amount=2)  # ERROR: order_id is a str
    return total


@task.with_options(retry_max_attempt=3)  # ERROR: no such option
async def misspelt() -> None: ...


def main() -> None:
    ctx = order.run(5)  # ERROR: the input is a str
    reply: int = ctx.output  # ERROR: the output is a str
    print(reply)


@workflow
async def child(ctx: ExecutionContext[int]) -> int:
    return ctx.input


@workflow
async def fan_out(ctx: ExecutionContext[None]) -> None:
    names: list[str] = await parallel(charge("a", 1), charge("b", 2))  # ERROR: the results are floats
    mapped: list[str] = await charge.map(["x", "y"])  # ERROR: the results are floats
    label: str = await call(child, 4)  # ERROR: the child returns an int
    await call(child, "four")  # ERROR: the child takes an int
    print(names, mapped, label)


again = charge.with_options(3)  # ERROR: options are keyword-only
