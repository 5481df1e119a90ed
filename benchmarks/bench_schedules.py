"""Schedule lateness on PostgreSQL: three `flux worker` processes on one database fire a
one-second interval schedule; prints how late each fire's execution was made (its header's
`created` minus the fire time): p50, p99, max, and that every fire made exactly one execution.

    python benchmarks/bench_schedules.py [--seconds 60] [--workers 3]

Starts a throwaway PostgreSQL server (tests/pg.py). Load on the machine shows in the numbers:
run `uptime` beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()

    import psycopg

    from flux._engine.stores import pg_schema
    from flux._engine.stores.postgres import PostgresStore
    from flux.domain.schedule import interval
    from flux.schedules import create_schedule, get_schedule, pause_schedule
    from tests.pg import PgServer

    server = PgServer()
    server.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        url = server.create_database("bench_schedules")
        with psycopg.connect(url, autocommit=True) as conn:
            pg_schema.migrate(conn)
        store = PostgresStore(url)
        env = {**os.environ, "PYTHONPATH": ROOT}
        flows = os.path.join(ROOT, "tests", "schedule_workflows.py")
        cmd = [sys.executable, "-m", "flux", "worker", flows, "--store", url]
        tmp = tempfile.mkdtemp(prefix="bench-sched-")
        workers = [subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(args.workers)]
        # The schedule starts once every worker has registered: a fire due while the workers
        # were still starting would measure their start-up, not the firing.
        deadline = time.monotonic() + 60
        with psycopg.connect(url, autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM flux.workers").fetchone()[0] < args.workers:  # type: ignore[index]
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not register within 60 s")
                time.sleep(0.05)
        create_schedule(store, "tick", "stamped", interval(seconds=1, overlap="allow"))
        time.sleep(args.seconds)
        pause_schedule(store, "tick")
        time.sleep(2)
        lateness, fires = [], []
        for execution_id in store.list_ids():
            header = store.header(execution_id)
            at = dt.datetime.fromisoformat(header["schedule"]["at"]).timestamp()
            fires.append(at)
            lateness.append(dt.datetime.fromisoformat(header["created"]).timestamp() - at)
        fires.sort()
        lateness.sort()
        gaps = [round(b - a, 3) for a, b in itertools.pairwise(fires) if round(b - a, 3) != 1.0]
        n = len(lateness)
        state = get_schedule(store, "tick")

        def pct(p: float) -> float:
            return lateness[min(n - 1, int(p * n))] * 1000

        print(f"{args.workers} workers, 1 s interval for {args.seconds} s")
        print(f"fires {n}, recorded {state['fires']}, distinct {len(set(fires))}, gaps {gaps or 'none'}")
        print(f"lateness ms: p50 {pct(0.5):.1f}  p99 {pct(0.99):.1f}  max {lateness[-1] * 1000:.1f}")
        print("load:", os.getloadavg())
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
        server.close()


if __name__ == "__main__":
    main()
