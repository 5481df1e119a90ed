"""What the fault battery's scenarios share: sizes, figures, the fork server client, journal helpers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

__all__ = [
    "ROOT", "SIZES", "Figures", "ForkServer", "Row", "Size", "journal_of", "make_journals", "read_bytes",
    "read_side_log", "read_sync_log", "reset_journal", "run_cli",
]


@dataclass(frozen=True)
class Size:
    """How much of each scenario one battery run does."""

    name: str
    kills: int
    power_states: int
    lost_entries: int  # journals whose directory entry a power loss took
    truncation_journals: int
    truncation_store_cuts: int  # cuts of each also recovered through the store; 0: every one
    corruption_cases: int  # at least this many
    command_journals: int  # damaged journals run through every command
    race_rounds: int
    disk_cases_per_fault: int
    executions: int


SIZES = {
    "ci": Size("ci", kills=200, power_states=2000, lost_entries=6, truncation_journals=1, truncation_store_cuts=600,
               corruption_cases=20_000, command_journals=150, race_rounds=200, disk_cases_per_fault=2,
               executions=10_000),
    "long": Size("long", kills=20_000, power_states=100_000, lost_entries=200, truncation_journals=5,
                 truncation_store_cuts=0, corruption_cases=200_000, command_journals=3_000, race_rounds=5_000,
                 disk_cases_per_fault=25, executions=10_000),
}


@dataclass
class Row:
    figure: str
    value: Any
    required: str = ""
    ok: bool | None = None


@dataclass
class Figures:
    """One scenario's results: table rows, and the same numbers by key for tests."""

    scenario: str
    rows: list[Row] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(
        self, key: str, figure: str, value: Any, *, equal: Any = None, at_least: Any = None, at_most: Any = None
    ) -> None:
        """Records a figure; `equal`, `at_least` or `at_most` make it a requirement that can fail."""
        self.values[key] = value
        required, ok = "", None
        if equal is not None:
            required, ok = f"= {equal}", value == equal
        elif at_least is not None:
            required, ok = f">= {at_least}", value >= at_least
        elif at_most is not None:
            required, ok = f"<= {at_most}", value <= at_most
        self.rows.append(Row(figure, value, required, ok))

    def note(self, text: str) -> None:
        """A detail worth reading when a requirement fails (first few kept)."""
        if len(self.notes) < 20:
            self.notes.append(text)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.ok is False]


class ForkServer:
    """Client of `battery_child.serve`: a clean process that forks the processes the battery kills."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONPATH": ROOT, "FLUX_TEST_FAULTS": "none", **(env or {})}
        full_env.pop("FLUX_TEST_SYNC_LOG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import benchmarks.battery_child as c; c.serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=full_env,
        )
        self.children: set[int] = set()  # forked and not yet seen to exit

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(orjson.dumps(command) + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit status {self.proc.wait()})")
        return orjson.loads(line)

    def fork(self, action: str, args: dict[str, Any], faults: str = "none", sync_log: str | None = None) -> int:
        pid = self._ask({"op": "fork", "action": action, "args": args, "faults": faults, "sync_log": sync_log})["pid"]
        self.children.add(pid)
        return pid

    def wait(self, pid: int, timeout: float = 60.0) -> dict[str, Any]:
        status = self._ask({"op": "wait", "pid": pid, "timeout": timeout})
        if status["exited"]:
            self.children.discard(pid)
        return status

    def wait_some(self, pids: list[int], count: int, timeout: float = 60.0) -> dict[int, dict[str, Any]]:
        """The statuses of the children of `pids` that exited, once `count` of them did (or after
        `timeout`), by pid."""
        ended = {int(pid): status for pid, status in self._ask(
            {"op": "wait_some", "pids": pids, "count": count, "timeout": timeout}
        )["ended"].items()}
        self.children.difference_update(ended)
        return ended

    def close(self) -> None:
        """Kills every child still running (a scenario that failed half-way leaves some), then stops."""
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
                self.wait(pid, timeout=10)
            except (ProcessLookupError, RuntimeError):
                pass
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_cli(
    server: ForkServer, argv: list[str], folder: str, faults: str = "none", sync_log: str | None = None,
    side_log: str | None = None,
) -> tuple[int | None, str, str]:
    """(exit status, stdout, stderr) of the `flux` command line run in a forked child with these
    faults (engine/faults.py); the exit status is None when the child was killed."""
    out, err = os.path.join(folder, "cli.out"), os.path.join(folder, "cli.err")
    args = {"argv": argv, "stdout": out, "stderr": err, "side_log": side_log}
    status = server.wait(server.fork("cli", args, faults=faults, sync_log=sync_log), timeout=120)
    if not status["exited"]:
        raise RuntimeError(f"flux {' '.join(argv)} did not end in 120 s")
    with open(out, encoding="utf-8", errors="replace") as fh_out, open(err, encoding="utf-8", errors="replace") as fh:
        return status["code"], fh_out.read(), fh.read()


def make_journals(workdir: str, runs: list[tuple[str, int]], durability: str = "os") -> list[dict[str, Any]]:
    """Real runs of battery workflows, (workflow, input) each: each journal's bytes and records,
    and what happened to it in order: `("fsync", size)` when an fsync of it returned, `("ack",
    size)` when a sync returned to the engine (so everything up to `size` was acknowledged)."""
    from flux._engine.journal import read_journal

    out = []
    with ForkServer() as server:
        for i, (workflow, n) in enumerate(runs):
            home = os.path.join(workdir, f"source{i}")
            sync_log = home + ".sync"
            args = {"home": home, "workflow": workflow, "input": n, "durability": durability, "log_fsyncs": True}
            status = server.wait(server.fork("run", args, sync_log=sync_log))
            if status.get("code") != 0:
                raise AssertionError(f"a source run of the battery failed: {status}")
            found = journal_of(home)
            assert found is not None
            path, eid = found
            data = read_bytes(path)
            header_end = data.index(b"\n") + 1  # create() syncs the header before the journal appears
            events = [("fsync", header_end)]
            for line in read_bytes(sync_log).splitlines():
                fields = line.split()
                if fields[0] == b"fsync" and fields[2].decode() == os.path.realpath(path):
                    events.append(("fsync", int(fields[1])))
                elif fields[0].decode() == eid:
                    events.append(("ack", int(fields[1])))
            read = read_journal(path, eid)
            out.append({"workflow": workflow, "n": n, "execution_id": eid, "data": data, "events": events,
                        "records": read.records, "offsets": read.offsets})
    return out


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def reset_journal(folder: str, execution_id: str, data: bytes) -> str:
    """Puts `data` in place of the journal, with no `.torn` file beside it; returns its path."""
    path = os.path.join(folder, execution_id + ".jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(folder, execution_id + ".torn"))
    return path


def journal_of(home: str) -> tuple[str, str] | None:
    """(path, execution_id) of the one journal in a store, or None when there is none yet."""
    folder = os.path.join(home, "executions")
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".jsonl")]
    except FileNotFoundError:
        return None
    if not names:
        return None
    if len(names) > 1:
        raise AssertionError(f"{folder}: expected one journal, found {names}")
    return os.path.join(folder, names[0]), names[0][:-6]


def read_sync_log(path: str) -> Iterator[tuple[str, int, int]]:
    """(execution_id, journal size, last synced seq) of each sync the fault hooks logged."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return
    for line in data.splitlines():
        if line.startswith(b"fsync "):
            continue  # written by battery_child's fsync recorder, not by the fault hooks
        eid, end, seq = line.split()
        yield eid.decode(), int(end), int(seq)


def read_side_log(path: str) -> list[tuple[str, int]]:
    """(call_id, pid) of each task body that started, from the battery workflows' side log."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    out = []
    for line in data.splitlines():
        key, pid = line.split()
        out.append((key.decode().partition(":")[2], int(pid)))
    return out


def elapsed(started: float) -> float:
    return time.perf_counter() - started
