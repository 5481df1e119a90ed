"""Battery scenarios 5 to 7, about processes: racing resumers, disk faults, a store of many executions."""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import orjson

from benchmarks import battery_child
from benchmarks.battery_child import expected_output, twenty
from benchmarks.battery_kit import ROOT, Figures, ForkServer, Size, journal_of, read_side_log, read_sync_log
from flux._engine.codec import encode
from flux._engine.errors import DurabilityError, FluxError
from flux._engine.journal import encode_line, read_journal, seed_for
from flux._engine.stores.files import FileStore
from flux._engine.stores.files import FileWriter as JournalWriter
from flux.recover import recover_store
from flux.runner import list_executions, resume_execution

__all__ = ["run_disk", "run_many", "run_race"]


# -- 5. racing resumers --------------------------------------------------------------------------


def _wait_for(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def _lock_holder(home: str, execution_id: str) -> int | None:
    try:
        with open(os.path.join(home, "executions", execution_id + ".lock"), "rb") as fh:
            return orjson.loads(fh.read()).get("pid")
    except (OSError, orjson.JSONDecodeError):
        return None


def _exit_code(server: ForkServer, pid: int, timeout: float = 10.0) -> int | None:
    """The exit code of a child that should end soon; one still running is killed (None)."""
    status = server.wait(pid, timeout=timeout)
    if not status["exited"]:
        os.kill(pid, signal.SIGKILL)
        server.wait(pid)
        return None
    return status["code"]


def _resumed(at: str) -> dict[str, Any]:
    return {"seq": 0, "kind": "workflow_resumed", "at": at, "pid": os.getpid(), "host": "battery"}


def _late_writer(store: FileStore, execution_id: str, owner_first: bool) -> bool:
    """An owner and a writer that lost its lock both write; True when the late one is refused
    and the journal holds exactly the other's record."""
    lease = store.acquire(execution_id, "fsync")
    path = lease.read.path
    # The stale writer: opened the journal when it owned it, then lost the lock without knowing.
    stale = JournalWriter.open(read_journal(path, execution_id), execution_id, "fsync", path[:-6] + ".torn")
    first, second = (lease.writer, stale) if owner_first else (stale, lease.writer)
    try:
        first.append(_resumed("first"))
        first.sync()
        before = os.path.getsize(path)
        second.append(_resumed("second"))
        try:
            second.sync()
            refused = False
        except DurabilityError:
            refused = True
        records = read_journal(path, execution_id).records
        return refused and os.path.getsize(path) == before and records[-1]["at"] == "first"
    finally:
        stale.close()
        lease.close()


def run_race(size: Size, seed: int, workdir: str) -> Figures:
    """`size.race_rounds` rounds of 2 to 8 processes resuming one execution at the same moment."""
    fig = Figures("race")
    rng = random.Random(seed)
    home = os.path.join(workdir, "store")
    side_log = os.path.join(workdir, "side.log")
    store = FileStore(home)
    one_owner = racers_total = takeover_first_try = 0
    takeovers: list[float] = []
    stopped_held = stopped_checks = unlinked_held = unlinked_checks = late_refused = late_checks = 0
    owners: list[int] = []
    with ForkServer() as server:
        pid = server.fork("run", {"home": home, "workflow": "held", "side_log": side_log})
        if not _wait_for(lambda: any(p == pid for _, p in read_side_log(side_log))):
            raise AssertionError("the first run of the held workflow never started its task")
        os.kill(pid, signal.SIGKILL)
        server.wait(pid)
        found = journal_of(home)
        assert found is not None
        path, eid = found
        for rnd in range(size.race_rounds):
            k = rng.randint(2, 8)
            racers_total += k
            start_at = time.time() + 0.004 * k + 0.005
            args = {"home": home, "workflow": "held", "execution_id": eid, "side_log": side_log, "start_at": start_at}
            pids = [server.fork("race", args) for _ in range(k)]
            ended: dict[int, Any] = {}
            deadline = time.monotonic() + 5
            while len(ended) < k - 1 and time.monotonic() < deadline:
                for p in pids:
                    if p not in ended:
                        status = server.wait(p, timeout=0)
                        if status["exited"]:
                            ended[p] = status
            alive = [p for p in pids if p not in ended]
            locked = sum(1 for s in ended.values() if s["code"] == 3)
            owner = alive[0] if len(alive) == 1 else None
            if owner is not None and locked == k - 1:
                started = _wait_for(
                    lambda: any(p == owner for _, p in read_side_log(side_log)), timeout=5  # noqa: B023 - called at once
                )
                if started and _lock_holder(home, eid) == owner:
                    one_owner += 1
                    owners.append(owner)
            else:
                fig.note(f"round {rnd}: {k} racers, {len(alive)} still running, {locked} refused as locked: {ended}")
            if owner is not None and rnd % 10 == 0:
                # A stopped owner keeps its flock: nobody gets in while it sleeps.
                os.kill(owner, signal.SIGSTOP)
                stopped_checks += 1
                late = server.fork("race", {**args, "start_at": 0})
                stopped_held += _exit_code(server, late) == 3
                os.kill(owner, signal.SIGCONT)
            if owner is not None and rnd % 10 == 5:
                # `rm *.lock` while the owner runs: the journal's own flock still keeps others out.
                os.unlink(os.path.join(home, "executions", eid + ".lock"))
                unlinked_checks += 1
                late = server.fork("race", {**args, "start_at": 0})
                unlinked_held += _exit_code(server, late) == 3
            for p in alive:
                os.kill(p, signal.SIGKILL)
            killed_at = time.perf_counter()
            for p in alive:
                server.wait(p, timeout=20)
            try:
                store.acquire(eid, "fsync").close()
                takeover_first_try += 1
                takeovers.append(time.perf_counter() - killed_at)
            except FluxError as err:
                fig.note(f"round {rnd}: the next owner could not get in after the owner died: {err}")
            if rnd % 50 == 25:
                for owner_first in (True, False):
                    late_checks += 1
                    try:
                        late_refused += _late_writer(store, eid, owner_first)
                    except FluxError as err:
                        fig.note(f"round {rnd}: a late writer was not refused cleanly: {err}")
    try:
        records = read_journal(path, eid).records
        valid = True
    except FluxError as err:
        fig.note(f"the journal is damaged after the rounds: {err}")
        records, valid = [], False
    resumed_pids = [r["pid"] for r in records if r["kind"] == "workflow_resumed" and r.get("host") != "battery"]
    rounds = size.race_rounds
    fig.add("rounds", "rounds of 2 to 8 resumers at once", rounds, at_least=rounds)
    fig.add("racers", "  resumers in all", racers_total)
    fig.add("one_owner", "rounds with exactly one owner (journal, lock and survivors agree)", f"{one_owner}/{rounds}",
            equal=f"{rounds}/{rounds}")
    fig.add("journal_owners", "owners recorded in the journal match the survivors", resumed_pids == owners, equal=True)
    fig.add("takeover", "next owner got in at the first try after a kill", f"{takeover_first_try}/{rounds}",
            equal=f"{rounds}/{rounds}")
    if takeovers:
        fig.add("takeover_ms", "  kill to next owner, median / max (ms)",
                f"{statistics.median(takeovers) * 1e3:.2f} / {max(takeovers) * 1e3:.2f}")
    fig.add("stopped", "SIGSTOPped owner kept others out", f"{stopped_held}/{stopped_checks}",
            equal=f"{stopped_checks}/{stopped_checks}")
    fig.add("unlinked", "lock file removed under its owner: others still kept out",
            f"{unlinked_held}/{unlinked_checks}", equal=f"{unlinked_checks}/{unlinked_checks}")
    fig.add("late_writer", "writes of a writer that lost ownership refused", f"{late_refused}/{late_checks}",
            equal=f"{late_checks}/{late_checks}")
    fig.add("journal_valid", "journal valid after all rounds", valid, equal=True)
    return fig


# -- 6. disk faults ------------------------------------------------------------------------------

FAULTS = (
    ("fsync fails (EIO)", "fail:{n}:after_write:EIO"),
    ("disk full (ENOSPC)", "fail:{n}:write:ENOSPC"),
    ("short write, then disk full", "short:{n}:write,fail:{m}:write:ENOSPC"),
    ("short write, then the rest", "short:{n}:write"),
)


def _flux(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": ROOT, **env}
    return subprocess.run(
        [sys.executable, "-m", "flux", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300
    )


def run_disk(size: Size, seed: int, workdir: str) -> Figures:
    """Each fault at `size.disk_cases_per_fault` random writes of a real `flux exec`, then `flux resume`."""
    fig = Figures("disk")
    rng = random.Random(seed)
    n_input = 20  # 20 sequential tasks and 4 lanes of two: about 30 syncs
    expected = encode(expected_output(n_input))
    stopped = clear = readable = early = resumed_ok = cases = continued_ok = continued = 0
    failing = 0
    reference = os.path.join(workdir, "reference")
    sync_log = reference + ".sync"
    _flux(["exec", battery_child.__file__, "many", "--input", str(n_input), "--home", reference],
          {"FLUX_TEST_FAULTS": "none", "FLUX_TEST_SYNC_LOG": sync_log})
    writes = len(list(read_sync_log(sync_log)))  # one write per sync when no write is short
    if writes < 10:
        raise AssertionError(f"the reference run of the disk-fault scenario made only {writes} syncs")
    for label, template in FAULTS:
        for _ in range(size.disk_cases_per_fault):
            cases += 1
            folder = os.path.join(workdir, f"case{cases}")
            home = os.path.join(folder, "store")
            n = rng.randint(1, writes)
            rule = template.format(n=n, m=n + 1)
            env = {
                "FLUX_TEST_FAULTS": rule,
                "FLUX_TEST_SYNC_LOG": os.path.join(folder, "sync.log"),
                "BATTERY_SIDE_LOG": os.path.join(folder, "side.log"),
            }
            os.makedirs(folder)
            run = _flux(["exec", battery_child.__file__, "many", "--input", str(n_input), "--home", home], env)
            found = journal_of(home)
            if found is None:
                fig.note(f"{label} at write {n}: no journal ({run.stderr.strip()})")
                continue
            path, eid = found
            try:
                read = read_journal(path, eid)
                readable += 1
            except FluxError as err:
                fig.note(f"{label} at write {n}: journal unreadable: {err}")
                continue
            if template.startswith("short:{n}:write") and "fail" not in template:
                continued += 1
                ok = run.returncode == 0 and not read.torn and read.records[-1].get("value") == expected
                continued_ok += ok
                if not ok:
                    fig.note(f"{label} at write {n}: exit {run.returncode}: {run.stderr.strip()}")
                continue
            failing += 1
            lines = run.stderr.strip().splitlines()
            stopped += run.returncode == 2 and "status: completed" not in run.stdout
            one_line = len(lines) == 1 and lines[0].startswith("DurabilityError: ") and "Traceback" not in run.stderr
            clear += one_line
            if not one_line or run.returncode != 2:
                fig.note(f"{label} at write {n}: exit {run.returncode}, stderr {run.stderr.strip()[:300]!r}")
            ends = [end for e, end, _ in read_sync_log(env["FLUX_TEST_SYNC_LOG"]) if e == eid]
            acked_end = ends[-1] if ends else 0
            durable = {
                r["call_id"]
                for r, off in zip(read.records, read.offsets, strict=True)
                if r["kind"] == "task_started" and off < acked_end
            }
            late = [c for c, _ in read_side_log(env["BATTERY_SIDE_LOG"]) if c not in durable]
            early += len(late)
            after = _flux(["resume", eid, "--home", home], {})
            final = read_journal(path, eid).records[-1]
            good = after.returncode == 0 and final["kind"] == "workflow_completed" and final["value"] == expected
            resumed_ok += good
            if not good:
                fig.note(f"{label} at write {n}: resume exit {after.returncode}: {after.stderr.strip()[:300]}")
    fig.add("runs", "flux exec runs with an injected fault", cases)
    fig.add("kinds", "  " + " / ".join(label for label, _ in FAULTS),
            " / ".join([str(size.disk_cases_per_fault)] * len(FAULTS)))
    fig.add("stopped", "failing writes that stopped the run with exit 2", f"{stopped}/{failing}",
            equal=f"{failing}/{failing}")
    fig.add("clear", "  with one line 'DurabilityError: ...'", f"{clear}/{failing}", equal=f"{failing}/{failing}")
    fig.add("early", "task bodies started past a failed write or fsync", early, equal=0)
    fig.add("readable", "journals readable afterwards", f"{readable}/{cases}", equal=f"{cases}/{cases}")
    fig.add("resumed", "failed runs resumed to the right output", f"{resumed_ok}/{failing}",
            equal=f"{failing}/{failing}")
    fig.add("short_ok", "runs with a short write that completed correctly", f"{continued_ok}/{continued}",
            equal=f"{continued}/{continued}")
    return fig


# -- 7. many executions --------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _clone(records: list[dict[str, Any]], execution_id: str, created: str, keep: int) -> bytes:
    seed = seed_for(execution_id)
    out = []
    for record in records[:keep]:
        record = {k: v for k, v in record.items() if k != "crc"}
        if record["kind"] == "header":
            record["execution_id"] = execution_id
            record["created"] = created
        out.append(encode_line(record, seed))
    return b"".join(out)


def run_many(size: Size, seed: int, workdir: str) -> Figures:
    """A store of `size.executions` executions of 20 tasks; some real runs, the rest copies of them."""
    fig = Figures("many")
    rng = random.Random(seed)
    home = os.path.join(workdir, "store")
    store = FileStore(home)
    real = 50
    fds_before = _open_fds()
    started = time.perf_counter()
    templates = [twenty.run(i, store=home, durability="os") for i in range(real)]
    real_seconds = time.perf_counter() - started
    fds_after_runs = _open_fds()
    journals = [store.read(ctx.execution_id).records for ctx in templates]
    interrupted = 0
    started = time.perf_counter()
    for i in range(size.executions - real):
        records = journals[i % real]
        execution_id = f"{i:08d}-{rng.getrandbits(64):016x}"
        keep = len(records)
        if rng.random() < 0.1:  # the process died after some task finished
            interrupted += 1
            keep = rng.randrange(3, len(records) - 1)
            while records[keep - 1]["kind"] != "task_completed":
                keep -= 1
        created = f"2026-01-01T00:00:{i % 60:02d}.{i:06d}+00:00"
        fd = os.open(os.path.join(store.dir, execution_id + ".jsonl"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _clone(records, execution_id, created, keep))
        finally:
            os.close(fd)
    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    listing = list_executions(home).items
    list_seconds = time.perf_counter() - started
    statuses = Counter(s.status for s in listing)
    started = time.perf_counter()
    command = _flux(["list", "--home", home], {})
    command_seconds = time.perf_counter() - started
    victims = [s.execution_id for s in listing if s.status == "interrupted"][:2]
    resume_seconds = []
    for execution_id in victims:
        started = time.perf_counter()
        ctx = resume_execution(execution_id, store=home, durability="os")
        resume_seconds.append(time.perf_counter() - started)
        if ctx.status != "completed":
            fig.note(f"{execution_id}: resumed to {ctx.status}")
    started = time.perf_counter()
    recovered = recover_store(home, durability="os")
    recover_seconds = time.perf_counter() - started
    outcomes = Counter(r.status for r in recovered)
    wrong = 0
    for r in recovered:
        if r.status != "completed" or r.context is None:
            wrong += 1
            fig.note(f"{r.execution_id}: recover gave {r.status} {r.error}")
        elif r.context.output != sum(((r.context.input + i) * 7919 + 13) % 1009 for i in range(20)):
            wrong += 1
            fig.note(f"{r.execution_id}: recover gave the output {r.context.output!r}")
    fds_end = _open_fds()
    left = Counter(s.status for s in list_executions(home).items)
    fig.add("executions", "executions of 20 tasks in one store", len(listing), at_least=size.executions)
    fig.add("real", f"  real runs / copies of them (interrupted: {interrupted})", f"{real} / {size.executions - real}")
    fig.add("run_ms", "  a real run of 20 tasks (os durability), mean ms", round(real_seconds / real * 1e3, 2))
    fig.add("list_s", "list_executions (s)", round(list_seconds, 2))
    fig.add("flux_list_s", "`flux list` command, start to end (s)", round(command_seconds, 2))
    fig.add("flux_list_ok", "  exit status", command.returncode, equal=0)
    fig.add("resume_ms", "resume one interrupted execution, first / second (ms)",
            " / ".join(f"{s * 1e3:.1f}" for s in resume_seconds))
    fig.add("recovered", "flux recover: executions resumed", outcomes["completed"], equal=interrupted - len(victims))
    fig.add("recover_s", "  in (s)", round(recover_seconds, 2))
    fig.add("recover_wrong", "  not completed", wrong, equal=0)
    fig.add("left_interrupted", "interrupted executions left", left["interrupted"], equal=0)
    fig.add("fd_leak", "file descriptors leaked (after runs / list / resume / recover)",
            f"{fds_after_runs - fds_before} / {fds_end - fds_before}", equal="0 / 0")
    fig.values["statuses"] = dict(statuses)
    fig.values["build_seconds"] = build_seconds
    return fig
