"""`flux recover` resumes interrupted executions side by side, and leaves an execution whose
durable wait is not due yet for later instead of letting it hold up the rest."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from flux import ExecutionContext, task, workflow
from flux.clock import VirtualClock
from flux.recover import recover_store
from flux.tasks import pause, sleep
from tests.conftest import ROOT
from tests.support.journals import cut_after

ARRIVED: set[int] = set()


@task
async def meet(n: int) -> int:
    """Returns once both executions' bodies run at the same time; fails if they never do."""
    ARRIVED.add(n)
    for _ in range(500):
        if len(ARRIVED) >= 2:
            return n
        await asyncio.sleep(0.01)
    raise TimeoutError(f"execution {n} ran alone: the other one never started beside it")


@workflow
async def rendezvous(ctx: ExecutionContext[int]) -> int:
    return await meet(ctx.input)


@task
async def first(n: int) -> int:
    return n


@workflow
async def sleeper(ctx: ExecutionContext[int]) -> int:
    await first(ctx.input)
    await sleep(3600)
    return ctx.input


def test_interrupted_executions_are_recovered_side_by_side(home: Path) -> None:
    ARRIVED.clear()
    ARRIVED.update({1, 2})  # the first runs meet at once; their journals are then cut
    a, b = rendezvous.run(1), rendezvous.run(2)
    for ctx in (a, b):
        cut_after(ctx, kind="task_started")  # died while the body ran
    ARRIVED.clear()
    rows = recover_store(str(home), concurrency=4)
    assert {r.execution_id: r.status for r in rows} == {a.execution_id: "completed", b.execution_id: "completed"}
    assert ARRIVED == {1, 2}


def test_an_execution_waiting_on_a_durable_timer_is_left_for_later(home: Path) -> None:
    clock = VirtualClock(start=1_800_000_000)
    waiting = sleeper.run(5, clock=VirtualClock(start=1_800_000_000))
    cut_after(waiting, kind="timer_started")  # died during its one-hour sleep
    ARRIVED.clear()
    ARRIVED.update({8, 9})
    other = rendezvous.run(9)
    cut_after(other, kind="task_started")
    ARRIVED.clear()
    ARRIVED.add(8)  # so the recovered body meets at once
    rows = {r.execution_id: r for r in recover_store(str(home), clock=clock)}
    assert rows[waiting.execution_id].status == "waiting"
    assert rows[waiting.execution_id].wake_at == 1_800_000_000 + 3600
    assert rows[other.execution_id].status == "completed"
    later = VirtualClock(start=1_800_000_000 + 3601)
    rows = {r.execution_id: r for r in recover_store(str(home), clock=later)}
    assert rows[waiting.execution_id].status == "completed"


@workflow
async def approval(ctx: ExecutionContext[int]) -> int:
    got = await first(ctx.input)
    return got + await pause("approve")


def test_executions_recovered_side_by_side_up_to_their_pauses_all_end_paused(home: Path) -> None:
    # Each run waiting at its pause settles a few loop turns; one run's turn is not work that
    # keeps the other from settling (they used to wait on each other forever, busy).
    runs = [approval.run(n) for n in range(3)]
    for ctx in runs:
        cut_after(ctx, kind="task_completed")  # died before reaching its pause
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "flux", "recover", "--store", str(home)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[-1] for line in done.stdout.splitlines() if line.strip()}
    assert all(rows[ctx.execution_id] == "paused" for ctx in runs), done.stdout
    for ctx in runs:
        assert approval.resume(ctx.execution_id, 10).output == ctx.input + 10
