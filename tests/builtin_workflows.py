"""What the in-process tests of flux.tasks' built-ins share (test_parallel, test_graph,
test_subworkflows, test_recorded_values, test_timers_and_pauses, test_cancellation, test_secrets,
test_output_storage, test_cache, test_builtins): the logs their task bodies and workflows write,
the tasks and workflows more than one of them uses, and the check that a run cut after any record
resumes correctly.

Each of those test files clears the logs before each test with an autouse fixture that calls
`reset()`. The real SIGKILL tests of the built-ins are in tests/test_builtins_crash.py."""

from __future__ import annotations

import asyncio
from typing import Any

from flux import ExecutionContext, task, workflow
from flux.tasks import idempotency_key, pipeline
from tests.support.journals import every_cut

RAN: list[str] = []  # "<execution_id>:<call_id>" of every task body that started
LOG: list[str] = []  # what bodies did, in order
SEEN: list[Any] = []  # what workflow code saw, once per run of the workflow function
INFLIGHT = {"now": 0, "peak": 0}


def reset() -> None:
    RAN.clear()
    LOG.clear()
    SEEN.clear()
    INFLIGHT.update(now=0, peak=0)


def ran() -> str:
    """Logs, in RAN, that the body of the current task call started."""
    key = idempotency_key()
    RAN.append(key)
    return key


def call_ids_ran() -> set[str]:
    return {key.rpartition(":")[2] for key in RAN}


def assert_every_cut_resumes(wf: Any, input: Any, expected: Any) -> int:
    """Runs `wf` once, then for every k cuts its journal after k records (a crash there) and
    resumes: the output is the uninterrupted one and no body whose completion was recorded
    before the cut runs again. Returns how many cuts were tried."""
    first = wf.run(input)
    assert first.status == "completed" and first.output == expected
    tried = 0
    for k, kept in every_cut(first):
        done = {r["call_id"] for r in kept if r["kind"] == "task_completed"}
        RAN.clear()
        again = wf.run(execution_id=first.execution_id)
        assert again.status == "completed" and again.output == expected, (k, again.output)
        assert not call_ids_ran() & done, f"cut after {k} records: {sorted(call_ids_ran() & done)} ran again"
        tried += 1
    return tried


@task
async def hang(x: int) -> None:
    ran()
    LOG.append(f"start:{x}")
    await asyncio.sleep(60)
    LOG.append(f"end:{x}")


@task
async def fails(x: int) -> None:
    ran()
    LOG.append(f"fail:{x}")
    raise ValueError(f"no {x}")


@task
async def inc(x: int) -> int:
    ran()
    return x + 1


@task
async def double(x: int) -> int:
    ran()
    return x * 2


@task
async def describe(x: int) -> str:
    ran()
    return f"<{x}>"


@workflow
async def piped(ctx: ExecutionContext[int]) -> str:
    return await pipeline(inc, double, inc, describe, input=ctx.input)


@task
async def child_step(x: int) -> int:
    ran()
    return x + 10


@workflow
async def kid(ctx: ExecutionContext[int]) -> int:
    a = await child_step(ctx.input)
    b = await child_step(a)
    return a + b
