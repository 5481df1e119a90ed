"""`flux list` on a store of many executions, against the floor of reading what it must read.

    python benchmarks/bench_list.py [--executions 10000] [--runs 5] [--tasks 100000]

Builds a file store of N executions (copies of a few real runs of three workflows, with new ids,
creation times and checksums; a tenth completed, failed, paused each...). The journals are
written as files, as a store of an older Flux holds them (no listing index), so the first listing
reads every one whole, keeps its summary and writes the index with the settled states (SPEC.md 1):
that listing is timed once, as "first listing". Then times, in fresh processes as a user runs
them: `flux list` (the newest 50), `--status failed`, `--workflow`, `--since 1h`, the next page
by `--cursor`, `--limit 0 --jsonl` (every execution) and `flux show` of one; and, inside a fresh
process (the interpreter's and Flux's start-up left out), `FileStore.list()` of the newest 50,
of the newest 50 failed, and of every execution. The floor is listing the directory and reading the first line of every
journal, as a process (for the commands) and inside one (for the library): what any listing
newest-first by creation time must do without an index.

The targets: the listing of N = 10,000 executions in at most 0.2 s, and a store holding one
journal of `--tasks` (100,000) tasks listed in at most 5 ms, both inside a process. Prints medians
(min-max) and each as a ratio to its floor measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from flux._engine.journal import encode_line, read_journal, seed_for  # noqa: E402

WORKFLOWS = """
from flux import ExecutionContext, task, workflow
from flux.tasks import pause


@task
async def step(i: int) -> int:
    return i * i


@workflow
async def steady(ctx: ExecutionContext[int]) -> int:
    return sum([await step(i) for i in range(ctx.input)])


@workflow
async def broken(ctx: ExecutionContext[int]) -> None:
    await step(ctx.input)
    raise ValueError("broken on purpose")


@workflow
async def gated(ctx: ExecutionContext[int]) -> int:
    await step(ctx.input)
    return await pause("approve")
"""

FLOOR = """
import os, sys
folder = sys.argv[1]
rows = []
for name in os.listdir(folder):
    if name.endswith(".jsonl"):
        with open(os.path.join(folder, name), "rb") as f:
            rows.append((f.readline(), name))
rows.sort(reverse=True)
print(len(rows))
"""

# Inside one fresh process, imports done before the clock starts: the floor, then a listing.
IN_PROCESS = """
import os, sys, time
from flux._engine.stores.files import FileStore
home, what = sys.argv[1], sys.argv[2]
folder = os.path.join(home, "executions")
started = time.perf_counter()
if what == "floor":
    rows = []
    for name in os.listdir(folder):
        if name.endswith(".jsonl"):
            with open(os.path.join(folder, name), "rb") as f:
                rows.append((f.readline(), name))
    rows.sort(reverse=True)
elif what == "failed":
    FileStore(home).list(limit=50, status="failed")
else:
    FileStore(home).list(limit=None if what == "all" else 50)
print(time.perf_counter() - started)
"""


def _flux(args: list[str], store: str) -> float:
    env = {**os.environ, "PYTHONPATH": ROOT, "FLUX_STORE": store}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flux", *args], env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"flux {' '.join(args)}: {done.stderr.strip()}")
    return took


def _inside(store: str, what: str) -> float:
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", IN_PROCESS, store, what], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"listing {what}: {done.stderr.strip()}")
    return float(done.stdout)


def build_long(work: str, tasks: int) -> str:
    """A store holding one finished journal of `tasks` tasks, written as a run writes it."""
    from flux._engine.stores.files import FileStore

    store = os.path.join(work, "long")
    at = "2026-01-01T00:00:00.000000+00:00"
    header = {"kind": "header", "format": 1, "execution_id": "long", "workflow": "steady", "code": {},
              "input": tasks, "created": at}
    lease = FileStore(store).create("long", header, "os")
    writer = lease.writer
    writer.append({"kind": "workflow_started", "at": at})
    for i in range(tasks):
        writer.append({"kind": "task_started", "at": at, "call_id": str(i + 1), "name": "step", "src": "x.py:1"})
        writer.append({"kind": "task_completed", "at": at, "call_id": str(i + 1), "value": i * i})
        if i % 1000 == 999:
            writer.sync()
    writer.append({"kind": "workflow_completed", "at": at, "value": 0})
    writer.sync()
    lease.close()
    return store


def _floor(store: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR, os.path.join(store, "executions")], check=True, capture_output=True)
    return time.perf_counter() - started


def build(work: str, count: int) -> tuple[str, str]:
    store = os.path.join(work, "store")
    code = os.path.join(work, "flows.py")
    with open(code, "w") as f:
        f.write(WORKFLOWS)
    env = {**os.environ, "PYTHONPATH": ROOT, "FLUX_STORE": store}
    runs = [("steady", "10"), ("broken", "1"), ("gated", "2")]
    for name, value in runs:
        subprocess.run(
            [sys.executable, "-m", "flux", "exec", code, name, "--input", value, "--durability", "os"],
            env=env,
            capture_output=True,
            check=False,
        )
    folder = os.path.join(store, "executions")
    templates = [
        read_journal(os.path.join(folder, n), n[:-6]).records for n in os.listdir(folder) if n.endswith(".jsonl")
    ]
    rng = random.Random(7)
    start = time.time() - count  # one a second, the newest now
    for i in range(count):
        records = templates[i % len(templates)]
        execution_id = f"{rng.getrandbits(128):032x}"
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i)) + ".000000+00:00"
        seed = seed_for(execution_id)
        lines = []
        for record in records:
            record = {k: v for k, v in record.items() if k != "crc"}
            if record["kind"] == "header":
                record["execution_id"] = execution_id
                record["created"] = created
            lines.append(encode_line(record, seed))
        with open(os.path.join(folder, execution_id + ".jsonl"), "wb") as f:
            f.write(b"".join(lines))
    return store, execution_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="flux-bench-list-")
    load_before = os.getloadavg()
    try:
        built = time.perf_counter()
        store, newest = build(work, args.executions)
        built = time.perf_counter() - built
        long_store = build_long(work, args.tasks)
        first_listing = _flux(["list", "--limit", "0", "--jsonl"], store)  # reads every journal, keeps summaries
        _flux(["list"], long_store)
        cursor_env = {**os.environ, "PYTHONPATH": ROOT, "FLUX_STORE": store}
        first = subprocess.run([sys.executable, "-m", "flux", "list"], env=cursor_env, capture_output=True, text=True)
        cursor = next(line.split("--cursor ", 1)[1] for line in first.stderr.splitlines() if "--cursor" in line)
        cases: list[tuple[str, list[str]]] = [
            ("flux list (newest 50)", ["list"]),
            ("flux list --status failed", ["list", "--status", "failed"]),
            ("flux list --workflow gated", ["list", "--workflow", "gated"]),
            ("flux list --since 1h", ["list", "--since", "1h"]),
            ("flux list --cursor (page 2)", ["list", "--cursor", cursor.strip()]),
            ("flux list --limit 0 --jsonl (all)", ["list", "--limit", "0", "--jsonl"]),
            ("flux show (one execution)", ["show", newest]),
            ("flux --version (start-up alone)", ["--version"]),
        ]
        samples: dict[str, list[float]] = {"floor: list the folder, read every header": []}
        inside: dict[str, list[float]] = {}
        for _ in range(args.runs):  # interleaved, so that the machine's load falls on all alike
            samples["floor: list the folder, read every header"].append(_floor(store))
            for name, argv in cases:
                samples.setdefault(name, []).append(_flux(argv, store))
            for name, (where, what) in {
                "floor inside a process": (store, "floor"),
                "FileStore.list(limit=50)": (store, "page"),
                "FileStore.list(limit=50, status='failed')": (store, "failed"),
                "FileStore.list() (all)": (store, "all"),
                f"one-journal floor ({args.tasks:,} tasks)": (long_store, "floor"),
                f"one {args.tasks:,}-task journal: FileStore.list()": (long_store, "page"),
            }.items():
                inside.setdefault(name, []).append(_inside(where, what))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    floor = statistics.median(samples["floor: list the folder, read every header"])
    print(
        f"| {args.executions:,} executions, {args.runs} runs, built in {built:.0f} s | median s (min-max) | x floor |"
    )
    print("|---|---|---|")
    print(f"| first listing, --limit 0 (reads every journal, keeps summaries; once) | {first_listing:.2f} | "
          f"{first_listing / floor:.2f} |")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} ({min(values):.2f}-{max(values):.2f}) | {med / floor:.2f} |")
    floors = {"floor inside a process": statistics.median(inside["floor inside a process"])}
    long_floor = statistics.median(inside[f"one-journal floor ({args.tasks:,} tasks)"])
    print("\n| inside one process (start-up left out) | median ms (min-max) | x floor | target |")
    print("|---|---|---|---|")
    for name, values in inside.items():
        med = statistics.median(values)
        base = long_floor if "journal" in name else floors["floor inside a process"]
        target = {"FileStore.list() (all)": " <= 200 ms", "FileStore.list(limit=50)": " <= 200 ms"}.get(name, "")
        if name.startswith("one ") and name.endswith("FileStore.list()"):
            target = " <= 5 ms"
        print(f"| {name} | {med * 1000:.2f} ({min(values) * 1000:.2f}-{max(values) * 1000:.2f}) | "
              f"{med / base:.2f} |{target} |")
    print(f"\nload average before {load_before[0]:.1f}, after {load_after[0]:.1f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
