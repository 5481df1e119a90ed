"""W1-W4 on flux-core (the Flux project on PyPI), run inline in this process; prints one JSON object.

Run with the Python of its virtual environment (see setup_peers.py):

    ~/.cache/flux-bench-peers/flux-core/bin/python benchmarks/peers/flux_core_bench.py --tasks 1000 --runs 5

flux-core keeps executions in a SQLite database (`database_url`, default `sqlite:///.flux/flux.db`
relative to the current directory). This script points `FLUX_DATABASE_URL` at a fresh file under
`--dir` and changes into that folder, so no `flux.toml` or `pyproject.toml` of the caller is read.
`workflow.run(input)` runs an execution inline and saves its context (every event so far) at each
checkpoint. flux-core 0.87.5 sets `journal_mode=WAL` and `synchronous=NORMAL` on each SQLite
connection (flux/models.py): a commit reaches the WAL without an fsync, which happens at
checkpoints. Its commits are as durable as ours with durability "os", the row the suite compares
it with.

- W1: N sequential trivial tasks; W2: N tasks through `asyncio.gather`, then a sum.
- W3: `workflow.resume(execution_id, True)` of an execution paused (`pause("end")`) after N
  tasks: the same operation as ours. It loads the stored events and replays the N results.
- W4: 100 executions of 10 tasks at once in one event loop. flux-core's `run()` wraps one
  execution in `asyncio.run`, so this does what `run()` does (register the workflow, make an
  `ExecutionContext` with the save checkpoint, await the workflow) for 100 contexts under one
  `asyncio.gather`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from importlib.metadata import version
from typing import Any

from _common import BenchmarkError, Workload, emit, expect, parse_args, run_workloads, unavailable

ARGS = parse_args(__doc__.splitlines()[0]) if __name__ == "__main__" else None
if ARGS is not None:
    _store = tempfile.mkdtemp(prefix="flux-core-", dir=os.path.abspath(ARGS.dir))
    os.makedirs(os.path.join(_store, ".flux"))
    os.environ["FLUX_DATABASE_URL"] = "sqlite:///" + os.path.join(_store, ".flux", "flux.db")
    os.chdir(_store)

try:
    from flux import ExecutionContext, task, workflow
    from flux.tasks import pause
except ImportError as err:  # pragma: no cover - only when the venv is broken
    unavailable("flux-core", f"cannot import flux-core: {err}")
    sys.exit(0)

BODIES = 0  # how many task bodies ran in this process


@task
async def noop(i: int) -> int:
    global BODIES
    BODIES += 1
    return i


@workflow
async def sequential(ctx: ExecutionContext[int]):
    for i in range(ctx.input):
        await noop(i)
    return ctx.input


@workflow
async def parallel(ctx: ExecutionContext[int]):
    results = await asyncio.gather(*(noop(i) for i in range(ctx.input)))
    return sum(results)


@workflow
async def paused_at_end(ctx: ExecutionContext[int]):
    for i in range(ctx.input):
        await noop(i)
    await pause("end")
    return ctx.input


def _completed(ctx: Any, expected: Any, what: str) -> None:
    expect(
        ctx.has_succeeded and ctx.output == expected,
        f"{what} ended {ctx.state} with {ctx.output!r}, expected {expected!r}",
    )


def run_one(wf: Any, n: int, expected: Any) -> Workload:
    def prepare() -> tuple[Any, Any]:
        return (lambda: wf.run(n)), (lambda ctx: _completed(ctx, expected, f"{wf.name}({n})"))

    return Workload("W1" if wf is sequential else "W2", n, prepare)


def resume_paused(n: int) -> Workload:
    def prepare() -> tuple[Any, Any]:
        ctx = paused_at_end.run(n)
        expect(ctx.is_paused, f"setup of paused_at_end({n}) ended {ctx.state}, expected paused")
        before = BODIES

        def verify(done: Any) -> None:
            _completed(done, n, "resume")
            expect(BODIES == before, f"resume ran {BODIES - before} task bodies again, expected none")

        return (lambda: paused_at_end.resume(ctx.execution_id, True)), verify

    return Workload("W3", n, prepare)


async def _inline(wf: Any, value: Any) -> Any:
    # What Workflow.run() does for one execution, minus its own asyncio.run.
    ctx = ExecutionContext(
        workflow_id=wf._ensure_registered(), workflow_namespace=wf._namespace, workflow_name=wf._name, input=value
    )
    ctx.set_checkpoint(wf._save)
    return await wf(ctx)


def concurrent(executions: int, tasks: int) -> Workload:
    async def all_at_once() -> list[Any]:
        return list(await asyncio.gather(*(_inline(sequential, tasks) for _ in range(executions))))

    def prepare() -> tuple[Any, Any]:
        def verify(ctxs: list[Any]) -> None:
            for ctx in ctxs:
                _completed(ctx, tasks, f"one of {executions} concurrent executions")

        return (lambda: asyncio.run(all_at_once())), verify

    return Workload("W4", executions * tasks, prepare)


def main() -> int:
    assert ARGS is not None
    n = ARGS.tasks
    workloads = [
        run_one(sequential, n, n), run_one(parallel, n, n * (n - 1) // 2), resume_paused(n), concurrent(100, 10)
    ]

    def warm_up() -> None:  # the schema migration, registration of each workflow, first-call caches
        sequential.run(10)
        parallel.run(10)
        ctx = paused_at_end.run(10)
        paused_at_end.resume(ctx.execution_id, True)
        asyncio.run(_inline(sequential, 10))

    try:
        run_workloads(workloads, ARGS.runs, warm_up)
    except BenchmarkError as err:
        print(f"BenchmarkError: {err}", file=sys.stderr)
        return 1
    finally:
        os.chdir(os.path.dirname(_store))
        shutil.rmtree(_store, ignore_errors=True)
    notes = {
        "store": (
            "SQLite file (flux-core default backend: WAL, synchronous=NORMAL, no fsync per commit), "
            "one database for this process"
        ),
        "W3": "workflow.resume() of an execution paused after N tasks (same operation as ours)",
        "W4": "100 inline executions (what run() does) under one asyncio.gather",
    }
    emit("flux-core", {"flux-core": version("flux-core")}, workloads, notes, {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
