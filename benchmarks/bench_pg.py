"""Flux on PostgreSQL, measured in one run on one local PostgreSQL server, beside DBOS on the
same server with the same workloads; prints one table (medians of `--runs` runs, with the range).

    .venv/bin/python benchmarks/bench_pg.py [--quick] [--runs N] [--skip-dbos] [--markdown]
    .venv/bin/python benchmarks/bench_pg.py --sequential-only [--runs N]   (P1-PG and W1-PG only)

It starts its own server (tests/pg.py: a temporary cluster on a Unix socket, `fsync=on`,
`synchronous_commit=on`, run as an unprivileged user when run as root). DBOS is installed by
benchmarks/peers/setup_peers.py into its own virtual environment (not a project dependency) and
runs benchmarks/peers/dbos_pg_bench.py there, on another database of the same server.

Rows:
- P1: append one 200-byte line to a file and fsync it (the file store's floor).
- P1-PG: one autocommit INSERT of one row (one commit: the floor of a durable sync).
- A1-PG: the engine's fenced append statement alone (engine/stores/pg_flush.py), two lines a
  statement on one connection, as a sequential run's syncs send it: P1-PG's commit plus what the
  fence (the executions row updated under its epoch) and the records table's key cost.
- W1-PG: one execution of 300 sequential tasks run in this process (`wf.run`), per task
  (target <= 1.3x P1-PG); its ratio to A1-PG is what the engine adds to the statement.
- Fleet: 1 and 2 worker processes (`flux worker`, 256 slots each), executions of 1, 10 and 100
  sequential no-op tasks submitted at once (one statement) while the workers wait; from the
  submission's commit to the last execution finished (targets per worker process: >= 5,000
  tasks/s and >= 500 executions/s with 10 tasks, >= 1,500 executions/s with 1 task).
- Submit to start: `Client.start` (submitted to the fleet) to the `workflow_started` record, one
  idle worker, p50 and p99.
- Takeover after kill -9: a worker running an execution is killed; time until another worker's
  `workflow_resumed` record (target <= lease + 1 s; lease 5 s here).
- Resume of a 100,000-task journal paused at its end, in a fresh process: from the resume call
  to the run's end, imports excluded (target <= 1.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import psycopg  # noqa: E402

from tests.pg import PgServer  # noqa: E402

FLOWS = str(ROOT / "benchmarks" / "pg_flows.py")


def median_range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def fmt(value: float, unit: str) -> str:
    if unit == "us":
        return f"{value:.0f} µs" if value >= 10 else f"{value:.1f} µs"
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:,.0f} {unit}"


# -- floors ------------------------------------------------------------------------------------------


def p1_file(n: int) -> float:
    line = b"x" * 199 + b"\n"
    with tempfile.TemporaryDirectory(dir=ROOT) as d:
        fd = os.open(os.path.join(d, "j"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            began = time.perf_counter()
            for _ in range(n):
                os.write(fd, line)
                os.fsync(fd)
            return (time.perf_counter() - began) / n * 1e6
        finally:
            os.close(fd)


def p1_pg(url: str, n: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS p1 (id bigserial PRIMARY KEY, line bytea)")
        line = b"x" * 200
        began = time.perf_counter()
        for _ in range(n):
            conn.execute("INSERT INTO p1 (line) VALUES (%s)", (line,))
        return (time.perf_counter() - began) / n * 1e6


def a1_pg(url: str, n: int) -> float:
    """The engine's fenced append statement alone (engine/stores/pg_flush.py), sent as the file
    flusher sends it, two lines at a time (a sequential task's `task_completed` and the next
    `task_started`): what one durable sync of W1-PG costs before any engine work."""
    from flux._engine.journal import FORMAT_VERSION
    from flux._engine.store import open_store
    from flux._engine.stores.pg_flush import APPEND_SQL, Sync, _params, register_arrays

    store = open_store(url)
    execution_id = f"a1{time.monotonic_ns()}"
    header = {
        "seq": 0, "kind": "header", "format": FORMAT_VERSION, "execution_id": execution_id, "workflow": "a1",
        "code": {}, "input": None, "created": "2026-01-01T00:00:00.000000+00:00",
    }
    lease = store.create(execution_id, header, "fsync")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET plan_cache_mode = force_generic_plan")
            register_arrays(conn)
            epoch, seq = conn.execute(
                "SELECT epoch, next_seq FROM flux.executions WHERE execution_id = %s", (execution_id,)
            ).fetchone()
            lines = [b'{"seq":1,"kind":"task_completed","at":"2026-01-01T00:00:00.000000+00:00","call_id":"1",'
                     b'"value":1,"crc":"00000000"}',
                     b'{"seq":2,"kind":"task_started","at":"2026-01-01T00:00:00.000000+00:00","call_id":"2",'
                     b'"name":"step","args":[1],"src":"pg_flows.py:12","crc":"00000000"}']
            began = time.perf_counter()
            for _ in range(n):
                sync = Sync(execution_id, epoch, seq, lines, None, lambda error, cancel: None, execution_id)
                (row,) = conn.execute(APPEND_SQL, _params([sync]), binary=True, prepare=True).fetchall()
                assert row[0] == execution_id, row  # the fence let it through
                seq += 2
            return (time.perf_counter() - began) / n * 1e6
    finally:
        lease.writer.discard()
        lease.close()
        store.close()


# -- Flux -----------------------------------------------------------------------------------------------


def w1_pg(url: str, tasks: int) -> float:
    import pg_flows

    began = time.perf_counter()
    ctx = pg_flows.steps.run(tasks, store=url)
    took = time.perf_counter() - began
    assert ctx.status == "completed" and ctx.output == tasks * (tasks - 1) // 2, ctx.output
    return took / tasks * 1e6


class Workers:
    def __init__(
        self, url: str, count: int, *, lease: float = 15.0, concurrency: int = 256, env: dict[str, str] | None = None
    ) -> None:
        self.url = url
        self.procs = []
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        with psycopg.connect(url, autocommit=True) as conn:
            before = conn.execute("SELECT count(*) FROM flux.workers").fetchone()[0]
        for _ in range(count):
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "flux",
                        "worker",
                        FLOWS,
                        "--store",
                        url,
                        "--lease",
                        str(lease),
                        "-c",
                        str(concurrency),
                    ],
                    cwd=ROOT,
                    env=full_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 60
        with psycopg.connect(url, autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM flux.workers").fetchone()[0] < before + count:
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def bulk_submit(url: str, workflow: str, inputs: list[Any], prefix: str) -> None:
    """Submits executions in one statement (what many `Client.start` calls amount to)."""
    from flux._engine.clock import iso
    from flux._engine.journal import encode_line, seed_for

    ids, lines = [], []
    code = {"file": FLOWS, "module": "pg_flows", "attr": workflow}
    now = iso(time.time())
    for i, value in enumerate(inputs):
        eid = f"{prefix}{i}"
        header = {
            "seq": 0,
            "kind": "header",
            "format": 1,
            "execution_id": eid,
            "workflow": workflow,
            "code": code,
            "input": value,
            "created": now,
        }
        ids.append(eid)
        lines.append(encode_line(header, seed_for(eid)))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "WITH e AS (INSERT INTO flux.executions (execution_id, workflow, status, created, ready_at) "
            "SELECT id, %s, 'created', %s, now() FROM unnest(%s::text[]) AS id RETURNING pk, execution_id) "
            "INSERT INTO flux.records (exec_pk, seq, epoch, line) SELECT e.pk, 0, 0, l.line "
            "FROM e JOIN unnest(%s::text[], %s::bytea[]) AS l(id, line) ON l.id = e.execution_id",
            (workflow, now, ids, ids, lines),
        )
        conn.execute("NOTIFY flux_ready")  # after the commit, as the store's hint


def wait_done(url: str, prefix: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            done = conn.execute(
                "SELECT count(*) FROM flux.executions WHERE starts_with(execution_id, %s) AND status = 'completed'",
                (prefix,),
            ).fetchone()[0]
            if done >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count - done} of {count} executions not finished in {within:g} s")
            time.sleep(0.005)


def fleet(url: str, workers: int, tasks: int, executions: int, runs: int) -> list[float]:
    """Seconds to drain `executions` of `tasks` tasks, one value per run."""
    pool = Workers(url, workers)
    try:
        took = []
        for r in range(runs):
            prefix = f"f{workers}x{tasks}r{r}-"
            began = time.perf_counter()
            bulk_submit(url, "steps", [tasks] * executions, prefix)
            wait_done(url, prefix, executions, within=600)
            took.append(time.perf_counter() - began)
        return took
    finally:
        pool.stop()


def submit_to_start(url: str, count: int) -> list[float]:
    import pg_flows

    from flux.client import Client

    pool = Workers(url, 1)
    try:
        latencies = []

        async def one(i: int) -> float:
            client = Client(url)
            began = time.time()
            handle = await client.start(pg_flows.steps, 1, execution_id=f"lat{i}")
            while True:
                records = client.store.read(handle.execution_id).records
                if len(records) > 1:
                    from datetime import datetime

                    return datetime.fromisoformat(records[1]["at"]).timestamp() - began
                await asyncio.sleep(0.001)

        for i in range(count):
            latencies.append(asyncio.run(one(i)))
            time.sleep(0.05)
        return latencies
    finally:
        pool.stop()


def takeover(url: str, runs: int, lease: float = 5.0) -> list[float]:
    out = []
    for r in range(runs):
        a = Workers(url, 1, lease=lease, env={"FLUX_BENCH_NAP": "0.01"})
        eid = f"take{r}"
        bulk_submit(url, "naps", [100_000], f"take{r}-")
        eid = f"take{r}-0"
        with psycopg.connect(url, autocommit=True) as conn:
            while (
                conn.execute("SELECT next_seq FROM flux.executions WHERE execution_id = %s", (eid,)).fetchone()[0] < 20
            ):
                time.sleep(0.01)
            b = Workers(url, 1, lease=lease, env={"FLUX_BENCH_NAP": "0.01"})
            a.procs[0].kill()
            killed = time.time()
            a.procs[0].wait()
            while True:
                rows = conn.execute(
                    "SELECT r.line FROM flux.records r JOIN flux.executions e ON e.pk = r.exec_pk "
                    "WHERE e.execution_id = %s AND position('\"kind\":\"workflow_resumed\"' in convert_from(r.line, "
                    "'UTF8')) > 0",
                    (eid,),
                ).fetchall()
                if rows:
                    from datetime import datetime

                    out.append(datetime.fromisoformat(json.loads(bytes(rows[-1][0]))["at"]).timestamp() - killed)
                    break
                time.sleep(0.01)
            conn.execute("UPDATE flux.executions SET cancel_requested = true WHERE execution_id = %s", (eid,))
        b.stop()
    return out


def resume_big(url: str, tasks: int, runs: int, files: str | None = None, snapshot: bool = False) -> list[float]:
    """Builds a journal of `tasks` tasks paused at its end, then resumes it in fresh processes."""
    import pg_flows

    from flux._engine.store import open_store

    # one shape execution per call: a second run of the same id would find it paused already
    shape_id = f"shape{'f' if files else ''}{'s' if snapshot else ''}"
    small = pg_flows.steps_then_pause.run(2, store=url, execution_id=shape_id, durability="os")
    assert small.status == "paused", small.status
    store = open_store(url)
    shape = list(store.read(shape_id).records)
    src = next(r for r in shape if r["kind"] == "task_started")["src"]
    pause_src = next(r for r in shape if r["kind"] == "workflow_paused")["src"]
    out = []
    for r in range(runs):
        eid = f"big{r}{'f' if files else ''}{'s' if snapshot else ''}"
        header = {k: v for k, v in shape[0].items() if k != "seq"}
        header.update(execution_id=eid, input=tasks)
        lease = store.create(eid, header, "os")
        w = lease.writer
        at = shape[1]["at"]
        w.append({"seq": 0, "kind": "workflow_started", "at": at})
        for i in range(tasks):
            w.append(
                {
                    "seq": 0,
                    "kind": "task_started",
                    "at": at,
                    "call_id": str(i + 1),
                    "name": "noop",
                    "args": [i],
                    "src": src,
                }
            )
            w.append({"seq": 0, "kind": "task_completed", "at": at, "call_id": str(i + 1), "value": i})
            if i % 20000 == 19999:
                w.sync()
        w.append(
            {"seq": 0, "kind": "workflow_paused", "at": at, "call_id": str(tasks + 1), "name": "end", "src": pause_src}
        )
        w.sync()
        if snapshot:  # what a run that ended paused leaves (SPEC.md 2.3)
            import zlib

            from flux._engine.history import History
            from flux._engine.snapshot import snapshot_of

            history = History(store.describe(eid))
            read = store.read(eid, visit=history.apply_all)
            history.journal = read.records
            data = store.export(eid)
            store.snapshots.save(eid, snapshot_of(history, eid, len(data), len(read.records), zlib.crc32(data)))
        lease.close()
        code = (
            "import sys, time, asyncio; sys.path.insert(0, sys.argv[3]); import pg_flows\n"
            "from flux.client import Client\n"
            "async def go():\n"
            "    began = time.perf_counter()\n"
            "    h = await Client(sys.argv[1]).resume(sys.argv[2], 1)\n"
            "    ctx = await h.result()\n"
            "    assert ctx.status == 'completed', ctx.status\n"
            "    return time.perf_counter() - began\n"
            "print(asyncio.run(go()))\n"
        )
        target = url
        if files is not None:  # the same journal resumed from a directory of files
            from flux._engine.store import import_journal
            from flux._engine.stores.files import FileStore

            target = os.path.join(files, f"r{r}")
            import_journal(FileStore(target), store.export(eid))
        done = subprocess.run(
            [sys.executable, "-c", code, target, eid, str(ROOT / "benchmarks")],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        out.append(float(done.stdout.strip().splitlines()[-1]))
    return out


# -- DBOS ----------------------------------------------------------------------------------------------


def dbos(server: PgServer, quick: bool, runs: int) -> dict[str, Any]:
    cache = os.environ.get("FLUX_BENCH_PEERS") or os.path.join(os.path.expanduser("~"), ".cache", "flux-bench-peers")
    python = os.path.join(cache, "dbos", "bin", "python")
    if not os.path.exists(python):
        return {"skipped": f"no DBOS environment at {python}; run benchmarks/peers/setup_peers.py"}
    url = server.create_database("dbos_bench")
    # libpq URL with the socket folder, as SQLAlchemy and psycopg take it
    sa_url = f"postgresql://flux@/dbos_bench?host={server.dir}"
    args = [python, str(ROOT / "benchmarks" / "peers" / "dbos_pg_bench.py"), "--url", sa_url, "--runs", str(runs)]
    if quick:
        args.append("--quick")
    done = subprocess.run(args, capture_output=True, text=True, timeout=3600, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        return {"skipped": f"dbos_pg_bench.py failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:300]}"}
    del url
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the run ---------------------------------------------------------------------------------------------


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def migrated_database(server: PgServer) -> str:
    """Starts `server` and makes the benchmark's database, migrated; returns its URL."""
    from flux._engine.stores import pg_schema

    server.start()
    url = server.create_database("flux_bench")
    with psycopg.connect(url, autocommit=True) as conn:
        pg_schema.migrate(conn)
    return url


def sequential_only(runs: int) -> int:
    """P1-PG and W1-PG in turn, `runs` rounds on one server: the median ratio and each round's."""
    server = PgServer()
    load_before = load()
    try:
        url = migrated_database(server)
        floors, appends, tasks = [], [], []
        for _ in range(runs):
            floors.append(p1_pg(url, 200))
            appends.append(a1_pg(url, 200))
            tasks.append(w1_pg(url, 300))
    finally:
        server.close()
    p1pg, a1, w1 = statistics.median(floors), statistics.median(appends), statistics.median(tasks)
    print(
        f"P1-PG {fmt(p1pg, 'us')}, A1-PG {fmt(a1, 'us')} ({a1 / p1pg:.2f}x P1-PG), W1-PG {fmt(w1, 'us')} a task: "
        f"{w1 / p1pg:.2f}x P1-PG (target 1.3x), {w1 / a1:.2f}x A1-PG; rounds "
        + ", ".join(f"{t / f:.2f}x" for f, t in zip(floors, tasks, strict=True))
        + f"; before: {load_before}; after: {load()}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 5, quick 1)")
    parser.add_argument("--skip-dbos", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--sequential-only",
        action="store_true",
        help="only P1-PG and W1-PG, alternating, with each round's ratio (for comparing two trees)",
    )
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    if args.sequential_only:
        return sequential_only(runs)
    scale = 0.2 if args.quick else 1.0
    started = time.time()
    load_before = load()
    server = PgServer(max_connections=400)
    rows: list[tuple[str, str, str, str, str]] = []  # workload, engine, median (range), per worker, target
    results: dict[str, Any] = {}
    try:
        url = migrated_database(server)
        p1 = median_range([p1_file(200) for _ in range(runs)])
        p1pg = median_range([p1_pg(url, 200) for _ in range(runs)])
        a1 = median_range([a1_pg(url, 200) for _ in range(runs)])
        w1 = median_range([w1_pg(url, 300) for _ in range(runs)])
        results.update(p1=p1, p1pg=p1pg, a1=a1, w1=w1)
        rows.append(
            (
                "P1 file append + fsync",
                "plain loop",
                f"{fmt(p1[0], 'us')} ({fmt(p1[1], 'us')}-{fmt(p1[2], 'us')})",
                "",
                "",
            )
        )
        rows.append(
            (
                "P1-PG one commit",
                "plain loop",
                f"{fmt(p1pg[0], 'us')} ({fmt(p1pg[1], 'us')}-{fmt(p1pg[2], 'us')})",
                "",
                "",
            )
        )
        rows.append(
            (
                "A1-PG the fenced append statement alone, 2 lines",
                "plain loop",
                f"{fmt(a1[0], 'us')} ({fmt(a1[1], 'us')}-{fmt(a1[2], 'us')})",
                f"{a1[0] / p1pg[0]:.2f}x P1-PG",
                "",
            )
        )
        ratio = w1[0] / p1pg[0]
        rows.append(
            (
                "W1-PG 300 sequential tasks, per task",
                "flux",
                f"{fmt(w1[0], 'us')} ({fmt(w1[1], 'us')}-{fmt(w1[2], 'us')})",
                f"{ratio:.2f}x P1-PG, {w1[0] / a1[0]:.2f}x A1-PG",
                f"<= 1.3x P1-PG: {'PASS' if ratio <= 1.3 else 'MISS'}",
            )
        )
        sizes = {1: int(3000 * scale), 10: int(1000 * scale), 100: int(100 * scale)}
        for workers in (1, 2):
            for tasks, count in sizes.items():
                took = median_range(fleet(url, workers, tasks, count, runs))
                eps = count / took[0]
                tps = eps * tasks
                results[f"fleet{workers}x{tasks}"] = {"executions_per_s": eps, "tasks_per_s": tps, "seconds": took}
                target = ""
                if workers == 1 and tasks == 10:
                    ok = tps >= 5000 and eps >= 500
                    target = f">= 5,000 tasks/s, >= 500 exec/s: {'PASS' if ok else 'MISS'}"
                elif workers == 1 and tasks == 1:
                    target = f">= 1,500 exec/s: {'PASS' if eps >= 1500 else 'MISS'}"
                rows.append(
                    (
                        f"fleet {workers} worker{'s' if workers > 1 else ''}, {count} x {tasks} tasks",
                        "flux",
                        f"{eps:,.0f} exec/s, {tps:,.0f} tasks/s ({took[0]:.2f} s; {took[1]:.2f}-{took[2]:.2f})",
                        f"{eps / workers:,.0f} exec/s, {tps / workers:,.0f} tasks/s",
                        target,
                    )
                )
        lat = sorted(submit_to_start(url, int(40 * scale) or 8))
        p50, p99 = lat[len(lat) // 2], lat[max(0, int(len(lat) * 0.99) - 1)]
        results["submit_to_start"] = {"p50": p50, "p99": p99}
        rows.append(
            ("submit -> workflow_started", "flux", f"p50 {fmt(p50 * 1e3, 'ms')}, p99 {fmt(p99 * 1e3, 'ms')}", "", "")
        )
        take = median_range(takeover(url, max(1, runs // 2)))
        results["takeover"] = take
        rows.append(
            (
                "takeover after kill -9 (lease 5 s)",
                "flux",
                f"{take[0]:.2f} s ({take[1]:.2f}-{take[2]:.2f})",
                "",
                f"<= 6 s: {'PASS' if take[0] <= 6.0 else 'MISS'}",
            )
        )
        big = median_range(resume_big(url, int(100_000 * scale), max(1, runs // 2)))
        with tempfile.TemporaryDirectory() as folder:
            big_files = median_range(resume_big(url, int(100_000 * scale), max(1, runs // 2), folder))
        big_snap = median_range(resume_big(url, int(100_000 * scale), max(1, runs // 2), snapshot=True))
        results["resume_big"] = big
        rows.append(
            (
                f"resume a {int(100_000 * scale):,}-task journal, fresh process",
                "flux",
                f"{big[0]:.2f} s ({big[1]:.2f}-{big[2]:.2f})",
                "",
                f"<= 1.5 s: {'PASS' if big[0] <= 1.5 else 'MISS'}",
            )
        )
        rows.append(
            (
                "  the same journal from a file store",
                "flux",
                f"{big_files[0]:.2f} s ({big_files[1]:.2f}-{big_files[2]:.2f})",
                f"PostgreSQL {big[0] / big_files[0]:.2f}x",
                "",
            )
        )
        results["resume_big_files"] = big_files
        rows.append(
            (
                "  the same, paused with its replay snapshot",
                "flux",
                f"{big_snap[0]:.2f} s ({big_snap[1]:.2f}-{big_snap[2]:.2f})",
                "",
                f"<= 0.3 s: {'PASS' if big_snap[0] <= 0.3 else 'MISS'}",
            )
        )
        results["resume_big_snapshot"] = big_snap
        if not args.skip_dbos:
            peer = dbos(server, args.quick, runs)
            results["dbos"] = peer
            if "skipped" in peer:
                rows.append(("DBOS", "dbos", peer["skipped"], "", ""))
            else:
                rows.append(
                    (
                        "W1-PG 300 sequential steps, per step",
                        f"dbos {peer['version']}",
                        fmt(peer["w1_us"], "us"),
                        f"{peer['w1_us'] / w1[0]:.1f}x flux",
                        "",
                    )
                )
                for key, value in peer["fleet"].items():
                    workers, tasks = key.split("x")
                    ours = results.get(f"fleet{workers}x{tasks}")
                    ratio_txt = f"flux {ours['executions_per_s'] / value['executions_per_s']:.1f}x" if ours else ""
                    rows.append(
                        (
                            f"fleet {workers} process{'es' if workers != '1' else ''}, {value['count']} x {tasks} "
                            f"steps",
                            f"dbos {peer['version']}",
                            f"{value['executions_per_s']:,.0f} exec/s, {value['executions_per_s'] * int(tasks):,.0f} "
                            f"steps/s",
                            ratio_txt,
                            "",
                        )
                    )
                if "submit_to_start" in peer:
                    s = peer["submit_to_start"]
                    rows.append(
                        (
                            "submit -> start",
                            f"dbos {peer['version']}",
                            f"p50 {fmt(s['p50'] * 1e3, 'ms')}, p99 {fmt(s['p99'] * 1e3, 'ms')}",
                            "",
                            "",
                        )
                    )
                for note in peer.get("notes", []):
                    rows.append(("", "dbos", note, "", ""))
    finally:
        server.close()
    header = ("workload", "engine", "median (min-max)", "per worker / ratio", "target")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(
        f"PostgreSQL {server.bindir}; fsync=on, synchronous_commit=on; {runs} run(s) per figure; "
        f"{time.time() - started:.0f} s; before: {load_before}; after: {load()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
