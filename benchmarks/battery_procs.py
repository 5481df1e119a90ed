"""Battery scenarios 5 to 7, about processes: racing resumers, disk faults, a store of many executions."""

from __future__ import annotations

import errno
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
from benchmarks.battery_kit import (
    ROOT,
    Figures,
    ForkServer,
    Size,
    journal_of,
    read_side_log,
    read_sync_log,
    run_cli,
)
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


def _release(barrier: str, k: int) -> int | None:
    """Lets the k racers waiting at `barrier` go at once, when all are ready (see battery_child);
    the descriptor to close once the round is over."""
    ready = barrier + ".ready"
    _wait_for(lambda: os.path.exists(ready) and os.path.getsize(ready) >= k, timeout=20)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            return os.open(barrier, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:  # ENXIO: no reader has opened it yet
            if err.errno != errno.ENXIO:
                raise
            time.sleep(0.0002)
    return None


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
            barrier = os.path.join(workdir, f"barrier{rnd}")
            os.mkfifo(barrier, 0o600)
            args = {"home": home, "workflow": "held", "execution_id": eid, "side_log": side_log}
            pids = [server.fork("race", {**args, "barrier": barrier}) for _ in range(k)]
            release = _release(barrier, k)
            ended = server.wait_some(pids, k - 1, timeout=5)
            if release is not None:
                os.close(release)
            os.unlink(barrier)
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
                late = server.fork("race", args)
                stopped_held += _exit_code(server, late) == 3
                os.kill(owner, signal.SIGCONT)
            if owner is not None and rnd % 10 == 5:
                # `rm *.lock` while the owner runs: the journal's own flock still keeps others out.
                os.unlink(os.path.join(home, "executions", eid + ".lock"))
                unlinked_checks += 1
                late = server.fork("race", args)
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

# Journal writes of a `many` run, at a random sync: (label, rule, error that stops the run).
JOURNAL_FAULTS = (
    ("journal: fsync fails (EIO)", "fail:{n}:after_write:EIO", "DurabilityError"),
    ("journal: disk full (ENOSPC)", "fail:{n}:write:ENOSPC", "DurabilityError"),
    ("journal: short write, then disk full", "short:{n}:write,fail:{m}:write:ENOSPC", "DurabilityError"),
    ("journal: short write, then the rest", "short:{n}:write", ""),
)
# The other writes of the store, in a `varied` run (output storage, cache, a sub-workflow, a
# pause): (label, rule, error that stops the run, or "" when the run goes on). The torn-file
# faults come after a run that left a torn tail, in the resume that cuts it.
FILE_FAULTS = (
    ("header: disk full", "fail:{k}:create_write:ENOSPC", "DurabilityError"),
    ("header: short write", "short:{k}:create_write", "DurabilityError"),
    ("header: fsync fails", "fail:{k}:create_fsync:EIO", "DurabilityError"),
    ("header: link fails", "fail:{k}:create_link:EIO", "DurabilityError"),
    ("lock file: disk full", "fail:{k}:lock_write:ENOSPC", "StoreError"),
    ("stored output: disk full", "fail:{k}:blob_write:ENOSPC", "DurabilityError"),
    ("stored output: short write, then disk full", "short:{k}:blob_write,fail:{k1}:blob_write:ENOSPC",
     "DurabilityError"),
    ("stored output: fsync fails", "fail:{k}:blob_fsync:EIO", "DurabilityError"),
    ("stored output: rename fails", "fail:{k}:blob_rename:EIO", "DurabilityError"),
    ("cache entry: disk full", "fail:{k}:cache_write:ENOSPC", ""),
    ("cache entry: fsync fails", "fail:{k}:cache_fsync:EIO", ""),
    ("cache entry: rename fails", "fail:{k}:cache_rename:EIO", ""),
    ("snapshot: disk full", "fail:{k}:snapshot_write:ENOSPC", ""),
    ("torn file: disk full", "fail:1:torn_write:ENOSPC", "StoreError"),
    ("torn file: short write, then disk full", "short:1:torn_write,fail:2:torn_write:ENOSPC", "StoreError"),
    ("torn file: truncation fails", "fail:1:torn_truncate:EIO", "StoreError"),
)
_TEMPORARY = (".new-", ".tmp-", ".index.new")


def _flux(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": ROOT, **env}
    return subprocess.run(
        [sys.executable, "-m", "flux", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300
    )


def _temporary_files(home: str) -> list[str]:
    return [name for _, _, names in os.walk(home) for name in names if any(t in name for t in _TEMPORARY)]


def _journals_readable(home: str) -> bool:
    folder = os.path.join(home, "executions")
    try:
        for name in os.listdir(folder):
            if name.endswith(".jsonl"):
                read_journal(os.path.join(folder, name), name[:-6])
    except FileNotFoundError:
        return True
    except FluxError:
        return False
    return True


def _torn_entries_whole(home: str) -> bool:
    """Whether every `.torn` file holds whole entries, `<offset> <bytes>\n` each."""
    folder = os.path.join(home, "executions")
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.endswith(".torn"):
            with open(os.path.join(folder, name), "rb") as fh:
                data = fh.read()
            if data and (not data.endswith(b"\n") or not data.split(b" ", 1)[0].isdigit()):
                return False
    return True


class _Case:
    """One run with a fault, through the real command line (in a forked child), then runs
    without faults until the execution is finished."""

    def __init__(self, server: ForkServer, folder: str) -> None:
        self.server = server
        self.folder = folder
        self.home = os.path.join(folder, "store")
        self.sync_log = os.path.join(folder, "sync.log")
        self.side_log = os.path.join(folder, "side.log")
        os.makedirs(folder)

    def flux(self, *argv: str, faults: str = "none") -> tuple[int | None, str, str]:
        return run_cli(self.server, [*argv, "--store", self.home], self.folder, faults=faults,
                       sync_log=self.sync_log, side_log=self.side_log)

    def finish(self, execution_id: str, argv: list[str], expected: Any) -> bool:
        """Resumes (answering the pause of `varied`) until the execution is finished, or makes
        it again with `argv` if it was never created; whether it ends completed with `expected`."""
        path = os.path.join(self.home, "executions", execution_id + ".jsonl")
        for _ in range(4):
            if not os.path.exists(path):
                code = self.flux(*argv)[0]
            else:
                last = read_journal(path, execution_id).records[-1]
                if last["kind"] == "workflow_completed":
                    return bool(last["value"] == expected)
                answer = ["--input", str(battery_child.ANSWER)] if last["kind"] == "workflow_paused" else []
                code = self.flux("resume", execution_id, *answer)[0]
            if code != 0:
                return False
        return False


def run_disk(size: Size, seed: int, workdir: str) -> Figures:
    """Each journal fault at `size.disk_cases_per_fault` random syncs of a real `flux exec` of
    `many`, and each fault of the other files at their first (and, at the long size, second)
    write in a `flux exec` of `varied`; then `flux resume` once the fault is gone."""
    fig = Figures("disk")
    rng = random.Random(seed)
    n_input = 20  # 20 sequential tasks and 4 lanes of two: about 30 syncs
    reference = os.path.join(workdir, "reference")
    sync_log = reference + ".sync"
    _flux(["exec", battery_child.__file__, "many", "--input", str(n_input), "--home", reference],
          {"FLUX_TEST_FAULTS": "none", "FLUX_TEST_SYNC_LOG": sync_log})
    writes = len(list(read_sync_log(sync_log)))  # one write per sync when no write is short
    if writes < 10:
        raise AssertionError(f"the reference run of the disk-fault scenario made only {writes} syncs")
    runs = stopped = clear = readable = early = resumed_ok = failing = 0
    went_on = went_on_ok = left = unwhole = 0
    by_error: Counter[str] = Counter()
    cases: list[tuple[str, str, str, str]] = []
    for label, template, error in JOURNAL_FAULTS:
        for _ in range(size.disk_cases_per_fault):
            n = rng.randint(1, writes)
            cases.append((label, template.format(n=n, m=n + 1), error, "many"))
    for label, template, error in FILE_FAULTS:
        for k in (1, 2)[: 1 if size.disk_cases_per_fault < 5 else 2]:
            cases.append((label, template.format(k=k, k1=k + 1), error, "varied"))
    with ForkServer() as server:
        for number, (label, rule, error, workflow) in enumerate(cases):
            runs += 1
            case = _Case(server, os.path.join(workdir, f"case{number}"))
            eid = f"disk{number}"
            expected: Any = encode(expected_output(n_input) if workflow == "many" else battery_child.expected_varied(4))
            argv = ["exec", battery_child.__file__, workflow, "--input", str(n_input if workflow == "many" else 4),
                    "--id", eid]
            if label.startswith("torn file"):
                # A run that leaves half a sync on disk (a torn tail); the fault is in the resume
                # that cuts it.
                case.flux(*argv, faults="short:6:write,fail:7:write:ENOSPC")
                code, out, err = case.flux("resume", eid, faults=rule)
            else:
                code, out, err = case.flux(*argv, faults=rule)
            lines = err.strip().splitlines()
            readable += _journals_readable(case.home)
            temporary = _temporary_files(case.home)
            left += len(temporary)
            unwhole += not _torn_entries_whole(case.home)
            if temporary:
                fig.note(f"{label} ({rule}): left {temporary}")
            if not error:
                went_on += 1
                ok = code == 0 and "Traceback" not in err and not any(x.split(":")[0].endswith("Error") for x in lines)
                went_on_ok += ok and case.finish(eid, argv, expected)
                if not ok:
                    fig.note(f"{label} ({rule}): exit {code}: {err.strip()[:300]!r}")
                continue
            failing += 1
            by_error[error] += 1
            stopped += code == 2 and "status: completed" not in out
            one_line = len(lines) == 1 and lines[0].startswith(f"{error}: ") and "Traceback" not in err
            clear += one_line
            if not one_line or code != 2:
                fig.note(f"{label} ({rule}): exit {code}, stderr {err.strip()[:300]!r}")
            if workflow == "many":
                ends = [end for e, end, _ in read_sync_log(case.sync_log) if e == eid]
                acked_end = ends[-1] if ends else 0
                path = os.path.join(case.home, "executions", eid + ".jsonl")
                read = read_journal(path, eid) if os.path.exists(path) else None
                durable = set() if read is None else {
                    r["call_id"] for r, off in zip(read.records, read.offsets, strict=True)
                    if r["kind"] == "task_started" and off < acked_end
                }
                early += len([c for c, _ in read_side_log(case.side_log) if c not in durable])
            good = case.finish(eid, argv, expected)
            resumed_ok += good
            if not good:
                fig.note(f"{label} ({rule}): not resumed to the right output once the fault was gone")
    fig.add("runs", "flux exec runs with an injected fault", runs)
    journal_runs = len(JOURNAL_FAULTS) * size.disk_cases_per_fault
    fig.add("kinds", "  journal writes / header, lock, stored output, cache, snapshot and .torn writes",
            f"{journal_runs} / {runs - journal_runs}")
    fig.add("stopped", "failing writes that stopped the run with exit 2", f"{stopped}/{failing}",
            equal=f"{failing}/{failing}")
    fig.add("clear", "  with one line 'DurabilityError: ...' / 'StoreError: ...'", f"{clear}/{failing}",
            equal=f"{failing}/{failing}")
    fig.add("clear_kinds", "  DurabilityError / StoreError",
            f"{by_error['DurabilityError']} / {by_error['StoreError']}")
    fig.add("early", "task bodies started past a failed journal write or fsync", early, equal=0)
    fig.add("readable", "journals readable afterwards", f"{readable}/{runs}", equal=f"{runs}/{runs}")
    fig.add("temporary", "temporary files left behind", left, equal=0)
    fig.add("torn_whole", ".torn files holding half an entry", unwhole, equal=0)
    fig.add("resumed", "failed runs resumed (or made again) to the right output", f"{resumed_ok}/{failing}",
            equal=f"{failing}/{failing}")
    fig.add("short_ok", "runs that went on (short write then the rest, cache, snapshot) to the right output",
            f"{went_on_ok}/{went_on}", equal=f"{went_on}/{went_on}")
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
