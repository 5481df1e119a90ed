"""Schedules on PostgreSQL: three `flux worker` processes on one database fire a one-second
interval schedule; every fire starts exactly one execution and none is skipped.

CI fires for FLUX_TEST_SCHEDULE_SECONDS (10 by default); set it to 60 for the minute.
Lateness is reported by benchmarks/bench_schedules.py, not asserted here."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from flux._engine.journal import encode_line, seed_for
from flux._engine.stores import pg_schema
from flux._engine.stores.postgres import PostgresStore
from flux.clock import VirtualClock
from flux.domain.schedule import interval, once
from flux.schedules import Scheduler, create_schedule, get_schedule, pause_schedule
from tests import schedule_workflows as sw
from tests.conftest import ROOT, empty_pg
from tests.pg import PgServer

pytestmark = pytest.mark.slow

SECONDS = int(os.environ.get("FLUX_TEST_SCHEDULE_SECONDS", "10"))


def test_three_workers_fire_a_one_second_schedule_each_fire_once(pg_url: str, tmp_path: Path) -> None:
    empty_pg(pg_url)
    store = PostgresStore(pg_url)
    create_schedule(store, "tick", "stamped", interval(seconds=1, overlap="allow"))
    args = [sys.executable, "-m", "flux", "worker", str(ROOT / "tests" / "schedule_workflows.py"), "--store", pg_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logs = [open(tmp_path / f"w{i}.log", "w") for i in range(3)]
    workers = [subprocess.Popen(args, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        time.sleep(SECONDS)
        pause_schedule(store, "tick")
        deadline = time.monotonic() + 180
        while True:  # every fire's execution finishes
            with psycopg.connect(pg_url) as conn:
                open_ = conn.execute("SELECT count(*) FROM flux.executions WHERE status <> 'completed'").fetchone()
            if open_ is not None and open_[0] == 0:
                break
            assert time.monotonic() < deadline, "fired executions did not finish"
            time.sleep(0.5)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
        for log in logs:
            log.close()
    state = get_schedule(store, "tick")
    ids = store.list_ids()
    times = sorted(dt.datetime.fromisoformat(store.header(i)["schedule"]["at"]).timestamp() for i in ids)
    assert len(ids) == state["fires"] >= SECONDS // 2  # each recorded fire made exactly one execution
    assert len(set(times)) == len(times)
    assert [round(t - times[0], 3) for t in times] == [float(k) for k in range(len(times))]  # none skipped
    assert all(store.summary(i).status == "completed" for i in ids)
    logs_text = "".join((tmp_path / f"w{i}.log").read_text() for i in range(3))
    assert logs_text.count("worker ready") == 3


def test_a_listing_names_the_schedule_that_started_each_execution(pg_url: str) -> None:
    empty_pg(pg_url)
    store = PostgresStore(pg_url)
    try:
        clock = VirtualClock(1_800_000_000.0, auto=False)
        create_schedule(store, "one", "stamped", once(at=1_800_000_030.0), clock=clock)
        clock.advance(30)
        Scheduler(store, [sw.stamped], clock=clock).tick()
        sw.stamped.run(execution_id="by-hand", store=store)
        rows = {row.execution_id: row.to_json()["schedule"] for row in store.list().items}
        assert rows == {"one-20270115T080030Z": "one", "by-hand": None}
        assert store.summary("one-20270115T080030Z").schedule == "one"
    finally:
        store.close()


def test_migration_3_names_the_schedule_of_executions_made_before_it(pg_server: PgServer) -> None:
    url = pg_server.create_database("before_schedule_column")
    with psycopg.connect(url, autocommit=True) as conn:
        assert pg_schema.migrate(conn, upto=2) == [1, 2]
        for execution_id, fired in (("nightly-1", {"name": "nightly", "at": "2027-01-15T08:00:30+00:00"}),
                                    ("plain", None), ("odd", "not an object")):
            header = {"seq": 0, "kind": "header", "execution_id": execution_id, "workflow": "stamped",
                      "created": "2027-01-15T08:00:30+00:00", **({"schedule": fired} if fired else {})}
            line = encode_line(header, seed_for(execution_id))
            conn.execute(
                "WITH e AS (INSERT INTO flux.executions (execution_id, workflow, created) VALUES (%s, 'stamped', "
                "'2027-01-15T08:00:30+00:00') RETURNING pk) "
                "INSERT INTO flux.records (exec_pk, seq, epoch, line) SELECT pk, 0, 1, %s FROM e",
                (execution_id, line),
            )
        assert pg_schema.migrate(conn) == [3, 4, 5, 6, 7]
    store = PostgresStore(url)
    try:
        assert {r.execution_id: r.schedule for r in store.list().items} == {
            "nightly-1": "nightly", "plain": None, "odd": None,
        }
        assert [r.execution_id for r in store.list(schedule="nightly").items] == ["nightly-1"]
    finally:
        store.close()
