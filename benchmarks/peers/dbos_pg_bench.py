"""DBOS Transact on PostgreSQL, with the workloads of benchmarks/bench_pg.py; prints one JSON
object. Run with the Python of its virtual environment (benchmarks/peers/setup_peers.py):

    ~/.cache/flux-bench-peers/dbos/bin/python benchmarks/peers/dbos_pg_bench.py --url postgresql://... [--quick]

- W1: one workflow of 300 sequential no-op steps, in this process, per step.
- Fleet: 1 and 2 DBOS processes consuming one queue (`worker_concurrency=256`, polled every
  10 ms instead of DBOS's default 1 s); workflows of 1, 10 and 100 sequential no-op steps
  enqueued with `DBOSClient.enqueue` (one statement each: DBOS has no bulk enqueue), from the
  first enqueue to the last workflow finished.
- Submit to start: one idle process; `DBOSClient.enqueue` to the workflow's `started_at`.

DBOS has no lease: a dead process's workflows are recovered only when its executor id is named
(Conductor or the admin API), so there is no takeover figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from importlib.metadata import version

from dbos import DBOS, DBOSClient

QUEUE = "bench"


@DBOS.step()
async def noop(i: int) -> int:
    return i


@DBOS.workflow()
async def steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


def launch(url: str) -> None:
    DBOS(
        config={"name": "flux-bench-pg", "system_database_url": url, "run_admin_server": False, "log_level": "WARNING"}
    )
    DBOS.launch()


def serve(url: str) -> int:
    launch(url)
    DBOS.register_queue(QUEUE, worker_concurrency=256, polling_interval_sec=0.01)
    print("ready", flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    while not stop["now"]:
        time.sleep(0.1)
    DBOS.destroy()
    return 0


def w1(url: str, n: int) -> float:
    launch(url)
    loop = asyncio.new_event_loop()
    try:

        async def run() -> int:
            handle = await DBOS.start_workflow_async(steps, n)
            return await handle.get_result()

        loop.run_until_complete(run())  # warm up
        began = time.perf_counter()
        assert loop.run_until_complete(run()) == n * (n - 1) // 2
        return (time.perf_counter() - began) / n * 1e6
    finally:
        loop.close()
        DBOS.destroy()


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def workers(url: str, count: int) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen([sys.executable, __file__, "--url", url, "--serve"], stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    for p in procs:
        line = p.stdout.readline() if p.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError("a DBOS process did not start")
    return procs


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()


def done_count(conn: object, prefix: str) -> int:
    return conn.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE %s AND status = 'SUCCESS'", (prefix + "%",)
    ).fetchone()[0]


def fleet(url: str, count: int, tasks: int, n: int, runs: int) -> dict[str, float]:
    import psycopg

    procs = workers(url, count)
    client = DBOSClient(system_database_url=url)
    took = []
    try:
        with psycopg.connect(_psycopg_url(url), autocommit=True) as conn:
            for r in range(runs):
                prefix = f"f{count}x{tasks}r{r}-"
                began = time.perf_counter()
                for i in range(n):
                    client.enqueue(
                        {"queue_name": QUEUE, "workflow_name": "steps", "workflow_id": f"{prefix}{i}"}, tasks
                    )
                deadline = time.monotonic() + 900
                while done_count(conn, prefix) < n:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"DBOS did not finish {n} workflows")
                    time.sleep(0.005)
                took.append(time.perf_counter() - began)
    finally:
        client.destroy()
        stop(procs)
    took.sort()
    median = took[len(took) // 2]
    return {"count": n, "seconds": median, "executions_per_s": n / median}


def submit_to_start(url: str, n: int) -> dict[str, float]:
    import psycopg

    procs = workers(url, 1)
    client = DBOSClient(system_database_url=url)
    lat = []
    try:
        with psycopg.connect(_psycopg_url(url), autocommit=True) as conn:
            for i in range(n):
                began = time.time()
                client.enqueue({"queue_name": QUEUE, "workflow_name": "steps", "workflow_id": f"lat{i}"}, 1)
                while True:
                    row = conn.execute(
                        "SELECT started_at_epoch_ms FROM dbos.workflow_status WHERE workflow_uuid = %s", (f"lat{i}",)
                    ).fetchone()
                    if row and row[0]:
                        lat.append(row[0] / 1000 - began)
                        break
                    time.sleep(0.001)
                time.sleep(0.05)
    finally:
        client.destroy()
        stop(procs)
    lat.sort()
    return {"p50": lat[len(lat) // 2], "p99": lat[max(0, int(len(lat) * 0.99) - 1)]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--w1", action="store_true")
    args = parser.parse_args()
    if args.serve:
        return serve(args.url)
    if args.w1:
        print(json.dumps(w1(args.url, 300)))
        return 0
    scale = 0.2 if args.quick else 1.0
    runs = max(1, min(args.runs, 3))
    w1_us = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--url", args.url, "--w1"], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    out: dict[str, object] = {"version": version("dbos"), "w1_us": w1_us, "fleet": {}}
    sizes = {1: int(3000 * scale), 10: int(1000 * scale), 100: int(100 * scale)}
    for count in (1, 2):
        for tasks, n in sizes.items():
            out["fleet"][f"{count}x{tasks}"] = fleet(args.url, count, tasks, n, runs)  # type: ignore[index]
    out["submit_to_start"] = submit_to_start(args.url, int(40 * scale) or 8)
    out["notes"] = [
        "queue polled every 10 ms (DBOS default 1 s), worker_concurrency 256; enqueued one statement each (no bulk "
        "enqueue)",
        "no takeover figure: DBOS recovers a dead process's workflows only when its executor id is named (Conductor "
        "or admin API)",
    ]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
