"""Schedules (SPEC.md "Schedules"): fire times on a VirtualClock (a cron schedule across both DST
changes of a week each), the missed-fire and overlap policies, the fire recorded in the header
and replayed, bad input, the command line, and a worker killed while firing."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from flux._engine.stores.files import FileStore
from flux._engine.stores.memory import MemoryStore
from flux.clock import VirtualClock
from flux.domain.schedule import cron, interval, once
from flux.errors import InvalidOptionError, ScheduleExistsError
from flux.schedules import Scheduler, create_schedule, get_schedule, pause_schedule, resume_schedule
from tests import schedule_workflows as sw
from tests.conftest import ROOT, flux_cmd

LISBON = ZoneInfo("Europe/Lisbon")


def local(*args: int, fold: int = 0) -> float:
    return dt.datetime(*args, tzinfo=LISBON, fold=fold).timestamp()


def drive(sched: Scheduler, clock: VirtualClock, until: float) -> None:
    """Fires as a worker would: at each due time the clock jumps to, until `until`."""
    while True:
        due = sched.tick()
        if due is None or due > until:
            return
        clock.advance(max(0.0, due - clock.now()))


def fire_times(store: FileStore, name: str) -> list[str]:
    out = []
    for execution_id in sorted(store.list_ids()):
        fired = store.header(execution_id).get("schedule")
        if fired and fired["name"] == name:
            out.append(utc(dt.datetime.fromisoformat(fired["at"]).timestamp()))
    return sorted(out)


def utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        # spring forward: 2026-03-29 01:00 WET -> 02:00 WEST; 01:30 does not exist that night
        (
            (2026, 3, 26),
            [local(2026, 3, 26, 1, 30), local(2026, 3, 27, 1, 30), local(2026, 3, 28, 1, 30), local(2026, 3, 29, 2, 0),
             local(2026, 3, 30, 1, 30), local(2026, 3, 31, 1, 30), local(2026, 4, 1, 1, 30)],
        ),
        # fall back: 2026-10-25 02:00 WEST -> 01:00 WET; 01:30 happens twice, fires once (the first)
        (
            (2026, 10, 22),
            [local(2026, 10, 22, 1, 30), local(2026, 10, 23, 1, 30), local(2026, 10, 24, 1, 30),
             local(2026, 10, 25, 1, 30, fold=0), local(2026, 10, 26, 1, 30), local(2026, 10, 27, 1, 30),
             local(2026, 10, 28, 1, 30)],
        ),
    ],
)
def test_cron_across_a_dst_change_fires_at_the_right_instants_for_a_week(
    tmp_path: Path, start: tuple[int, int, int], expected: list[float]
) -> None:
    clock = VirtualClock(local(*start, 0, 0), auto=False)
    store = FileStore(tmp_path / "store")
    nightly = cron("30 1 * * *", timezone="Europe/Lisbon", overlap="allow")
    create_schedule(store, "nightly", "stamped", nightly, clock=clock)
    sched = Scheduler(store, [sw.stamped], clock=clock)
    drive(sched, clock, clock.now() + 7 * 86400 - 1)
    assert fire_times(store, "nightly") == [utc(t) for t in expected]
    assert sorted(sched.fired) == sorted(store.list_ids())


def test_an_hourly_cron_fires_on_both_passes_of_the_repeated_hour(tmp_path: Path) -> None:
    clock = VirtualClock(local(2026, 10, 24, 23, 30), auto=False)
    store = FileStore(tmp_path / "store")
    hourly = cron("0 * * * *", timezone="Europe/Lisbon", overlap="allow")
    create_schedule(store, "hourly", "stamped", hourly, clock=clock)
    drive(Scheduler(store, [sw.stamped], clock=clock), clock, local(2026, 10, 25, 3, 0))
    assert fire_times(store, "hourly") == [
        utc(t) for t in (local(2026, 10, 25, 0, 0), local(2026, 10, 25, 1, 0), local(2026, 10, 25, 1, 0, fold=1),
                         local(2026, 10, 25, 2, 0), local(2026, 10, 25, 3, 0))
    ]


def _missed(tmp_path: Path, policy: str, limit: int = 10) -> tuple[list[str], float, dict[str, Any]]:
    clock = VirtualClock(1_800_000_000.0, auto=False)
    store = FileStore(tmp_path / policy)
    create_schedule(store, "every10", "stamped", interval(seconds=10, missed=policy, missed_limit=limit,
                                                            overlap="allow", grace=15), clock=clock)
    first = clock.now() + 10
    clock.advance(100 + 5)  # no worker ran for 105 s: fires at +10 ... +100 are due, +100 is 5 s late
    Scheduler(store, [sw.stamped], clock=clock).tick()
    return fire_times(store, "every10"), first, get_schedule(store, "every10")


def test_missed_fires_skip_runs_only_those_within_grace(tmp_path: Path) -> None:
    fired, first, state = _missed(tmp_path, "skip")
    assert fired == [utc(first + 80), utc(first + 90)]  # 15 and 5 seconds late: on time
    assert state["next_fire"] == first + 100


def test_missed_fires_latest_runs_the_latest_once(tmp_path: Path) -> None:
    clock = VirtualClock(1_800_000_000.0, auto=False)
    store = FileStore(tmp_path / "s")
    create_schedule(store, "every10", "stamped", interval(seconds=10, missed="latest", overlap="allow", grace=3),
                    clock=clock)
    clock.advance(100 + 5)  # the newest fire (+100) is 5 s late: beyond grace, all are missed
    Scheduler(store, [sw.stamped], clock=clock).tick()
    assert fire_times(store, "every10") == [utc(1_800_000_000.0 + 100)]


def test_missed_fires_all_runs_each_up_to_the_limit(tmp_path: Path) -> None:
    fired, first, _ = _missed(tmp_path, "all", limit=3)
    # the three newest missed fires (+50, +60, +70), then the two within grace (+80, +90)
    assert fired == [utc(first + k) for k in (50, 60, 70, 80, 90)]


def _overlap(tmp_path: Path, policy: str) -> tuple[FileStore, Scheduler, VirtualClock]:
    clock = VirtualClock(1_800_000_000.0, auto=False)
    store = FileStore(tmp_path / policy)
    create_schedule(store, "s", "stamped", interval(seconds=10, overlap=policy), clock=clock)
    return store, Scheduler(store, [sw.stamped], clock=clock), clock


def _finish(store: FileStore, execution_id: str) -> None:
    ctx = sw.stamped.run(execution_id=execution_id, store=store)
    assert ctx.status == "completed"


def test_overlap_allow_starts_every_fire(tmp_path: Path) -> None:
    store, sched, clock = _overlap(tmp_path, "allow")
    for _ in range(3):
        clock.advance(10)
        sched.tick()
    assert len(fire_times(store, "s")) == 3  # none finished, all started


def test_overlap_skip_drops_fires_while_the_previous_run_is_open(tmp_path: Path) -> None:
    store, sched, clock = _overlap(tmp_path, "skip")
    t0 = clock.now()
    clock.advance(10)
    sched.tick()  # +10 starts
    clock.advance(10)
    sched.tick()  # +20 dropped: +10 is open
    _finish(store, "s-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t0 + 10)))
    clock.advance(10)
    sched.tick()  # +30 starts
    assert fire_times(store, "s") == [utc(t0 + 10), utc(t0 + 30)]


def test_overlap_buffer_one_starts_one_waiting_fire_when_the_previous_finishes(tmp_path: Path) -> None:
    store, sched, clock = _overlap(tmp_path, "buffer_one")
    t0 = clock.now()
    for _ in range(3):
        clock.advance(10)
        sched.tick()  # +10 starts; +20 buffered; +30 dropped (the buffer is full)
    assert fire_times(store, "s") == [utc(t0 + 10)]
    assert get_schedule(store, "s")["buffered"] == t0 + 20
    _finish(store, "s-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t0 + 10)))
    sched.tick()
    assert fire_times(store, "s") == [utc(t0 + 10), utc(t0 + 20)]
    assert get_schedule(store, "s")["buffered"] is None


def test_the_fire_is_in_the_header_read_by_ctx_and_replayed(tmp_path: Path) -> None:
    clock = VirtualClock(1_800_000_000.0, auto=False)
    store = FileStore(tmp_path / "store")
    create_schedule(store, "one", "stamped", once(at=1_800_000_030.0), clock=clock)
    sched = Scheduler(store, [sw.stamped], clock=clock)
    assert sched.tick() == 1_800_000_030.0
    clock.advance(30)
    sched.tick()
    [execution_id] = store.list_ids()
    assert execution_id == "one-20270115T080030Z"
    ctx = sw.stamped.run(execution_id=execution_id, store=store)
    assert ctx.output == {"schedule": "one", "at": utc(1_800_000_030.0)}
    again = sw.stamped.run(execution_id=execution_id, store=store)  # finished: read back by replay
    assert again.output == ctx.output
    assert get_schedule(store, "one")["next_fire"] is None  # a once schedule fires no more


@pytest.mark.parametrize("kind", ["files", "memory"])
def test_a_listing_names_the_schedule_that_started_each_execution(tmp_path: Path, kind: str) -> None:
    clock = VirtualClock(1_800_000_000.0, auto=False)
    store: Any = FileStore(tmp_path / "store") if kind == "files" else MemoryStore.named(f"list-{tmp_path.name}")
    create_schedule(store, "one", "stamped", once(at=1_800_000_030.0), clock=clock)
    clock.advance(30)
    Scheduler(store, [sw.stamped], clock=clock).tick()
    sw.stamped.run(execution_id="by-hand", store=store)
    rows = {row.execution_id: row for row in store.list().items}
    assert rows["one-20270115T080030Z"].schedule == "one"
    assert rows["by-hand"].schedule is None
    assert rows["one-20270115T080030Z"].to_json()["schedule"] == "one"
    assert rows["by-hand"].to_json()["schedule"] is None  # the key is always there
    assert store.summary("one-20270115T080030Z").schedule == "one"


def test_flux_list_shows_the_schedule_column_only_when_a_row_has_one(tmp_path: Path) -> None:
    s = str(tmp_path / "store")
    flows = str(ROOT / "tests" / "schedule_workflows.py")
    assert flux_cmd("exec", flows, "stamped", "--store", s, cwd=tmp_path).returncode == 0
    plain = flux_cmd("list", "--store", s, cwd=tmp_path)
    assert plain.returncode == 0 and "schedule" not in plain.stdout.splitlines()[0]
    made = flux_cmd("schedule", "create", "daily", "stamped", "--cron", "0 9 * * *", "--store", s, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    fired = flux_cmd("schedule", "trigger", "daily", flows, "--json", "--store", s, cwd=tmp_path)
    assert fired.returncode == 0, fired.stderr
    fired_id = orjson.loads(fired.stdout)["execution_id"]
    table = flux_cmd("list", "--store", s, cwd=tmp_path).stdout.splitlines()
    assert table[0].split() == ["execution_id", "workflow", "status", "started", "records", "schedule"]
    by_id = {line.split()[0]: line.split() for line in table[1:]}
    assert by_id[fired_id][-1] == "daily" and sum(cells[-1] == "-" for cells in by_id.values()) == 1
    listed = orjson.loads(flux_cmd("list", "--json", "--store", s, cwd=tmp_path).stdout)["items"]
    assert sorted((row["schedule"] or "") for row in listed) == ["", "daily"]
    only = flux_cmd("list", "--jsonl", "--status", "created", "--store", s, cwd=tmp_path).stdout.splitlines()
    assert [orjson.loads(line)["schedule"] for line in only] == ["daily"]  # not run: no worker
    by_schedule = flux_cmd("list", "--schedule", "daily", "--jsonl", "--store", s, cwd=tmp_path).stdout.splitlines()
    assert [orjson.loads(line)["execution_id"] for line in by_schedule] == [fired_id]
    none = flux_cmd("list", "--schedule", "dail", "--store", s, cwd=tmp_path)
    assert none.returncode == 0 and none.stdout.startswith("no executions match")


def test_a_second_scheduler_or_a_retry_never_starts_a_fire_twice(tmp_path: Path) -> None:
    clock = VirtualClock(1_800_000_000.0, auto=False)
    store = FileStore(tmp_path / "store")
    create_schedule(store, "s", "stamped", interval(seconds=1, overlap="allow"), clock=clock)
    a, b = Scheduler(store, [sw.stamped], clock=clock), Scheduler(store, [sw.stamped], clock=clock)
    for _ in range(20):
        clock.advance(1)
        a.tick()
        b.tick()
    assert len(store.list_ids()) == 20 == len(a.fired) + len(b.fired)


def test_pause_and_resume(tmp_path: Path) -> None:
    clock = VirtualClock(1_800_000_000.0, auto=False)
    store = FileStore(tmp_path / "store")
    create_schedule(store, "s", "stamped", interval(seconds=10, overlap="allow"), clock=clock)
    sched = Scheduler(store, [sw.stamped], clock=clock)
    pause_schedule(store, "s")
    clock.advance(35)
    sched.tick()
    assert store.list_ids() == []
    state = resume_schedule(store, "s", clock=clock)
    assert state["next_fire"] == 1_800_000_040.0  # fires of the pause are not made up
    clock.advance(5)
    sched.tick()
    assert fire_times(store, "s") == [utc(1_800_000_040.0)]


def test_bad_input_says_where_and_what(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match=r"field 1 \(minute\) '61'.*0-59"):
        cron("61 * * * *")
    with pytest.raises(InvalidOptionError, match=r"field 5 \(day-of-week\)"):
        cron("0 9 * * FUNDAY")
    with pytest.raises(InvalidOptionError, match="IANA"):
        cron("0 9 * * *", timezone="Europe/Nowhere")
    with pytest.raises(InvalidOptionError, match="buffer_one"):
        interval(seconds=5, overlap="queue")
    with pytest.raises(InvalidOptionError, match="interval must be > 0"):
        interval()
    store = FileStore(tmp_path / "store")
    create_schedule(store, "s", "stamped", interval(seconds=5))
    with pytest.raises(ScheduleExistsError):
        create_schedule(store, "s", "stamped", interval(seconds=5))
    with pytest.raises(InvalidOptionError, match="schedule name"):
        create_schedule(store, "no spaces", "stamped", interval(seconds=5))


def test_command_line(tmp_path: Path) -> None:
    s = str(tmp_path / "store")
    bad = flux_cmd("schedule", "create", "x", "stamped", "--cron", "0 25 * * *", "--store", s, cwd=tmp_path)
    assert bad.returncode == 2 and "field 2 (hour)" in bad.stderr and bad.stderr.count("\n") == 1
    made = flux_cmd("schedule", "create", "daily", "stamped", "--cron", "0 9 * * MON-FRI", "--tz", "Europe/Lisbon",
                    "--json", "--store", s, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert orjson.loads(made.stdout)["next_fire_at"].endswith("Z")
    assert flux_cmd("schedule", "pause", "daily", "--store", s, cwd=tmp_path).returncode == 0
    listed = orjson.loads(flux_cmd("schedule", "list", "--json", "--store", s, cwd=tmp_path).stdout)
    assert [(x["name"], x["paused"]) for x in listed] == [("daily", True)]
    fired = flux_cmd("schedule", "trigger", "daily", str(ROOT / "tests" / "schedule_workflows.py"), "--json",
                     "--store", s, cwd=tmp_path)
    assert fired.returncode == 0, fired.stderr
    execution_id = orjson.loads(fired.stdout)["execution_id"]
    shown = flux_cmd("show", execution_id, "--store", s, cwd=tmp_path)
    assert "triggered by hand from schedule daily" in shown.stdout
    assert flux_cmd("schedule", "delete", "daily", "--store", s, cwd=tmp_path).returncode == 0
    gone = flux_cmd("schedule", "resume", "daily", "--store", s, cwd=tmp_path)
    assert gone.returncode == 2 and "no schedule named 'daily'" in gone.stderr


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_a_worker_killed_while_firing_then_restarted_starts_each_due_fire_exactly_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    create_schedule(store, "tick", "stamped", interval(seconds=1, overlap="allow"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    flows = str(ROOT / "tests" / "schedule_workflows.py")
    args = [sys.executable, "-m", "flux", "worker", flows, "--store", store.home]
    # the 3rd fire's execution is made, then the worker is killed before the schedule records it
    first = subprocess.Popen(args, env={**env, "FLUX_TEST_FAULTS": "kill:3:schedule_fired"}, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert first.wait(timeout=120) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    assert get_schedule(store, "tick")["fires"] == 2  # the third fire was made but not recorded
    assert len(store.list_ids()) == 3
    second = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: get_schedule(store, "tick")["fires"] >= 8, 120, "eight fires")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    times = [dt.datetime.fromisoformat(t).timestamp() for t in fire_times(store, "tick")]
    state = get_schedule(store, "tick")
    assert len(times) == len(set(times)) == state["fires"]  # every recorded fire made one execution
    start = times[0]
    assert [round(t - start, 3) for t in times] == [float(k) for k in range(len(times))]  # none skipped
    assert state["next_fire"] == pytest.approx(times[-1] + 1)
