"""The benchmark suite: our engine, the plain append loops and the peer engines in one run; one table.

Run from the project root with the project's Python:

    .venv/bin/python benchmarks/suite.py [--runs N] [--quick] [--skip-peers] [--markdown]

Every figure is the median of `--runs` rounds (at least 5) with the range beside it, in µs per
task unless the row says otherwise. Each round measures every system once (ours, the plain loops,
then each peer in a process of its own), so that a noisy minute on a shared machine touches all of
them alike; the load average at the start of each round is printed with the table. Each figure
is also given as a ratio to the plain loop that appends one orjson line and fsyncs it (P1), and,
on our rows, as peer/ours for each peer compared at the same durability (flux-core and Temporal
with ours "os", DBOS with ours "fsync"; see suite_table.py): how many times faster we are. Setup
and removal of each run's temporary store are never timed.

Workloads (N = 1000 tasks unless --quick):

- W1: N sequential trivial tasks. W2: N trivial tasks at once (`asyncio.gather`), then a sum.
- W3: an execution that ran N tasks and paused at the end is resumed: N results replayed, no body.
- W4: 100 executions of 10 tasks each, all at once in one process.
- W5: a 100,000-task journal (made untimed with durability "os"): a fresh process resumes it
  (the time of the resume call, and the peak RSS of that process), and `flux replay` reads and
  replays it as a whole process.
- W6: `flux exec` of a one-task workflow as a whole process; `python -c pass` for reference.
- Scaling: within each 10,000-task W1 run (--quick: 1,000), the median time between consecutive
  task starts (the journal's `at` times) over its last 100 tasks, over its first 100: how much a
  task costs once history is long. With fsync it is divided by the same ratio of the plain fsync
  loop over 10,000 lines in the same run, since fsync itself may slow down as a file grows. Beside
  it, 10,000-task runs over 100-task runs per task, plain and net of an empty run's fixed cost (W0).

Our engine runs in this process (W1-W4, round-robin with the plain loops, one untimed warm-up
round first) and in subprocesses (W5, W6). Each peer is set up by `peers/setup_peers.py` in its
own virtual environment under ~/.cache/flux-bench-peers (or $FLUX_BENCH_PEERS) and runs its script
in `peers/` with the same workloads and task bodies; what W3 and W4 mean for a peer is printed
under the table. A peer that cannot run is listed with the reason. Targets are reported, never
enforced: the exit status is 0 unless a run gave a wrong result.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import orjson

import flux_workloads as fw
from suite_table import PEER_NAMES, Figure, render

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER_TIMEOUT = 30 * 60  # seconds one peer script may take before it is stopped and listed as skipped


class BenchmarkError(Exception):
    """A measured run gave a wrong result, so its time means nothing."""


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise BenchmarkError(message)


@dataclass
class Sizes:
    n: int  # W1-W3
    small: int  # scaling
    large: int
    w5: int

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        return cls(100, 100, 1000, 10_000) if quick else cls(1000, 100, 10_000, 100_000)


# -- in-process cases: the plain loops and our W1-W4 -------------------------------------------

Timed = Callable[[], Any]
Verify = Callable[[Any], None]


@dataclass
class Case:
    """One figure measured in this process; `prepare(home)` is the untimed setup."""

    key: str
    tasks: int
    prepare: Callable[[str], tuple[Timed, Verify]]
    seconds: list[float] = field(default_factory=list)


def _lines(path: str) -> int:
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def plain_loop(n: int, every: int) -> Callable[[str], tuple[Timed, Verify]]:
    """One orjson line per task appended with os.write; an fsync after every `every` lines (0: never)."""

    def prepare(home: str) -> tuple[Timed, Verify]:
        path = os.path.join(home, "plain.jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

        def timed() -> None:
            dumps, write, sync = orjson.dumps, os.write, os.fsync
            for i in range(n):
                write(fd, dumps({"seq": i, "kind": "task_completed", "call_id": str(i), "value": i}) + b"\n")
                if every and ((i + 1) % every == 0 or i == n - 1):
                    sync(fd)

        def verify(_: Any) -> None:
            os.close(fd)
            _expect(_lines(path) == n, f"{path}: expected {n} lines")

        return timed, verify

    return prepare


def plain_history(n: int, window: int) -> Callable[[str], tuple[Timed, Verify]]:
    """The plain fsync loop over n lines, timing each line: the disk's own growth with history,
    for the scaling row (HISTORY["plain"])."""

    def prepare(home: str) -> tuple[Timed, Verify]:
        path = os.path.join(home, "plain.jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        stamps: list[float] = []

        def timed() -> None:
            dumps, write, sync, clock = orjson.dumps, os.write, os.fsync, time.perf_counter
            for i in range(n):
                stamps.append(clock())
                write(fd, dumps({"seq": i, "kind": "task_completed", "call_id": str(i), "value": i}) + b"\n")
                sync(fd)

        def verify(_: Any) -> None:
            os.close(fd)
            _expect(_lines(path) == n, f"{path}: expected {n} lines")
            gaps = [b - a for a, b in pairwise(stamps)]
            HISTORY.setdefault("plain", []).append(statistics.median(gaps[-window:]) / statistics.median(gaps[:window]))

        return timed, verify

    return prepare


def run_workflow(wf: Any, n: int, durability: str, expected: Any) -> Callable[[str], tuple[Timed, Verify]]:
    def prepare(home: str) -> tuple[Timed, Verify]:
        def verify(ctx: Any) -> None:
            _expect(ctx.has_succeeded and ctx.output == expected,
                    f"{wf.name}({n}, {durability}) ended {ctx.status} with {ctx.output!r}, expected {expected!r}")

        return (lambda: wf.run(n, store=home, durability=durability)), verify

    return prepare


# Per durability, one figure per large W1 run: the median time from one task_started record to the
# next over the run's last `small` tasks, over the same for its first `small` tasks (the journal's
# own `at` times). Growth with history shows here without any fixed cost to subtract.
HISTORY: dict[str, list[float]] = {}


def _start_intervals(path: str) -> list[float]:
    with open(path, "rb") as f:
        starts = [
            dt.datetime.fromisoformat(r["at"]).timestamp()
            for r in map(orjson.loads, f)
            if r["kind"] == "task_started"
        ]
    return [b - a for a, b in pairwise(starts)]


def run_with_history(n: int, durability: str, window: int) -> Callable[[str], tuple[Timed, Verify]]:
    """A W1 run whose journal also gives the per-task cost late in the run over early in it."""

    def prepare(home: str) -> tuple[Timed, Verify]:
        check = run_workflow(fw.sequential, n, durability, n)(home)[1]

        def verify(ctx: Any) -> None:
            check(ctx)
            gaps = _start_intervals(os.path.join(home, "executions", ctx.execution_id + ".jsonl"))
            _expect(len(gaps) == n - 1, f"expected {n - 1} intervals between task starts, found {len(gaps)}")
            early, late = statistics.median(gaps[:window]), statistics.median(gaps[-window:])
            if early > 0:
                HISTORY.setdefault(durability, []).append(late / early)

        return (lambda: fw.sequential.run(n, store=home, durability=durability)), verify

    return prepare


def resume_paused(n: int, durability: str) -> Callable[[str], tuple[Timed, Verify]]:
    def prepare(home: str) -> tuple[Timed, Verify]:
        ctx = fw.paused_at_end.run(n, store=home, durability="os")
        _expect(ctx.is_paused, f"setup of paused_at_end({n}) ended {ctx.status}, expected paused")
        path = os.path.join(home, "executions", ctx.execution_id + ".jsonl")
        before = _lines(path)

        def verify(done: Any) -> None:
            _expect(done.has_succeeded and done.output == n, f"resume ended {done.status} with {done.output!r}")
            added = _lines(path) - before  # workflow_resumed and workflow_completed, no task again
            _expect(added == 2, f"{path}: the resume appended {added} records, expected 2 (a task ran again?)")

        return (lambda: fw.paused_at_end.resume(ctx.execution_id, None, store=home, durability=durability)), verify

    return prepare


def concurrent(executions: int, tasks: int, durability: str) -> Callable[[str], tuple[Timed, Verify]]:
    def prepare(home: str) -> tuple[Timed, Verify]:
        def verify(ctxs: list[Any]) -> None:
            bad = [c for c in ctxs if not (c.has_succeeded and c.output == tasks)]
            _expect(len(ctxs) == executions and not bad, f"{len(bad)} of {executions} concurrent executions failed")

        return (lambda: asyncio.run(fw.concurrent_executions(executions, tasks, home, durability))), verify

    return prepare


def in_process_cases(s: Sizes) -> list[Case]:
    n = s.n
    cases = [
        Case("P0", n, plain_loop(n, 0)),
        Case("P1", n, plain_loop(n, 1)),
        Case("P1000", n, plain_loop(n, 1000)),
    ]
    for d in ("fsync", "os"):
        cases += [
            Case(f"W1/{d}", n, run_workflow(fw.sequential, n, d, n)),
            Case(f"W2/{d}", n, run_workflow(fw.parallel, n, d, n * (n - 1) // 2)),
            Case(f"W3/{d}", n, resume_paused(n, d)),
            Case(f"W4/{d}", 1000, concurrent(100, 10, d)),
            Case(f"W0/{d}", 0, run_workflow(fw.sequential, 0, d, 0)),
            Case(f"small/{d}", s.small, run_workflow(fw.sequential, s.small, d, s.small)),
            Case(f"large/{d}", s.large, run_with_history(s.large, d, s.small)),
        ]
    # Last in each round: 10,000 fsyncs leave the file system busy for a moment after them.
    cases.append(Case("P1/history", s.large, plain_history(s.large, s.small)))
    return cases


def measure_once(case: Case, parent: str) -> float:
    home = tempfile.mkdtemp(prefix="flux-suite-", dir=parent)
    try:
        timed, verify = case.prepare(home)
        gc.collect()  # the setup's garbage, or the last run's, is not this run's to collect
        start = time.perf_counter()
        result = timed()
        elapsed = time.perf_counter() - start
        verify(result)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return elapsed


def measure_in_process(cases: list[Case], runs: int, parent: str) -> None:
    for case in cases:  # warm-up: imports, first-call caches, the page cache of the directory
        measure_once(case, parent)
    for _ in range(runs):
        for case in cases:
            case.seconds.append(measure_once(case, parent))


# -- subprocess cases: W5 and W6 ---------------------------------------------------------------


def run_process(argv: list[str], *, stdout: Any = subprocess.DEVNULL, cwd: str | None = None) -> tuple[float, int]:
    """Runs argv to the end; returns its wall time and the child's rusage peak RSS (bytes), which
    includes this process's own size when the child was forked from it."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this child alone
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            text = err.read().decode("utf-8", "replace").strip()
            raise BenchmarkError(f"{' '.join(argv)} exited {proc.returncode}: {text[-500:]}")
    return elapsed, usage.ru_maxrss * 1024


def flux_command() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "flux")
    found = beside if os.access(beside, os.X_OK) else shutil.which("flux")
    if not found:
        raise BenchmarkError("no `flux` command next to this Python or on PATH; install the project first")
    return found


def replay_quiet_option(flux: str) -> str:
    """`--summary` where `flux replay` has it (one line out), else `--json` (the records as JSON)."""
    out = subprocess.run(
        [flux, "replay", "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    return "--summary" if "--summary" in out.stdout else "--json"


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)


def measure_w5(tasks: int, runs: int, parent: str, flux: str) -> tuple[dict[str, Sample], str]:
    """W5: one journal of `tasks` tasks paused at the end; resumed by fresh processes; replayed by the CLI.

    Returns the samples and the option `flux replay` ran with.
    """
    base = tempfile.mkdtemp(prefix="flux-suite-w5-", dir=parent)
    samples = {"W5/fsync": Sample(), "W5/os": Sample(), "W5/replay": Sample()}
    try:
        home = os.path.join(base, "home")
        ctx = fw.paused_at_end.run(tasks, store=home, durability="os")
        _expect(ctx.is_paused, f"setup of paused_at_end({tasks}) ended {ctx.status}, expected paused")
        journal = os.path.join(home, "executions", ctx.execution_id + ".jsonl")
        quiet = replay_quiet_option(flux)
        child = os.path.join(HERE, "flux_workloads.py")
        for run in range(runs + 1):  # the first round warms the page cache and is not kept
            for d in ("fsync", "os"):
                copy = os.path.join(base, f"resume-{run}-{d}")
                shutil.copytree(home, copy)  # each resume appends to its journal, so it gets its own
                out_path = os.path.join(base, "child.out")
                with open(out_path, "wb") as out:
                    run_process([sys.executable, child, "resume", copy, ctx.execution_id, str(tasks), d], stdout=out)
                with open(out_path, "rb") as f:
                    report = json.loads(f.read())
                shutil.rmtree(copy)
                if run:
                    samples[f"W5/{d}"].seconds.append(report["seconds"])
                    samples[f"W5/{d}"].peak_rss.append(report["peak_rss"])
            # `flux replay` exits 1 when the code does not reproduce the journal: run_process raises.
            # Its peak RSS is its own VmHWM: the rusage of a child of this large process is not.
            peak_file = os.path.join(base, "replay.peak")
            elapsed, _ = run_process(
                [sys.executable, os.path.join(HERE, "peak_rss.py"), peak_file, "flux", "replay", quiet, journal],
                cwd=ROOT,
            )
            if run:
                samples["W5/replay"].seconds.append(elapsed)
                with open(peak_file) as f:
                    samples["W5/replay"].peak_rss.append(int(f.read()))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return samples, quiet


def measure_w6(runs: int, parent: str, flux: str) -> dict[str, Sample]:
    """W6: `flux exec` of a one-task workflow as a whole process, and `python -c pass`."""
    samples = {"W6/fsync": Sample(), "W6/os": Sample(), "W6/python": Sample()}
    file = os.path.join(HERE, "flux_workloads.py")
    for run in range(runs + 1):
        for key, extra in (("W6/fsync", []), ("W6/os", ["--durability", "os"])):
            home = tempfile.mkdtemp(prefix="flux-suite-w6-", dir=parent)
            try:
                out_path = os.path.join(home, "exec.out")
                with open(out_path, "wb") as out:
                    elapsed, rss = run_process(
                        [flux, "exec", file, "one_task", "--home", os.path.join(home, "store"), *extra],
                        stdout=out, cwd=home,
                    )
                with open(out_path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                _expect("completed" in text, f"flux exec one_task printed {text[:300]!r}")
            finally:
                shutil.rmtree(home, ignore_errors=True)
            if run:
                samples[key].seconds.append(elapsed)
                samples[key].peak_rss.append(rss)
        elapsed, rss = run_process([sys.executable, "-c", "pass"])
        if run:
            samples["W6/python"].seconds.append(elapsed)
            samples["W6/python"].peak_rss.append(rss)
    return samples


# -- peers -------------------------------------------------------------------------------------


def setup_peers(cache: str) -> dict[str, dict[str, Any]]:
    """Runs peers/setup_peers.py (idempotent) and returns its manifest."""
    script = os.path.join(HERE, "peers", "setup_peers.py")
    out = subprocess.run([sys.executable, script, "--cache", cache], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        print(f"  setup: {line}", file=sys.stderr)
    manifest_path = os.path.join(cache, "peers.json")
    if out.returncode != 0 or not os.path.exists(manifest_path):
        reason = f"setup_peers.py exited {out.returncode}: {out.stderr.strip()[-300:]}"
        return {name: {"status": "skipped", "reason": reason} for name in PEER_NAMES}
    with open(manifest_path) as f:
        manifest: dict[str, dict[str, Any]] = json.load(f)
    return manifest


def run_peer(name: str, entry: dict[str, Any], tasks: int, runs: int, parent: str,
             extra: list[str]) -> dict[str, Any]:
    """Runs one peer's script with its own Python; returns its JSON, or {"unavailable": why}."""
    workdir = tempfile.mkdtemp(prefix=f"peer-{name}-", dir=parent)
    argv = [entry["python"], entry["script"], "--tasks", str(tasks), "--runs", str(runs), "--dir", workdir, *extra]
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "FLUX_HOME", "FLUX_DURABILITY")
    }
    log_path = os.path.join(parent, f"peer-{name}.log")
    started = time.perf_counter()
    try:
        with open(log_path, "wb") as log:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=log, cwd=workdir, env=env, timeout=PEER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"unavailable": f"its script did not finish within {PEER_TIMEOUT} s"}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    with open(log_path, "rb") as f:
        log_tail = f.read()[-800:].decode("utf-8", "replace").strip().replace("\n", " | ")
    os.unlink(log_path)
    print(f"  {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    lines = out.stdout.decode("utf-8", "replace").strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"unavailable": f"its script exited {out.returncode}: {log_tail[-400:]}"}
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"unavailable": f"its script printed no JSON: {lines[-1][:200]}"}
    return result


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure; the median is shown (>= 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=100, a 10,000-task W5, scaling 100/1000")
    parser.add_argument("--skip-peers", action="store_true", help="measure our engine and the plain loops only")
    parser.add_argument("--peers-cache", default=None, help="folder of the peers' environments "
                        "(default: $FLUX_BENCH_PEERS, else ~/.cache/flux-bench-peers)")
    parser.add_argument("--temporal-store", choices=["memory", "file"], default="memory",
                        help="where Temporal's dev server keeps its state (default: memory, its own default)")
    parser.add_argument("--dir", default=".", help="parent of the temporary stores (default: .)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error(f"--runs={args.runs} must be >= 5")
    if not os.path.isdir(args.dir):
        parser.error(f"--dir={args.dir!r} is not a directory")
    return args


def _merge_peer(into: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any]:
    """One round's JSON of a peer added to the rounds before: each workload's runs together."""
    if into is None or "unavailable" in into:
        return run
    if "unavailable" in run:
        return into  # a round that failed: the rounds that ran stand, with fewer runs
    for key, w in run.get("workloads", {}).items():
        kept = into.setdefault("workloads", {}).get(key)
        if kept is None:
            into["workloads"][key] = w
            continue
        kept["seconds"] += w["seconds"]
        kept["us_per_task"] = [t / kept["tasks"] * 1e6 for t in kept["seconds"]]
        kept["median_us"] = statistics.median(kept["us_per_task"])
    return into


def _add_samples(into: dict[str, Sample], more: dict[str, Sample]) -> None:
    for key, sample in more.items():
        kept = into.setdefault(key, Sample())
        kept.seconds += sample.seconds
        kept.peak_rss += sample.peak_rss


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parent = os.path.abspath(args.dir)
    sizes = Sizes.for_mode(args.quick)
    started = time.perf_counter()
    figures: dict[str, Figure] = {}
    peers: dict[str, dict[str, Any]] = {}
    ready: dict[str, dict[str, Any]] = {}
    if args.skip_peers:
        peers = {name: {"unavailable": "--skip-peers"} for name in PEER_NAMES}
    else:
        cache = os.path.abspath(args.peers_cache or os.environ.get("FLUX_BENCH_PEERS")
                                or os.path.join(os.path.expanduser("~"), ".cache", "flux-bench-peers"))
        print(f"peers (environments in {cache}) ...", file=sys.stderr)
        for name, entry in setup_peers(cache).items():
            if entry.get("status") == "ready":
                ready[name] = entry
            else:
                peers[name] = {"unavailable": entry.get("reason", "not set up")}
    # Rounds: each measures every system once, ours and each peer's, so that a noisy minute on a
    # shared machine touches all of them alike; the load average is printed with each round.
    loads: list[float] = []
    w5: dict[str, Sample] = {}
    w6: dict[str, Sample] = {}
    replay_option = ""
    try:
        flux = flux_command()
        cases = in_process_cases(sizes)
        for round_ in range(1, args.runs + 1):
            loads.append(os.getloadavg()[0])
            print(f"round {round_}/{args.runs} (load average {loads[-1]:.2f}): our engine and the plain loops ...",
                  file=sys.stderr)
            measure_in_process(cases, 1, parent)
            found, replay_option = measure_w5(sizes.w5, 1, parent, flux)
            _add_samples(w5, found)
            _add_samples(w6, measure_w6(1, parent, flux))
            for name, entry in ready.items():
                extra = ["--store", args.temporal_store] if name == "temporal" else []
                print(f"  {name}: running {os.path.basename(entry['script'])} ...", file=sys.stderr)
                peers[name] = _merge_peer(peers.get(name), run_peer(name, entry, sizes.n, 1, parent, extra))
    except BenchmarkError as err:
        print(f"BenchmarkError: {err}", file=sys.stderr)
        return 1
    for c in cases:
        figures[c.key] = Figure(c.seconds, c.tasks)
    for key, sample in w5.items():
        figures[key] = Figure(sample.seconds, sizes.w5, sample.peak_rss)
    for key, sample in w6.items():
        figures[key] = Figure(sample.seconds, 1, sample.peak_rss)
    print(
        f"Flux benchmark suite{' (--quick)' if args.quick else ''}: median of {args.runs} interleaved rounds "
        f"(min-max), N={sizes.n}; stores under {parent}; Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs; load average at each round: "
        + ", ".join(f"{load:.2f}" for load in loads)
    )
    print(render(figures, peers, sizes.n, sizes.small, sizes.large, sizes.w5,
                 replay_option=replay_option, markdown=args.markdown, history=HISTORY))
    print(f"total {time.perf_counter() - started:.0f} s; targets are reported, never enforced (exit status 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
