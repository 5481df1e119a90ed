"""Battery scenario 1, the kill loop: SIGKILL a running workflow again and again, resume it each
time, and check that nothing acknowledged is ever lost, duplicated or replayed differently.

A result is *acknowledged* once the sync that wrote its `task_completed` returned; the fault hooks
log the journal size after every such sync (engine/faults.py), so after each kill the battery
knows which bytes were acknowledged and checks that they are still there, unchanged.
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

from benchmarks.battery_child import expected_output, many
from benchmarks.battery_kit import Figures, ForkServer, Size, journal_of, read_side_log, read_sync_log
from flux._engine.errors import FluxError, JournalCorruptError, NondeterminismError
from flux._engine.journal import check_journal, read_journal

__all__ = ["run_kill"]

# Kill modes, taken in turn: at the n-th time a sync reaches a boundary, or at a random moment.
MODES = ("before_write", "after_write", "after_fsync", "random")
MAX_N = 8  # a process is killed at one of its first MAX_N syncs, so an execution dies many times


class _Execution:
    """One execution killed until it finishes, and everything checked about it on the way."""

    def __init__(self, folder: str, n: int) -> None:
        self.home = os.path.join(folder, "store")
        self.side_log = os.path.join(folder, "side.log")
        self.sync_log = os.path.join(folder, "sync.log")
        self.n = n
        self.path = ""
        self.execution_id = ""
        self.acked = b""  # the bytes acknowledged so far: must stay the journal's prefix
        self.seen: dict[str, Any] = {}  # call_id -> value of every task_completed seen
        self.acked_calls: set[str] = set()
        self.acked_at_fork: dict[int, frozenset[str]] = {}
        self.lost: set[str] = set()
        self.changed_prefix = 0
        self.unreadable = 0
        self.duplicates = 0
        self.early: set[tuple[str, int]] = set()  # (call_id, pid) of bodies seen running unrecorded
        self.records: list[dict[str, Any]] = []

    def locate(self) -> bool:
        found = journal_of(self.home)
        if found is not None:
            self.path, self.execution_id = found
        return found is not None

    def check(self, fig: Figures) -> None:
        """Everything that must hold after a kill (and after the end)."""
        if not self.locate():
            return
        with open(self.path, "rb") as fh:
            data = fh.read()
        try:
            read = check_journal(data, self.path, self.execution_id)
        except JournalCorruptError as err:
            self.unreadable += 1
            fig.note(f"unreadable after a kill: {err}")
            return
        self.records = read.records
        ends = [end for eid, end, _ in read_sync_log(self.sync_log) if eid == self.execution_id]
        acked_end = ends[-1] if ends else 0
        if not data.startswith(self.acked) or len(data) < acked_end:
            self.changed_prefix += 1
            fig.note(f"{self.path}: acknowledged bytes changed or lost")
        self.acked = data[:acked_end]
        completed: dict[str, Any] = {}
        counts: Counter[tuple[str, str]] = Counter()
        started: set[str] = set()
        for record, offset in zip(read.records, read.offsets, strict=True):
            kind = record["kind"]
            if kind.startswith("task_"):
                counts[(kind[5:] if kind == "task_started" else "ended", record["call_id"])] += 1
            if kind == "task_started":
                started.add(record["call_id"])
            elif kind == "task_completed":
                completed[record["call_id"]] = record["value"]
                if offset < acked_end:
                    self.acked_calls.add(record["call_id"])
            elif kind in ("workflow_completed", "workflow_failed"):
                counts[("final", "")] += 1
        self.duplicates = sum(c - 1 for c in counts.values() if c > 1)
        for call_id, value in self.seen.items():
            if completed.get(call_id, ...) != value and call_id in self.acked_calls:
                self.lost.add(call_id)
        self.seen.update(completed)
        # A body that ran while its task_started was not yet written: a later resume writes the
        # record, so each check keeps what it saw.
        self.early.update(entry for entry in read_side_log(self.side_log) if entry[0] not in started)

    def reruns_after_ack(self) -> int:
        """Bodies that ran in a process started after their result was acknowledged."""
        return sum(
            1 for call_id, pid in read_side_log(self.side_log) if call_id in self.acked_at_fork.get(pid, frozenset())
        )


def _replays_the_same(execution: _Execution) -> bool:
    read = read_journal(execution.path, execution.execution_id)
    store = os.path.dirname(os.path.dirname(execution.path))
    _, outcome, _ = asyncio.run(many.replay_async(read, execution.execution_id, store=store))
    return outcome.status == "completed" and outcome.output == expected_output(execution.n)


def run_kill(size: Size, seed: int, workdir: str) -> Figures:
    """Kills `size.kills` times; returns the figures of scenario 1."""
    fig = Figures("kill")
    rng = random.Random(seed)
    kills: Counter[str] = Counter()
    executions = finished_equal = divergences = errors = hangs = 0
    lost = changed = unreadable = duplicates = reruns = early = 0
    with ForkServer() as server:
        reference = os.path.join(workdir, "reference")
        pid = server.fork("run", {"home": reference, "input": 30, "result": reference + ".json"})
        server.wait(pid)
        with open(reference + ".json", "rb") as fh:
            first = orjson.loads(fh.read())
        if first.get("output") != expected_output(30):
            raise AssertionError(f"the uninterrupted reference run went wrong: {first}")
        run_seconds = first["seconds"]
        while sum(kills.values()) < size.kills:
            executions += 1
            folder = os.path.join(workdir, f"e{executions}")
            os.makedirs(folder)
            ex = _Execution(folder, rng.choice((20, 30, 40)))
            while True:
                mode = MODES[sum(kills.values()) % len(MODES)] if sum(kills.values()) < size.kills else "none"
                rule = f"kill:{rng.randint(1, MAX_N)}:{mode}" if mode in MODES[:3] else "none"
                result = os.path.join(folder, "result.json")
                args: dict[str, Any] = {"home": ex.home, "side_log": ex.side_log, "result": result}
                if ex.locate():
                    action = "resume"
                    args["execution_id"] = ex.execution_id
                else:
                    action = "run"
                    args["input"] = ex.n
                pid = server.fork(action, args, faults=rule, sync_log=ex.sync_log)
                ex.acked_at_fork[pid] = frozenset(ex.acked_calls)
                if mode == "random":
                    # Within what is left of the run, so that the kill usually lands before its end.
                    left = 1 - len(ex.seen) / (ex.n + 2 * max(2, ex.n // 5))
                    time.sleep(rng.uniform(0, run_seconds * ex.n / 30 * max(left, 0.05)))
                    os.kill(pid, signal.SIGKILL)  # a child that already ended is a zombie until waited for
                status = server.wait(pid, timeout=120)
                if not status["exited"]:
                    hangs += 1
                    os.kill(pid, signal.SIGKILL)
                    server.wait(pid)
                    break
                ex.check(fig)
                if status["signal"] == signal.SIGKILL:
                    kills[mode] += 1
                    continue
                with open(result, "rb") as fh:
                    outcome = orjson.loads(fh.read())
                if status["code"] == 0:
                    if outcome["status"] == "completed" and outcome["output"] == expected_output(ex.n):
                        try:
                            finished_equal += _replays_the_same(ex)
                        except NondeterminismError as err:
                            divergences += 1
                            fig.note(f"replay diverged: {err}")
                        except FluxError as err:
                            errors += 1
                            fig.note(f"replay failed: {err}")
                    else:
                        fig.note(f"{ex.path}: finished with {outcome}")
                elif status["code"] == 4:
                    divergences += 1
                    fig.note(outcome["message"])
                else:
                    errors += 1
                    fig.note(f"{ex.path}: {outcome.get('error')}: {outcome.get('message')}")
                break
            lost += len(ex.lost)
            changed += ex.changed_prefix
            unreadable += ex.unreadable
            duplicates += ex.duplicates
            reruns += ex.reruns_after_ack()
            early += len(ex.early)
    total = sum(kills.values())
    fig.add("kills", "SIGKILLs (each followed by a resume)", total, at_least=size.kills)
    fig.add("kills_by_mode", "  before write / after write / after fsync / random moment",
            " / ".join(str(kills[m]) for m in MODES))
    fig.add("executions", "executions killed until they finished", executions)
    fig.add("acked_lost", "acknowledged results lost or changed", lost, equal=0)
    fig.add("acked_bytes_changed", "acknowledged journal bytes changed", changed, equal=0)
    fig.add("duplicates", "duplicate records", duplicates, equal=0)
    fig.add("divergences", "replay divergences", divergences, equal=0)
    fig.add("reruns_after_ack", "acknowledged tasks run again", reruns, equal=0)
    fig.add("early_bodies", "bodies started before their task_started was written", early, equal=0)
    fig.add("unreadable", "journals unreadable after a kill", unreadable, equal=0)
    fig.add("errors", "other errors, hangs", errors + hangs, equal=0)
    fig.add("equal_output", "final output (and replay) equal to an uninterrupted run", f"{finished_equal}/{executions}",
            equal=f"{executions}/{executions}")
    return fig
