"""The workflows the suite runs on this engine; the peers' scripts mirror them with the same bodies.

Kept apart from `suite.py` so that the subprocesses (`flux exec`, `flux replay`, the W5 resume)
load this small file and nothing else. Run as a script, it is the W5 child:

    python benchmarks/flux_workloads.py resume HOME EXECUTION_ID TASKS DURABILITY

which resumes a paused execution, checks that it completed with the expected output, and prints
one JSON line: the seconds the resume took and the peak resident memory of the process (VmHWM).
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from flux import ExecutionContext, task, workflow
from flux.tasks import pause

__all__ = ["concurrent_executions", "noop", "one_task", "parallel", "paused_at_end", "peak_rss_bytes", "sequential"]


@task
async def noop(i: int) -> int:
    return i


@workflow
async def sequential(ctx: ExecutionContext[int]) -> int:
    for i in range(ctx.input):
        await noop(i)
    return ctx.input


@workflow
async def parallel(ctx: ExecutionContext[int]) -> int:
    results = await asyncio.gather(*(noop(i) for i in range(ctx.input)))
    return sum(results)


@workflow
async def paused_at_end(ctx: ExecutionContext[int]) -> int:
    for i in range(ctx.input):
        await noop(i)
    await pause("end")
    return ctx.input


@workflow
async def one_task(ctx: ExecutionContext[None]) -> int:
    return await noop(1)


async def concurrent_executions(executions: int, tasks: int, home: str, durability: str) -> list[ExecutionContext[int]]:
    """W4: `executions` runs of `sequential(tasks)` at once in this process's event loop."""
    return list(
        await asyncio.gather(
            *(sequential.run_async(tasks, store=home, durability=durability) for _ in range(executions))
        )
    )


def peak_rss_bytes() -> int:
    """The peak resident set size of this process (VmHWM), in bytes."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line")


def _resume_child(home: str, execution_id: str, tasks: int, durability: str) -> int:
    start = time.perf_counter()
    ctx = paused_at_end.resume(execution_id, None, store=home, durability=durability)
    seconds = time.perf_counter() - start
    if not (ctx.has_succeeded and ctx.output == tasks):
        print(f"resume of {execution_id} ended {ctx.status} with {ctx.output!r}, expected {tasks}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps({"seconds": seconds, "peak_rss": peak_rss_bytes()}).decode() + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "resume":
        sys.exit("usage: flux_workloads.py resume HOME EXECUTION_ID TASKS DURABILITY")
    # Through the module, not __main__, so the workflow is the one the journal names.
    import flux_workloads

    sys.exit(flux_workloads._resume_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
