"""Battery scenario 1, the kill loop: SIGKILL a running workflow again and again, at every place
where the file store writes, resume it each time, and check that nothing acknowledged is ever
lost, duplicated or replayed differently.

The workload is `varied` (benchmarks/battery_child.py): retries, a durable timer, output
storage, the task cache, a sub-workflow with its own journal, a pause, and a saga. Every fourth
execution is cancelled at its pause instead of answered, so that kills also land while a
cancellation unwinds the saga. A process is killed at the n-th time it reaches one point of
engine/faults.py (journal syncs up to the 24th, the middle of a write, journal creation, the
torn-tail repair, blob, cache, snapshot and lock writes), at a random moment, or, for the
process that asks for a cancellation, before its request is written.

A result is *acknowledged* once the sync that wrote its `task_completed` returned; the fault hooks
log the journal size after every such sync, so after each kill the battery knows which bytes of
each journal (the workflow's and its sub-workflow's) were acknowledged and checks that they are
still there, unchanged.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from typing import Any

import orjson

from benchmarks.battery_child import ANSWER, expected_varied, varied
from benchmarks.battery_kit import Figures, ForkServer, Size, read_sync_log
from flux._engine.errors import FluxError, JournalCorruptError, NondeterminismError
from flux._engine.journal import JournalRead, check_journal, read_journal

__all__ = ["MODES", "run_kill"]

SYNC_POINTS = ("before_write", "after_write", "after_fsync")
CREATE_POINTS = ("create_write", "create_fsync", "create_link", "create_dirsync")
TORN_POINTS = ("torn_write", "torn_truncate")
BLOB_POINTS = ("blob_write", "blob_fsync", "blob_rename")
CACHE_POINTS = ("cache_write", "cache_fsync", "cache_rename")
SNAPSHOT_POINTS = ("snapshot_write", "snapshot_rename")
# Where a process is killed: a point of engine/faults.py, "mid_write" (half of a sync's bytes
# written, then killed: a torn tail), "random" (a SIGKILL at a random moment) or "cancel_write"
# (the process asking for a cancellation, killed before its request is written).
MODES = (
    SYNC_POINTS + ("mid_write", "random") + CREATE_POINTS + TORN_POINTS + BLOB_POINTS + CACHE_POINTS
    + SNAPSHOT_POINTS + ("lock_write", "cancel_write")
)
_WEIGHT = {**dict.fromkeys(SYNC_POINTS, 4), "mid_write": 2, "random": 3}
MAX_SYNC = 24  # a process is killed at one of its first 24 syncs: two thirds of them past the eighth
INPUTS = (10, 20, 30)
CANCEL_EVERY = 4
_FINAL = ("completed", "failed", "cancelled")


def _completed_calls(journals: dict[str, JournalRead]) -> Counter[bytes]:
    """(name, arguments, value) of every completed task call in these journals: what a run did,
    whatever its execution ids, attempts and cache hits."""
    out: Counter[bytes] = Counter()
    for read in journals.values():
        started = {}
        for record in read.records:
            if record["kind"] == "task_started":
                started[record["call_id"]] = record
            elif record["kind"] == "task_completed":
                start = started[record["call_id"]]
                out[orjson.dumps([start["name"], start.get("args"), start.get("kwargs"), record["value"]])] += 1
    return out


class _Execution:
    """One execution killed until it finishes, and everything checked about it on the way."""

    def __init__(self, folder: str, n: int, cancel: bool) -> None:
        self.home = os.path.join(folder, "store")
        self.dir = os.path.join(self.home, "executions")
        self.side_log = os.path.join(folder, "side.log")
        self.sync_log = os.path.join(folder, "sync.log")
        self.n = n
        self.cancel = cancel
        self.journals: dict[str, JournalRead] = {}
        self.root = ""  # the execution id of the workflow (its sub-workflow's journal has a parent)
        self.acked: dict[str, bytes] = {}  # per journal, the bytes acknowledged so far: must stay its prefix
        self.seen: dict[tuple[str, str], Any] = {}  # (execution_id, call_id) -> value of an acknowledged result
        self.acked_calls: set[tuple[str, str]] = set()
        self.acked_at_fork: dict[int, frozenset[tuple[str, str]]] = {}
        self.lost: set[tuple[str, str]] = set()
        self.changed = 0
        self.unreadable = 0
        self.duplicates = 0
        self.early: set[tuple[str, str, int]] = set()  # bodies seen running with no task_started written

    def side_entries(self) -> list[tuple[str, str, int]]:
        """(execution_id, call_id, pid) of each task body that started."""
        try:
            with open(self.side_log, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines():
            key, pid = line.split()
            eid, _, call_id = key.decode().partition(":")
            out.append((eid, call_id, int(pid)))
        return out

    def check(self, fig: Figures) -> None:
        """Everything that must hold after a kill (and after the end), for every journal."""
        ends: dict[str, int] = {}
        for eid, end, _ in read_sync_log(self.sync_log):
            ends[eid] = end
        self.journals = {}
        names = sorted(os.listdir(self.dir)) if os.path.isdir(self.dir) else []
        for name in names:
            if not name.endswith(".jsonl"):
                continue
            eid, path = name[:-6], os.path.join(self.dir, name)
            with open(path, "rb") as fh:
                data = fh.read()
            try:
                read = check_journal(data, path, eid)
            except JournalCorruptError as err:
                self.unreadable += 1  # a journal with half a header is one of these
                fig.note(f"unreadable after a kill: {err}")
                continue
            self.journals[eid] = read
            if "parent" not in read.records[0]:
                self.root = eid
            acked_end = ends.get(eid, 0)
            if not data.startswith(self.acked.get(eid, b"")) or len(data) < acked_end:
                self.changed += 1
                fig.note(f"{path}: acknowledged bytes changed or lost")
            self.acked[eid] = data[:acked_end]
            self._check_records(eid, read, acked_end)
        for eid, acked in self.acked.items():
            if acked and eid not in self.journals:
                self.changed += 1
                fig.note(f"{eid}: a journal with acknowledged records is gone")
        started = {(eid, r["call_id"]) for eid, read in self.journals.items() for r in read.records
                   if r["kind"] == "task_started"}
        # A body that ran while its task_started was not yet written: a later resume writes the
        # record, so each check keeps what it saw.
        self.early.update(entry for entry in self.side_entries() if entry[:2] not in started)

    def _check_records(self, eid: str, read: JournalRead, acked_end: int) -> None:
        counts: Counter[tuple[str, str]] = Counter()
        completed: dict[tuple[str, str], Any] = {}
        for record, offset in zip(read.records, read.offsets, strict=True):
            kind = record["kind"]
            if kind in ("task_started", "task_completed", "task_failed"):
                counts[("started" if kind == "task_started" else "ended", record["call_id"])] += 1
            if kind == "task_completed":
                key = (eid, record["call_id"])
                completed[key] = record["value"]
                if offset < acked_end:
                    self.acked_calls.add(key)
            elif kind in ("workflow_completed", "workflow_failed", "workflow_cancelled"):
                counts[("final", "")] += 1
        self.duplicates = max(self.duplicates, sum(c - 1 for c in counts.values() if c > 1))
        for key, value in self.seen.items():
            if key[0] == eid and key in self.acked_calls and completed.get(key, ...) != value:
                self.lost.add(key)
        self.seen.update(completed)

    def reruns_after_ack(self) -> int:
        """Bodies that ran in a process started after their result was acknowledged."""
        return sum(1 for eid, call_id, pid in self.side_entries()
                   if (eid, call_id) in self.acked_at_fork.get(pid, frozenset()))

    def state(self) -> dict[str, Any]:
        """What the next process can still reach: which files exist, whether a torn tail waits."""
        root = self.journals.get(self.root)
        records = root.records if root is not None else []
        kinds = {r["kind"] for r in records}
        status = next((k[9:] for k in ("workflow_completed", "workflow_failed", "workflow_cancelled") if k in kinds),
                      "open")
        return {
            "root": root is not None,
            "child": len(self.journals) > 1,
            "torn": any(read.torn for read in self.journals.values()),
            "blobs": len(_names(os.path.join(self.home, "blobs"))),
            "cached": len(_names(os.path.join(self.home, "cache"))),
            "gate": "workflow_paused" in kinds,
            "answered": any("call_id" in r for r in records if r["kind"] == "workflow_resumed"),
            "status": status,
            "paused": bool(records) and records[-1]["kind"] == "workflow_paused",
        }

    def leftovers(self) -> int:
        """Temporary files a killed process left in the store (harmless: never read)."""
        return sum(1 for folder in ("executions", "blobs", "cache")
                   for name in _names(os.path.join(self.home, folder)) if ".new" in name or ".tmp-" in name)


def _names(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _plausible(mode: str, state: dict[str, Any], ex: _Execution) -> bool:
    """Whether the next process can reach `mode` at all, given what is already written."""
    if mode in CREATE_POINTS:
        return not (state["root"] and state["child"])
    if mode in TORN_POINTS:
        return bool(state["torn"])
    if mode in BLOB_POINTS:
        return int(state["blobs"]) < 2
    if mode in CACHE_POINTS:
        return int(state["cached"]) < 1
    if mode in SNAPSHOT_POINTS:
        return not state["gate"]
    if mode == "cancel_write":
        return bool(state["root"]) and not ex.cancel
    return True


def _action(ex: _Execution, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {"home": ex.home, "side_log": ex.side_log, "workflow": "varied"}
    if not state["root"]:
        return "run", {**args, "input": ex.n}
    args["execution_id"] = ex.root
    if ex.cancel and state["gate"]:
        return "cancel", args  # paused at the gate, or killed while the cancellation unwound
    if state["paused"] and not state["answered"]:
        return "resume", {**args, "answer": ANSWER}
    return "resume", args


def _reference(server: ForkServer, workdir: str, n: int, cancel: bool) -> tuple[Counter[bytes], str]:
    """The completed calls and final status of an uninterrupted execution."""
    folder = os.path.join(workdir, f"reference-{n}-{int(cancel)}")
    os.makedirs(folder)
    ex = _Execution(folder, n, cancel)
    while True:
        ex.check(Figures("reference"))
        state = ex.state()
        if state["status"] != "open" and state["root"]:
            return _completed_calls(ex.journals), str(state["status"])
        action, args = _action(ex, state)
        result = os.path.join(workdir, "reference.json")
        status = server.wait(server.fork(action, {**args, "result": result}))
        if status.get("code") != 0:
            with open(result, "rb") as fh:
                raise AssertionError(f"an uninterrupted run of the kill loop's workload failed: {fh.read()!r}")


def _replays_the_same(ex: _Execution) -> bool:
    read = read_journal(os.path.join(ex.dir, ex.root + ".jsonl"), ex.root)
    _, outcome, _ = asyncio.run(varied.replay_async(read, ex.root, store=ex.home))
    if ex.cancel:
        return outcome.status == "cancelled"
    return outcome.status == "completed" and outcome.output == expected_varied(ex.n)


def run_kill(size: Size, seed: int, workdir: str) -> Figures:
    """Kills `size.kills` times; returns the figures of scenario 1."""
    fig = Figures("kill")
    rng = random.Random(seed)
    kills: Counter[str] = Counter()
    past_eighth = executions = finished_equal = divergences = errors = hangs = 0
    lost = changed = unreadable = duplicates = reruns = early = leftovers = 0
    unasked = unasked_ok = 0
    with ForkServer() as server:
        references = {(n, c): _reference(server, workdir, n, c) for n in INPUTS for c in (False, True)}
        started = time.perf_counter()
        _reference(server, os.path.join(workdir, "timing"), INPUTS[0], False)
        run_seconds = time.perf_counter() - started
        while sum(kills.values()) < size.kills or (executions < 200 and any(kills[m] == 0 for m in MODES)):
            executions += 1
            folder = os.path.join(workdir, f"e{executions}")
            os.makedirs(folder)
            ex = _Execution(folder, rng.choice(INPUTS), cancel=executions % CANCEL_EVERY == 0)
            ex.check(fig)
            while True:
                state = ex.state()
                if state["status"] != "open":
                    break
                enough = sum(kills.values()) >= size.kills and all(kills[m] for m in MODES)
                candidates = [m for m in MODES if _plausible(m, state, ex)]
                least = min(kills[m] / _WEIGHT.get(m, 1) for m in candidates)
                mode = "none" if enough else rng.choice(
                    [m for m in candidates if kills[m] / _WEIGHT.get(m, 1) == least]
                )
                n = rng.randint(1, MAX_SYNC)
                rule = {
                    "mid_write": f"short:{n}:write,kill:{n + 1}:write",
                    "lock_write": f"kill:{rng.randint(1, 2)}:lock_write",
                    "none": "none", "random": "none", "cancel_write": "none",
                }.get(mode, f"kill:{n if mode in SYNC_POINTS else 1}:{mode}")
                action, args = _action(ex, state)
                result = os.path.join(folder, "result.json")
                pid = server.fork(action, {**args, "result": result}, faults=rule, sync_log=ex.sync_log)
                ex.acked_at_fork[pid] = frozenset(ex.acked_calls)
                if mode == "cancel_write":
                    asker = server.fork("request_cancel", args, faults="kill:1:cancel_write")
                    asked = server.wait(asker)
                    if asked.get("signal") == signal.SIGKILL:
                        kills[mode] += 1
                        unasked += 1
                elif mode == "random":
                    time.sleep(rng.uniform(0, run_seconds))
                    os.kill(pid, signal.SIGKILL)  # a child that already ended is a zombie until waited for
                status = server.wait(pid, timeout=120)
                if not status["exited"]:
                    hangs += 1
                    os.kill(pid, signal.SIGKILL)
                    server.wait(pid)
                    break
                ex.check(fig)
                if status["signal"] == signal.SIGKILL:
                    if mode != "cancel_write":
                        kills[mode] += 1
                        past_eighth += mode in SYNC_POINTS and n > 8
                    else:
                        fig.note(f"{ex.root}: killed while a cancellation was asked for and never written")
                    continue
                with open(result, "rb") as fh:
                    outcome = orjson.loads(fh.read())
                if mode == "cancel_write":
                    # The request was never written: the run went on as if nobody had asked.
                    gone = not os.path.exists(os.path.join(ex.dir, ex.root + ".cancel"))
                    unasked_ok += status["code"] == 0 and outcome["status"] != "cancelled" and gone
                if status["code"] == 4:
                    divergences += 1
                    fig.note(outcome["message"])
                    break
                if status["code"] != 0:
                    errors += 1
                    fig.note(f"{ex.root}: {outcome.get('error')}: {outcome.get('message')}")
                    break
            state = ex.state()
            expected_calls, expected_status = references[(ex.n, ex.cancel)]
            if state["status"] == expected_status and _completed_calls(ex.journals) == expected_calls:
                try:
                    finished_equal += _replays_the_same(ex)
                except NondeterminismError as err:
                    divergences += 1
                    fig.note(f"replay diverged: {err}")
                except FluxError as err:
                    errors += 1
                    fig.note(f"replay failed: {err}")
            else:
                fig.note(f"{ex.root}: ended {state['status']}, not {expected_status}, or with other calls")
            lost += len(ex.lost)
            changed += ex.changed
            unreadable += ex.unreadable
            duplicates += ex.duplicates
            reruns += ex.reruns_after_ack()
            early += len(ex.early)
            leftovers += ex.leftovers()
    total = sum(kills.values())
    cancelled = executions // CANCEL_EVERY

    def by(points: tuple[str, ...]) -> str:
        return " / ".join(str(kills[p]) for p in points)

    fig.add("kills", "SIGKILLs (each followed by a resume)", total, at_least=size.kills)
    fig.add("kills_by_mode", "  syncs: before write / after write / after fsync", by(SYNC_POINTS))
    fig.add("past_eighth", "  of those, past the 8th sync of the process", past_eighth)
    fig.add("kills_torn", "  in the middle of a write / cutting its torn tail (.torn written / truncation)",
            by(("mid_write",) + TORN_POINTS))
    fig.add("kills_create", "  creating a journal (header / fsync / link / directory fsync)", by(CREATE_POINTS))
    fig.add("kills_files", "  blob (write / fsync / rename) // cache (same) // snapshot (write / rename)",
            f"{by(BLOB_POINTS)} // {by(CACHE_POINTS)} // {by(SNAPSHOT_POINTS)}")
    fig.add("kills_other", "  lock file / cancel request / random moment", by(("lock_write", "cancel_write", "random")))
    fig.add("points_missed", "kill points never reached", sum(1 for m in MODES if kills[m] == 0), equal=0)
    fig.add("executions", "executions killed until they finished (cancelled at their pause)",
            f"{executions} ({cancelled})")
    fig.add("acked_lost", "acknowledged results lost or changed", lost, equal=0)
    fig.add("acked_bytes_changed", "acknowledged journal bytes changed", changed, equal=0)
    fig.add("duplicates", "duplicate records", duplicates, equal=0)
    fig.add("divergences", "replay divergences", divergences, equal=0)
    fig.add("reruns_after_ack", "acknowledged tasks run again", reruns, equal=0)
    fig.add("early_bodies", "bodies started before their task_started was written", early, equal=0)
    fig.add("unreadable", "journals unreadable after a kill (half a header included)", unreadable, equal=0)
    fig.add("errors", "other errors, hangs", errors + hangs, equal=0)
    fig.add("equal_output", "final status, output, completed calls and replay equal to an uninterrupted run",
            f"{finished_equal}/{executions}", equal=f"{executions}/{executions}")
    fig.add("unasked", "cancel requests killed before written: the run went on unasked", f"{unasked_ok}/{unasked}",
            equal=f"{unasked}/{unasked}")
    fig.add("leftovers", "temporary files left by killed processes (never read)", leftovers)
    return fig
