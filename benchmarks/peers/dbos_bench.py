"""W1-W4 on DBOS Transact with its SQLite system database, in this process; prints one JSON object.

Run with the Python of its virtual environment (see setup_peers.py):

    ~/.cache/flux-bench-peers/dbos/bin/python benchmarks/peers/dbos_bench.py --tasks 1000 --runs 5

DBOS records every step's output in its system database. Without a `system_database_url` it uses
SQLite; this script names a fresh file under `--dir` (`sqlite:///<dir>/.../dbos.sqlite`), turns the
admin HTTP server off and logs warnings only. SQLite's defaults apply (rollback journal,
synchronous=FULL). Workflows and steps are `async def`, started with `DBOS.start_workflow_async`.

- W1: N sequential trivial steps; W2: N steps through `asyncio.gather`, then a sum.
- W3: DBOS has no pause/resume of a finished workflow; its nearest operation is
  `DBOS.fork_workflow(id, start_step=N+1)` of a completed N-step workflow: a new workflow that
  copies the N recorded step outputs, runs the workflow function again and gets every step's
  result from the database without running a body. The fork runs from a queue, and its handle
  reads the result from the database: both poll every millisecond (DBOS's default is 1 s). That
  queue is registered only after W1, W2 and W4 ran, since its polling slows other SQLite writes.
- W4: 100 workflows of 10 steps started at once, awaited with `asyncio.gather`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from _common import BenchmarkError, Workload, emit, expect, parse_args, run_workloads, unavailable

try:
    from dbos import DBOS
except ImportError as err:  # pragma: no cover - only when the venv is broken
    unavailable("dbos", f"cannot import dbos: {err}")
    sys.exit(0)

REPLAY_QUEUE = "flux_bench_replay"
POLL = 0.001  # seconds between the replay queue's polls and between a handle's reads of a result, in W3
BODIES = 0  # how many step bodies ran in this process


@DBOS.step()
async def noop(i: int) -> int:
    global BODIES
    BODIES += 1
    return i


@DBOS.workflow()
async def sequential(n: int) -> int:
    for i in range(n):
        await noop(i)
    return n


@DBOS.workflow()
async def parallel(n: int) -> int:
    results = await asyncio.gather(*(noop(i) for i in range(n)))
    return sum(results)


async def _execute(wf: Any, n: int) -> Any:
    handle = await DBOS.start_workflow_async(wf, n)
    return await handle.get_result()


def run_one(loop: asyncio.AbstractEventLoop, key: str, wf: Any, n: int, expected: Any) -> Workload:
    def prepare() -> tuple[Any, Any]:
        def verify(result: Any) -> None:
            expect(result == expected, f"{wf.__name__}({n}) returned {result!r}, expected {expected!r}")

        return (lambda: loop.run_until_complete(_execute(wf, n))), verify

    return Workload(key, n, prepare)


def fork_finished(loop: asyncio.AbstractEventLoop, n: int) -> Workload:
    async def fork(workflow_id: str) -> Any:
        handle = await DBOS.fork_workflow_async(workflow_id, n + 1, queue_name=REPLAY_QUEUE)
        return await handle.get_result(polling_interval_sec=POLL)

    def prepare() -> tuple[Any, Any]:
        handle = loop.run_until_complete(DBOS.start_workflow_async(sequential, n))
        expect(loop.run_until_complete(handle.get_result()) == n, f"setup of sequential({n}) failed")
        steps = loop.run_until_complete(DBOS.list_workflow_steps_async(handle.get_workflow_id()))
        expect(len(steps) == n, f"setup recorded {len(steps)} steps, expected {n}")
        before = BODIES

        def verify(result: Any) -> None:
            expect(result == n, f"forked workflow returned {result!r}, expected {n}")
            expect(BODIES == before, f"the fork ran {BODIES - before} step bodies again, expected none")

        return (lambda: loop.run_until_complete(fork(handle.get_workflow_id()))), verify

    return Workload("W3", n, prepare)


def concurrent(loop: asyncio.AbstractEventLoop, executions: int, tasks: int) -> Workload:
    async def all_at_once() -> list[Any]:
        return list(await asyncio.gather(*(_execute(sequential, tasks) for _ in range(executions))))

    def prepare() -> tuple[Any, Any]:
        def verify(results: list[Any]) -> None:
            expect(results == [tasks] * executions, f"concurrent workflows returned {set(results)}")

        return (lambda: loop.run_until_complete(all_at_once())), verify

    return Workload("W4", executions * tasks, prepare)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    store = tempfile.mkdtemp(prefix="dbos-", dir=os.path.abspath(args.dir))
    DBOS(
        config={
            "name": "flux-bench",
            "system_database_url": "sqlite:///" + os.path.join(store, "dbos.sqlite"),
            "run_admin_server": False,
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    loop = asyncio.new_event_loop()
    try:
        n = args.tasks
        workloads = [
            run_one(loop, "W1", sequential, n, n),
            run_one(loop, "W2", parallel, n, n * (n - 1) // 2),
            fork_finished(loop, n),
            concurrent(loop, 100, 10),
        ]

        def warm_up(*ws: Workload) -> Callable[[], None]:
            def run() -> None:
                for w in ws:
                    timed, verify = w.prepare()
                    verify(timed())

            return run

        run_workloads([workloads[0], workloads[1], workloads[3]], args.runs,
                      warm_up(run_one(loop, "W1", sequential, 10, 10), concurrent(loop, 10, 10)))
        # W3 last: a queue polled every millisecond slows every other SQLite write. Its worker
        # thread starts within a second of the registration, polling at that rate from the start.
        loop.run_until_complete(DBOS.register_queue_async(REPLAY_QUEUE, polling_interval_sec=POLL))
        loop.run_until_complete(asyncio.sleep(2.0))
        run_workloads([workloads[2]], args.runs, warm_up(fork_finished(loop, 10)))
    except BenchmarkError as err:
        print(f"BenchmarkError: {err}", file=sys.stderr)
        return 1
    finally:
        loop.close()
        DBOS.destroy()
        shutil.rmtree(store, ignore_errors=True)
    notes = {
        "store": (
            "SQLite system database (DBOS default; SQLite defaults: synchronous=FULL, an fsync per commit), "
            "one file for this process"
        ),
        "W3": "fork_workflow(id, start_step=N+1) of a finished N-step workflow: the N recorded outputs replayed",
        "W4": "100 workflows started with start_workflow_async, awaited with asyncio.gather",
    }
    emit("dbos", {"dbos": version("dbos")}, workloads, notes, {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
