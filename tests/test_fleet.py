"""Worker fleets on one PostgreSQL database, with real processes and real faults: kill -9,
SIGSTOP past the lease, the server connection cut in the middle of a commit, the server stopped
hard and restarted, thousands of parked timers, cancel and resume from another process, code that
diverges, SIGTERM.

Sizes are small enough for CI; FLUX_TEST_FLEET_SIZE, FLUX_TEST_KILLS and FLUX_TEST_TIMERS run
the long versions (2,000 executions, 200 kills, 10,000 timers).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flux._engine.stores.postgres import PostgresStore
from flux.client import Client
from tests import fleet_workflows as fw
from tests.conftest import ROOT, empty_pg, flux_cmd
from tests.pg import PgServer

pytestmark = pytest.mark.slow

FLEET_SIZE = int(os.environ.get("FLUX_TEST_FLEET_SIZE", "2000"))
KILLS = int(os.environ.get("FLUX_TEST_KILLS", "12"))
TIMERS = int(os.environ.get("FLUX_TEST_TIMERS", "1000"))
WORKFLOWS = str(ROOT / "tests" / "fleet_workflows.py")


class Fleet:
    """A database with an `effects` table, and worker processes started against it."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.workers: list[subprocess.Popen[str]] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "FLUX_TEST_EFFECTS": url}
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS effects (key text PRIMARY KEY, kind text, n int)")
            conn.execute("TRUNCATE effects")

    def worker(self, *args: str, env: dict[str, str] | None = None, lease: float = 2.0) -> subprocess.Popen[str]:
        log = open(self.tmp / f"worker-{len(self.workers)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flux", "worker", WORKFLOWS, "--store", self.url, "--lease", str(lease), *args],
            cwd=self.tmp,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        proc.log = log  # type: ignore[attr-defined]
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                with _suppress():
                    os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.log.close()  # type: ignore[attr-defined]

    def logs(self) -> str:
        return "\n".join((self.tmp / f"worker-{i}.log").read_text() for i in range(len(self.workers)))

    def submit(self, wf: Any, inputs: list[Any], prefix: str, queue: str | None = None) -> list[str]:
        """Submits one execution per input (ids `prefix0`, `prefix1`, ...), to `queue` when given."""
        store = PostgresStore(self.url, queue=queue) if queue is not None else None

        async def go() -> list[str]:
            client = Client(store if store is not None else self.url)
            return [
                (await client.start(wf, value, execution_id=f"{prefix}{i}")).execution_id
                for i, value in enumerate(inputs)
            ]

        try:
            return asyncio.run(go())
        finally:
            if store is not None:
                store.close()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def statuses(self) -> dict[str, int]:
        return dict(self.query("SELECT status, count(*) FROM flux.executions GROUP BY status"))  # type: ignore[arg-type]

    def wait_finished(self, count: int, within: float, during: Any = None) -> float:
        began = time.monotonic()
        while time.monotonic() - began < within:
            done = self.query(
                "SELECT count(*) FROM flux.executions WHERE status IN ('completed', 'failed', 'cancelled')"
            )[0][0]
            if done >= count:
                return time.monotonic() - began
            if during is not None:
                during()
            time.sleep(0.2)
        stuck = self.query(
            "SELECT execution_id, status, holder IS NOT NULL, ready_at - now(), lease_until - now(), epoch, next_seq "
            "FROM flux.executions "
            "WHERE status NOT IN ('completed', 'failed', 'cancelled') LIMIT 5"
        )
        raise AssertionError(
            f"{count} executions not finished in {within:g} s: {self.statuses()} {stuck}\n{self.logs()[-3000:]}"
        )

    def duplicate_starts(self) -> list[tuple[Any, ...]]:
        """(execution, call id, count) of every call with more than one task_started."""
        return self.query(
            'SELECT e.execution_id, substring(convert_from(r.line, \'UTF8\') from \'"call_id":"([^"]*)"\') AS call, '
            'count(*) '
            "FROM flux.records r JOIN flux.executions e ON e.pk = r.exec_pk "
            "WHERE position('\"kind\":\"task_started\"' in convert_from(r.line, 'UTF8')) > 0 "
            "GROUP BY 1, 2 HAVING count(*) > 1"
        )

    def epochs_decrease(self) -> list[tuple[Any, ...]]:
        """Records written under an older epoch after a newer one, along seq (must be none)."""
        return self.query(
            "SELECT exec_pk, seq FROM (SELECT exec_pk, seq, epoch, max(epoch) OVER (PARTITION BY exec_pk ORDER BY "
            "seq) AS seen "
            "FROM flux.records) x WHERE epoch < seen"
        )


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]


@pytest.fixture
def fleet(pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    empty_pg(pg_url)
    made = Fleet(pg_url, tmp_path)
    try:
        yield made
    finally:
        made.stop()


def _outputs(url: str, ids: list[str]) -> dict[str, Any]:
    store = PostgresStore(url)
    try:
        out = {}
        for eid in ids:
            last = store.read(eid).records[-1]
            out[eid] = last.get("value") if last["kind"] == "workflow_completed" else last["kind"]
        return out
    finally:
        store.close()


def test_workers_finish_every_execution_running_each_body_once(fleet: Fleet) -> None:
    n = FLEET_SIZE
    inputs = [{"id": f"o{i}", "n": 3 + i % 5} for i in range(n)]
    ids = fleet.submit(fw.order_flow, inputs, "o")
    for _ in range(3):
        # No faults here: a lease long enough that even an overloaded machine renews it in time.
        fleet.worker("--concurrency", "128", lease=15.0)
    fleet.wait_finished(n, within=60 + n * 0.1)
    assert fleet.statuses() == {"completed": n}
    outputs = _outputs(fleet.url, ids)
    assert outputs == {eid: sum(2 * k for k in range(inp["n"])) + 1 for eid, inp in zip(ids, inputs, strict=True)}
    assert fleet.duplicate_starts() == []
    rows = fleet.query("SELECT kind, n, count(*) FROM effects GROUP BY kind, n")
    effects = {(kind, n_): c for kind, n_, c in rows}
    assert effects == {("charge", 1): sum(i["n"] for i in inputs), ("flaky", 2): n}  # each body once; a retry twice


def test_kill_9_of_random_workers_loses_and_repeats_nothing(fleet: Fleet) -> None:
    n = max(60, FLEET_SIZE // 10, 10 * KILLS)  # the long size keeps the workers busy longer
    inputs = [{"id": f"k{i}", "n": 4, "flaky": False} for i in range(n)]
    ids = fleet.submit(fw.order_flow, inputs, "k")
    slow = {"FLUX_TEST_TASK_SECONDS": "0.05"}
    procs = [fleet.worker("--concurrency", "16", env=slow) for _ in range(3)]
    rng = random.Random(7)
    seen: dict[str, bytes] = {}  # journals read while the fleet ran: committed records
    store = PostgresStore(fleet.url)
    kills = 0
    try:
        while kills < KILLS:
            time.sleep(rng.uniform(0.3, 1.0))
            for eid in rng.sample(ids, 5):
                seen[f"{eid}@{kills}"] = store.export(eid)
            victim = rng.randrange(len(procs))
            procs[victim].kill()
            procs[victim].wait()
            kills += 1
            procs[victim] = fleet.worker("--concurrency", "16", env=slow)
        fleet.wait_finished(n, within=120 + n * 0.05)
        finals = {eid: store.export(eid) for eid in ids}
    finally:
        store.close()
    assert fleet.statuses() == {"completed": n}
    lost = [key for key, data in seen.items() if not finals[key.split("@")[0]].startswith(data)]
    assert lost == []  # every record committed at any time is still there, unchanged
    assert fleet.duplicate_starts() == [] and fleet.epochs_decrease() == []
    assert _outputs(fleet.url, ids) == dict.fromkeys(ids, 12)
    reruns = fleet.query("SELECT count(*) FROM effects WHERE n > 1")[0][0]
    assert fleet.query("SELECT count(*) FROM effects")[0][0] == 4 * n
    assert reruns <= kills * 16  # only bodies that were running at a kill ran again


def test_a_stopped_owner_is_replaced_after_its_lease_and_its_writes_refused(fleet: Fleet) -> None:
    [eid] = fleet.submit(fw.long_flow, [40], "long")
    slow = {"FLUX_TEST_TASK_SECONDS": "0.1"}
    a = fleet.worker("--concurrency", "4", "--debug", env=slow)
    deadline = time.monotonic() + 30
    while not fleet.query(
        "SELECT 1 FROM flux.records r JOIN flux.executions e ON e.pk = r.exec_pk WHERE e.execution_id = %s AND r.seq "
        "> 6",
        eid,
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(a.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    epoch_a = fleet.query("SELECT epoch FROM flux.executions WHERE execution_id = %s", eid)[0][0]
    b = fleet.worker("--concurrency", "4", env=slow)
    while fleet.query("SELECT epoch FROM flux.executions WHERE execution_id = %s", eid)[0][0] == epoch_a:
        assert time.monotonic() - stopped_at < 2.0 + 8.0  # lease + reaping + start of the new worker
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(a.pid, signal.SIGCONT)  # A wakes up believing it still owns the execution
    fleet.wait_finished(1, within=60)
    assert fleet.duplicate_starts() == [] and fleet.epochs_decrease() == []
    assert fleet.query(
        "SELECT count(*) FROM flux.records r JOIN flux.executions e ON e.pk = r.exec_pk "
        "WHERE e.execution_id = %s AND r.epoch = %s AND r.seq > "
        "(SELECT min(seq) FROM flux.records r2 WHERE r2.exec_pk = e.pk AND r2.epoch > %s)",
        eid,
        epoch_a,
        epoch_a,
    ) == [(0,)]
    assert _outputs(fleet.url, [eid]) == {eid: sum(2 * i for i in range(40))}
    assert b.poll() is None
    a.terminate()
    a.wait(timeout=20)
    # A's next write after it woke up was refused by the database, and A went on serving.
    a_log = (fleet.tmp / "worker-0.log").read_text()
    assert f"execution {eid}: OwnershipLostError" in a_log, a_log[-3000:]
    assert a.returncode == 0


def test_connections_cut_in_the_middle_of_commits_lose_and_repeat_nothing(fleet: Fleet) -> None:
    n = 300
    ids = fleet.submit(fw.order_flow, [{"id": f"c{i}", "n": 5, "flaky": False} for i in range(n)], "c")
    for _ in range(2):
        fleet.worker("--concurrency", "64")
    cuts = [0]

    def cut() -> None:
        # A flusher is in the middle of a statement only now and then, for a millisecond or so:
        # look closely, on one connection, until one is caught (or a tenth of a second passed).
        with psycopg.connect(fleet.url, autocommit=True) as conn:
            give_up = time.monotonic() + 0.1
            while time.monotonic() < give_up:
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'flux-flusher-%' AND state = 'active'"
                ).fetchall()
                caught = sum(1 for (ok,) in rows if ok)
                if caught:
                    cuts[0] += caught
                    return

    fleet.wait_finished(n, within=120, during=cut)
    assert cuts[0] > 0  # some commits really were cut
    assert fleet.statuses() == {"completed": n}
    assert fleet.duplicate_starts() == [] and fleet.epochs_decrease() == []
    assert _outputs(fleet.url, ids) == dict.fromkeys(ids, 20)


def test_the_database_stopped_hard_and_restarted_mid_run(tmp_path: Path) -> None:
    from tests import pg

    pg.skip_unless_available()
    server = PgServer()
    try:
        server.start()
        url = server.create_database("crash")
        from flux._engine.stores import pg_schema

        with psycopg.connect(url, autocommit=True) as conn:
            pg_schema.migrate(conn)
        fleet = Fleet(url, tmp_path)
        try:
            n = 200
            ids = fleet.submit(fw.order_flow, [{"id": f"r{i}", "n": 4, "flaky": False} for i in range(n)], "r")
            slow = {"FLUX_TEST_TASK_SECONDS": "0.02"}
            for _ in range(2):
                fleet.worker("--concurrency", "32", env=slow)
            while fleet.query("SELECT count(*) FROM flux.executions WHERE status = 'completed'")[0][0] < 20:
                time.sleep(0.1)
            server.stop("immediate")
            time.sleep(2.0)
            server.start()
            fleet.wait_finished(n, within=180)
            assert fleet.statuses() == {"completed": n}
            assert fleet.duplicate_starts() == [] and fleet.epochs_decrease() == []
            assert _outputs(url, ids) == dict.fromkeys(ids, 12)
            assert fleet.query("SELECT count(*) FROM flux.executions WHERE holder IS NOT NULL")[0][0] == 0
        finally:
            fleet.stop()
    finally:
        server.close()


def test_parked_timers_hold_no_worker_and_fire_on_time(fleet: Fleet) -> None:
    n = TIMERS
    rng = random.Random(3)
    # About 50 due each second, the first once every run has started and parked.
    naps = [round(rng.uniform(4.0, 4.0 + n / 50), 3) for _ in range(n)]
    ids = fleet.submit(fw.nap_flow, naps, "t")
    # The restart is a SIGTERM (leases handed back at once): a long lease keeps an overloaded
    # machine from expiring leases, which would make timers late for another reason.
    fleet.worker("--concurrency", "200", "--park-after", "1", lease=15.0)
    second = fleet.worker("--concurrency", "200", "--park-after", "1", lease=15.0)
    slots = 2 * 200
    sleeping = 0
    deadline = time.monotonic() + 60 + n / 100
    # Midway: once half of them are parked at once, or a tenth has finished.
    while (
        sleeping <= n // 2
        and fleet.query("SELECT count(*) FROM flux.executions WHERE status = 'completed'")[0][0] < n // 10
    ):
        assert time.monotonic() < deadline
        sleeping = max(sleeping, fleet.query("SELECT count(*) FROM flux.executions WHERE status = 'sleeping'")[0][0])
        time.sleep(0.05)
    second.terminate()  # a worker restarted midway
    second.wait(timeout=20)
    fleet.worker("--concurrency", "200", "--park-after", "1", lease=15.0)
    fleet.wait_finished(n, within=60 + n / 50)
    assert sleeping > min(n // 2, slots)  # parked runs hold no slot: more wait at once than there are slots
    assert fleet.statuses() == {"completed": n}
    store = PostgresStore(fleet.url)
    try:
        lateness = []
        for eid in ids:
            records = store.read(eid).records
            started = next(r for r in records if r["kind"] == "timer_started")
            fired = next(r for r in records if r["kind"] == "timer_fired")
            at = _seconds(fired["at"])
            assert at >= started["wake_at"]  # never early
            lateness.append(at - started["wake_at"])
            if at - started["wake_at"] > 0.25 and os.environ.get("FLUX_TEST_DEBUG_TIMERS"):
                print(
                    eid,
                    round(at - started["wake_at"], 3),
                    started["at"][11:23],
                    fired["at"][11:23],
                    [(r["kind"], r.get("pid"), r.get("at", "")[11:23]) for r in records[1:]],
                )
    finally:
        store.close()
    lateness.sort()
    p99 = lateness[int(len(lateness) * 0.99) - 1]
    median = lateness[len(lateness) // 2]
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    report = (
        f"timer lateness p99 {p99 * 1000:.0f} ms, median {median * 1000:.0f} ms, "
        f"load average {load:.1f} on {cores} cores"
    )
    if load <= 2 * cores:
        assert p99 <= 0.25, report  # the target
    else:
        # A machine oversubscribed by other work (more than two runnable processes per core)
        # delays any process by seconds; the target is not measurable there, bounded lateness is.
        assert p99 <= 10.0 and median <= 0.25, report
    # A body runs again only when the worker running it stopped (the restart): at most its slots.
    assert fleet.query("SELECT count(*) FROM effects WHERE n > 1")[0][0] <= 200
    assert fleet.query("SELECT count(*) FROM effects")[0][0] == n


def _seconds(iso_time: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso_time).timestamp()


def test_cancel_and_resume_from_another_process(fleet: Fleet) -> None:
    fleet.worker("--concurrency", "8", "--park-after", "1", env={"FLUX_TEST_TASK_SECONDS": "0.2"})
    [running] = fleet.submit(fw.long_flow, [200], "run")
    [paused, paused2] = fleet.submit(fw.approval_flow, ["p1", "p2"], "ask")
    [parked, parked2, parked3] = fleet.submit(fw.nap_flow, [60.0, 60.0, 6.0], "park")

    def status_of(eid: str) -> str:
        return str(fleet.query("SELECT status FROM flux.executions WHERE execution_id = %s", eid)[0][0])

    deadline = time.monotonic() + 30
    while (status_of(paused), status_of(paused2), status_of(parked), status_of(parked3)) != (
        "paused",
        "paused",
        "sleeping",
        "sleeping",
    ) or status_of(running) != "running":
        assert time.monotonic() < deadline, (status_of(running), status_of(paused), status_of(parked))
        time.sleep(0.1)
    # Resuming one that a worker runs is refused, naming its owner; the run goes on.
    refused = flux_cmd("resume", running, "--store", fleet.url, cwd=fleet.tmp, env=fleet.env)
    assert refused.returncode == 2 and refused.stderr.startswith("ExecutionLockedError"), refused.stderr
    assert status_of(running) == "running"
    # Resuming a parked one takes it over in this process: it waits out its timer here and
    # finishes; no worker runs it meanwhile.
    woke = flux_cmd("resume", parked3, "--store", fleet.url, cwd=fleet.tmp, env=fleet.env)
    assert woke.returncode == 0 and "status: completed" in woke.stdout and '"woke"' in woke.stdout, woke.stderr
    began = time.monotonic()
    done = flux_cmd("cancel", running, "--store", fleet.url, cwd=fleet.tmp)
    assert done.returncode == 0 and "status: cancelled" in done.stdout, done.stderr
    assert time.monotonic() - began < 10
    for eid in (paused, parked):
        done = flux_cmd("cancel", eid, "--store", fleet.url, cwd=fleet.tmp)
        assert done.returncode == 0 and "status: cancelled" in done.stdout, (eid, done.stdout, done.stderr)
    # From a machine without the code: the fleet delivers the cancellation.
    done = flux_cmd("cancel", parked2, "--module", "no_such_module", "--store", fleet.url, cwd=fleet.tmp)
    assert done.returncode == 0 and "status: cancelled" in done.stdout, (done.stdout, done.stderr)
    resumed = flux_cmd("resume", paused2, "--input", '"yes"', "--store", fleet.url, cwd=fleet.tmp, env=fleet.env)
    assert resumed.returncode == 0 and "status: completed" in resumed.stdout and "2:yes" in resumed.stdout, (
        resumed.stderr
    )
    assert {eid: status_of(eid) for eid in (running, paused, parked, parked2, paused2, parked3)} == {
        running: "cancelled",
        paused: "cancelled",
        parked: "cancelled",
        parked2: "cancelled",
        paused2: "completed",
        parked3: "completed",
    }
    assert fleet.duplicate_starts() == []
    store = PostgresStore(fleet.url)
    try:
        kinds = [r["kind"] for r in store.read(parked3).records]
    finally:
        store.close()
    assert kinds.count("timer_fired") == 1 and kinds.count("workflow_completed") == 1, kinds
    assert fleet.query("SELECT n FROM effects WHERE kind = 'stamp'") == [(1,)]


def test_a_detached_resume_is_answered_here_and_run_by_the_fleet(fleet: Fleet) -> None:
    """`flux resume --detach` from a machine without the code: the answer is recorded and
    durable, a worker claims the execution at once and runs it (SCALE-OUT 5.5)."""
    [asked] = fleet.submit(fw.approval_flow, ["p1"], "ask")
    fleet.worker("--concurrency", "4")
    deadline = time.monotonic() + 30
    while fleet.statuses().get("paused") != 1:
        assert time.monotonic() < deadline, fleet.statuses()
        time.sleep(0.05)
    handed = flux_cmd(
        "resume", asked, "--input", '"yes"', "--detach", "--module", "no_such_module", "--store", fleet.url,
        cwd=fleet.tmp,
    )
    assert handed.returncode == 0 and handed.stdout.strip() == asked, handed.stderr
    fleet.wait_finished(1, within=30)
    assert _outputs(fleet.url, [asked]) == {asked: "2:yes"}
    store = PostgresStore(fleet.url)
    try:
        resumed = [r for r in store.read(asked).records if r["kind"] == "workflow_resumed"]
    finally:
        store.close()
    # The answer (written by the command), then the worker's run.
    assert [("call_id" in r, r.get("input")) for r in resumed] == [(True, "yes"), (False, None)]
    again = flux_cmd("resume", asked, "--input", '"no"', "--detach", "--store", fleet.url, cwd=fleet.tmp)
    assert again.returncode == 0  # a finished execution is left as it is
    assert _outputs(fleet.url, [asked]) == {asked: "2:yes"}


def test_a_run_whose_task_group_only_sleeps_is_parked_not_retried(fleet: Fleet) -> None:
    """Parking unwinds each sleeping branch; inside a TaskGroup that arrives as an exception
    group, which parks the run as a lone sleep would (counted and logged as parked, not as a
    worker task that crashed): it holds no worker until due, and is claimed once more then."""
    [eid] = fleet.submit(fw.grouped_nap_flow, [4.0], "grouped")
    fleet.worker("--concurrency", "4", "--park-after", "1")
    deadline = time.monotonic() + 30
    while fleet.statuses().get("sleeping") != 1:
        assert time.monotonic() < deadline, fleet.statuses()
        time.sleep(0.05)
    fleet.wait_finished(1, within=30)
    assert fleet.statuses() == {"completed": 1}
    store = PostgresStore(fleet.url)
    try:
        records = store.read(eid).records
    finally:
        store.close()
    kinds = [r["kind"] for r in records]
    assert kinds.count("workflow_resumed") == 1, kinds  # claimed again once, when due
    assert kinds.count("timer_fired") == 2 and kinds.count("task_completed") == 2, kinds
    assert records[-1]["value"] == ["woke", "woke"]
    fleet.stop()
    logs = fleet.logs()
    assert "Traceback" not in logs and "1 parked" in logs and "0 errors" in logs, logs[-3000:]


def _stays_diverged(fleet: Fleet, execution_id: str, until: float) -> int:
    """Waits for the execution to be marked diverged, then checks that nobody claims it again
    (its epoch stays, it is not runnable); returns the epoch."""
    while fleet.query("SELECT divergence IS NULL FROM flux.executions WHERE execution_id = %s", execution_id)[0][0]:
        assert time.monotonic() < until
        time.sleep(0.1)
    epoch = fleet.query("SELECT epoch FROM flux.executions WHERE execution_id = %s", execution_id)[0][0]
    time.sleep(2.5)
    assert fleet.query("SELECT epoch, ready_at FROM flux.executions WHERE execution_id = %s", execution_id)[0] == (
        epoch,
        None,
    )
    return int(epoch)


def test_code_that_diverges_is_stopped_kept_and_never_retried(fleet: Fleet) -> None:
    [changing] = fleet.submit(fw.changing_flow, [1.5], "change")
    old = fleet.worker("--concurrency", "4", "--park-after", "1")
    deadline = time.monotonic() + 30
    while fleet.statuses().get("sleeping") != 1:
        assert time.monotonic() < deadline, fleet.statuses()
        time.sleep(0.05)
    old.terminate()
    old.wait(timeout=20)
    fleet.worker("--concurrency", "4", "--park-after", "1", env={"FLUX_TEST_VARIANT": "b"})  # a new deploy
    others = fleet.submit(fw.order_flow, [{"id": f"d{i}", "n": 2, "flaky": False} for i in range(20)], "d")
    fleet.wait_finished(20, within=60)
    epoch = _stays_diverged(fleet, changing, deadline + 30)
    listed = flux_cmd("list", "--store", fleet.url, cwd=fleet.tmp).stdout
    assert f"{changing}" in listed and "diverged" in listed
    shown = flux_cmd("show", changing, "--store", fleet.url, cwd=fleet.tmp)
    assert "status: diverged" in shown.stdout and "diverged:" in shown.stdout and "step_a" in shown.stdout
    assert _outputs(fleet.url, others) == dict.fromkeys(others, 2)  # nothing else was stranded
    # Handed back to the fleet (as after deploying a fix): claimed once, still diverges with
    # this deploy's code, and is marked again, not retried in a loop.
    listed = flux_cmd("list", "--status", "diverged", "--store", fleet.url, cwd=fleet.tmp).stdout
    assert changing in listed
    handed = flux_cmd("resume", changing, "--detach", "--store", fleet.url, cwd=fleet.tmp)
    assert handed.returncode == 0 and handed.stdout.strip() == changing, handed.stderr
    while fleet.query("SELECT epoch FROM flux.executions WHERE execution_id = %s", changing)[0][0] < epoch + 2:
        assert time.monotonic() < deadline + 60
        time.sleep(0.1)
    _stays_diverged(fleet, changing, deadline + 60)
    fixed = flux_cmd("resume", changing, "--store", fleet.url, cwd=fleet.tmp, env=fleet.env)  # with the old code
    assert fixed.returncode == 0 and "status: completed" in fixed.stdout and 'output: "aa"' in fixed.stdout, (
        fixed.stderr
    )


def test_sigterm_hands_every_lease_back_at_once(fleet: Fleet) -> None:
    ids = fleet.submit(fw.long_flow, [30] * 6, "term")
    slow = {"FLUX_TEST_TASK_SECONDS": "0.2"}
    a = fleet.worker("--concurrency", "8", env=slow, lease=30.0)
    deadline = time.monotonic() + 30
    while fleet.query("SELECT count(*) FROM flux.executions WHERE holder IS NOT NULL")[0][0] < 6:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    began = time.monotonic()
    a.terminate()
    assert a.wait(timeout=10) == 0
    assert time.monotonic() - began < 3.0
    assert fleet.query("SELECT count(*) FROM flux.executions WHERE holder IS NOT NULL")[0][0] == 0
    fleet.worker("--concurrency", "8", lease=30.0)  # takes over at once, not after 30 s
    fleet.wait_finished(6, within=25)
    assert fleet.duplicate_starts() == []
    assert _outputs(fleet.url, ids) == {eid: sum(2 * i for i in range(30)) for eid in ids}


def test_the_client_submits_to_the_fleet_and_reads_back(fleet: Fleet) -> None:
    fleet.worker("--concurrency", "8")

    async def scenario() -> None:
        async with Client(fleet.url) as client:
            handle = await client.start(fw.order_flow, {"id": "x", "n": 3}, execution_id="sub-1")
            assert not handle.local  # submitted, not run here
            done = await handle.result(timeout=30)
            assert done.status == "completed" and done.output == 7
            view = await client.get("sub-1")
            assert view.status == "completed" and len(view.calls) == 4
            assert [s.execution_id for s in (await client.list(status="completed")).items] == ["sub-1"]

    asyncio.run(scenario())
    detached = flux_cmd(
        "exec",
        WORKFLOWS,
        "order_flow",
        "--input",
        '{"id": "y", "n": 2}',
        "--detach",
        "--store",
        fleet.url,
        cwd=fleet.tmp,
    )
    assert detached.returncode == 0, detached.stderr
    eid = detached.stdout.strip()
    fleet.wait_finished(2, within=30)
    assert _outputs(fleet.url, [eid]) == {eid: 3}


def test_purge_deletes_finished_executions_older_than_an_age(fleet: Fleet) -> None:
    ids = fleet.submit(fw.order_flow, [{"id": f"p{i}", "n": 1, "flaky": False} for i in range(6)], "p")
    parents = fleet.submit(fw.parent_flow, ["c0", "c1"], "parent")
    fleet.worker("--concurrency", "8")
    fleet.wait_finished(10, within=30)
    children = dict(fleet.query("SELECT parent_id, execution_id FROM flux.executions WHERE parent_id IS NOT NULL"))
    assert sorted(children) == sorted(parents)
    # Four orders and the first parent with its child finished 40 days ago; of the second parent
    # only the child did (its parent, still there, replays it: it stays).
    old = [*ids[:4], parents[0], children[parents[0]], children[parents[1]]]
    fleet.query(
        "UPDATE flux.executions SET finished_at = now() - interval '40 days' WHERE execution_id = ANY(%s) RETURNING 1",
        old,
    )
    bad = flux_cmd("purge", "--finished-before", "soon", "--store", fleet.url, cwd=fleet.tmp)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    done = flux_cmd("purge", "--finished-before", "30d", "--store", fleet.url, "--json", cwd=fleet.tmp)
    assert done.returncode == 0, done.stderr
    purged = json.loads(done.stdout)
    assert sorted(purged["deleted"]) == sorted([*ids[:4], parents[0]])
    assert (purged["journals"], purged["skipped"], purged["dry_run"]) == (6, {}, False)
    kept = sorted([*ids[4:], parents[1], children[parents[1]]])
    assert sorted(r[0] for r in fleet.query("SELECT execution_id FROM flux.executions")) == kept
    assert fleet.query("SELECT count(DISTINCT exec_pk) FROM flux.records")[0][0] == len(kept)
    again = flux_cmd("prune", "--finished-before", "30d", "--store", fleet.url, cwd=fleet.tmp)
    assert again.returncode == 0 and "deleted 0 executions" in again.stdout, again.stderr
    # One execution by id, never one a process holds.
    assert flux_cmd("delete", ids[4], "--store", fleet.url, cwd=fleet.tmp).returncode == 0
    assert not fleet.query("SELECT 1 FROM flux.executions WHERE execution_id = %s", ids[4])


def test_a_worker_claims_only_its_queues_and_workflows(fleet: Fleet) -> None:
    on_default = fleet.submit(fw.order_flow, [{"id": "q0", "n": 1, "flaky": False}], "qd")
    urgent = flux_cmd("exec", WORKFLOWS, "order_flow", "--input", '{"id": "q1", "n": 1, "flaky": false}', "--detach",
                      "--store", fleet.url, cwd=fleet.tmp, env={"FLUX_QUEUE": "urgent"}).stdout.strip()
    fleet.worker("--concurrency", "4", "--queue", "urgent")
    fleet.wait_finished(1, within=30)
    time.sleep(1.0)
    assert fleet.query("SELECT execution_id, queue, status FROM flux.executions ORDER BY queue") == [
        (on_default[0], "default", "created"),  # no worker of its queue: untouched
        (urgent, "urgent", "completed"),
    ]


def test_a_queue_limit_holds_across_the_fleet_and_only_for_its_queue(fleet: Fleet) -> None:
    """`flux queue set narrow --concurrency 2`: two workers with eight places each never hold
    more than two of narrow's executions at once; the default queue beside it is not limited."""
    limited = flux_cmd("queue", "set", "narrow", "--concurrency", "2", "--store", fleet.url, cwd=fleet.tmp)
    assert limited.returncode == 0 and "narrow: at most 2 at once" in limited.stdout, limited.stderr
    narrow = fleet.submit(fw.long_flow, [4] * 8, "n", queue="narrow")
    wide = fleet.submit(fw.long_flow, [4] * 8, "w")
    listed = flux_cmd("queue", "list", "--json", "--store", fleet.url, cwd=fleet.tmp)
    assert json.loads(listed.stdout) == {"queues": [
        {"name": "default", "concurrency": None, "rate": None, "running": 0, "ready": 8},
        {"name": "narrow", "concurrency": 2, "rate": None, "running": 0, "ready": 8},
    ]}
    held = {"narrow": 0, "default": 0}

    def sample() -> None:
        for queue, count in fleet.query(
            "SELECT queue, count(*) FROM flux.executions WHERE holder IS NOT NULL AND lease_until > now() "
            "AND status NOT IN ('completed', 'failed', 'cancelled') GROUP BY queue"
        ):
            held[queue] = max(held[queue], count)

    env = {"FLUX_TEST_TASK_SECONDS": "0.1"}
    for _ in range(2):
        fleet.worker("--concurrency", "8", "--queue", "narrow", "--queue", "default", env=env)
    fleet.wait_finished(16, within=90, during=sample)
    assert _outputs(fleet.url, narrow + wide) == dict.fromkeys(narrow + wide, 12)  # charge("long", i) is 2 * i
    assert held["narrow"] == 2, held  # reached, never passed
    assert held["default"] > 2, held
    lifted = flux_cmd("queue", "set", "narrow", "--unlimited", "--store", fleet.url, cwd=fleet.tmp)
    assert lifted.returncode == 0 and "narrow: no limit" in lifted.stdout
    bad = flux_cmd("queue", "set", "narrow", "--concurrency", "0", "--store", fleet.url, cwd=fleet.tmp)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "must be at least 1" in bad.stderr, bad.stderr


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_worker_facing_a_full_queue_waits_rather_than_asking_again_at_once(fleet: Fleet) -> None:
    """The second execution of a queue limited to one is due, but the queue will not let it go:
    the worker asks again every 50 ms, not in a loop (which burns a core, and the database's)."""
    assert flux_cmd("queue", "set", "one", "--concurrency", "1", "--store", fleet.url, cwd=fleet.tmp).returncode == 0
    ids = fleet.submit(fw.long_flow, [3, 3], "one", queue="one")
    worker = fleet.worker("--concurrency", "4", "--queue", "one", env={"FLUX_TEST_TASK_SECONDS": "1.5"})
    deadline = time.monotonic() + 30
    while not fleet.query("SELECT 1 FROM flux.executions WHERE holder IS NOT NULL AND lease_until > now()"):
        assert time.monotonic() < deadline, fleet.logs()
        time.sleep(0.05)
    time.sleep(0.5)  # past the worker's start-up
    before, began = _cpu_seconds(worker.pid), time.monotonic()
    time.sleep(2.0)
    used = _cpu_seconds(worker.pid) - before
    waited = time.monotonic() - began
    assert fleet.query("SELECT count(*) FROM flux.executions WHERE status = 'created'")[0][0] == 1  # still held back
    assert used < 0.25 * waited, f"{used:.2f} s of CPU in {waited:.2f} s"
    fleet.wait_finished(2, within=60)
    assert _outputs(fleet.url, ids) == dict.fromkeys(ids, 6)


def _first_starts(fleet: Fleet, queue: str) -> list[float]:
    """When each execution of `queue` wrote its `workflow_started`, in epoch seconds, in order."""
    starts = {}
    for execution_id, line in fleet.query(
        "SELECT e.execution_id, convert_from(r.line, 'UTF8') FROM flux.records r JOIN flux.executions e "
        "ON e.pk = r.exec_pk WHERE e.queue = %s ORDER BY r.seq", queue
    ):
        record = json.loads(line)
        if record["kind"] == "workflow_started":
            starts.setdefault(execution_id, _seconds(record["at"]))
    return sorted(starts.values())


def test_a_queue_rate_limit_holds_across_the_fleet(fleet: Fleet) -> None:
    """`flux queue set metered --rate 3 --per 2`: two workers with eight places each start at
    most three of its executions in any two seconds, and every one of them runs."""
    limited = flux_cmd("queue", "set", "metered", "--rate", "3", "--per", "2", "--store", fleet.url, cwd=fleet.tmp)
    assert limited.returncode == 0 and "metered: at most 3 started per 2 s" in limited.stdout, limited.stderr
    ids = fleet.submit(fw.long_flow, [2] * 9, "m", queue="metered")
    listed = flux_cmd("queue", "list", "--json", "--store", fleet.url, cwd=fleet.tmp)
    assert json.loads(listed.stdout)["queues"] == [
        {"name": "metered", "concurrency": None, "rate": {"limit": 3, "per": 2.0}, "running": 0, "ready": 9}
    ]
    for _ in range(2):
        fleet.worker("--concurrency", "8", "--queue", "metered")
    fleet.wait_finished(9, within=60)
    assert _outputs(fleet.url, ids) == dict.fromkeys(ids, 2)
    starts = _first_starts(fleet, "metered")
    assert len(starts) == 9
    # Three windows of two seconds at least; a start's record is written a little after its
    # claim, so the windows are checked a quarter of a second short.
    for i, at in enumerate(starts):
        assert sum(1 for t in starts[i:] if t < at + 1.75) <= 3, starts
    assert starts[-1] - starts[0] > 3.5, starts
    lifted = flux_cmd("queue", "set", "metered", "--unlimited", "--store", fleet.url, cwd=fleet.tmp)
    assert lifted.returncode == 0 and "metered: no limit" in lifted.stdout
    for args, says in (
        (("--rate", "0", "--per", "1"), "must be at least 1"),
        (("--rate", "2"), "together with --per"),
        (("--rate", "2", "--per", "0"), "above 0"),
        (("--concurrency", "0", "--rate", "2", "--per", "1"), "--concurrency 0 must be at least 1"),
        (("--concurrency", "2", "--rate", "2", "--per", "-1"), "above 0"),
    ):
        bad = flux_cmd("queue", "set", "metered", *args, "--store", fleet.url, cwd=fleet.tmp)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and says in bad.stderr, (args, bad.stderr)
    # A command refused wrote nothing, not even its good limit.
    listed = flux_cmd("queue", "list", "--json", "--store", fleet.url, cwd=fleet.tmp)
    assert json.loads(listed.stdout)["queues"] == [
        {"name": "metered", "concurrency": None, "rate": None, "running": 0, "ready": 0}
    ], listed.stdout


def test_a_rate_limit_counts_starts_only_and_says_when_to_ask_again(fleet: Fleet) -> None:
    """A run already started (handed back, or due again) goes on whatever the rate; a claim
    that the rate held back says when the window frees a start, not "at once"."""
    fleet.query("INSERT INTO flux.queues (name, rate, per) VALUES ('slow', 1, 60) RETURNING 1")
    ids = fleet.submit(fw.long_flow, [1] * 3, "s", queue="slow")
    store = PostgresStore(fleet.url)
    try:
        first, due = store.claim(["slow"], ["long_flow"], 8)
        assert [c.execution_id for c in first] == [ids[0]] and due is not None and 55 < due <= 60
        again, due = store.claim(["slow"], ["long_flow"], 8)
        assert again == [] and due is not None and 55 < due <= 60
        # One of the others ran before (a worker handed it back): it is not a start.
        fleet.query("UPDATE flux.executions SET status = 'running' WHERE execution_id = %s RETURNING 1", ids[2])
        going_on, _ = store.claim(["slow"], ["long_flow"], 8)
        assert [c.execution_id for c in going_on] == [ids[2]]
        assert fleet.query("SELECT count(*) FROM flux.queue_starts")[0][0] == 1
    finally:
        store.close()
