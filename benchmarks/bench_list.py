"""`flux list` on a store of many executions, against the floor of reading what it must read.

    python benchmarks/bench_list.py [--executions 100000] [--runs 5]

Builds a file store of N executions (copies of a few real runs of three workflows, with new ids,
creation times and checksums; a tenth completed, failed, paused each...), then times, in fresh
processes as a user runs them: `flux list` (the newest 50), `--status failed`, `--workflow`,
`--since 1h`, the next page by `--cursor`, `--limit 0 --jsonl` (every execution) and `flux show`
of one. The floor is a process that lists the directory and reads the first line of every
journal: what any listing newest-first by creation time must do without an index. Prints
medians (min-max) and each as a ratio to the floor measured in the same run.
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


def _flux(args: list[str], store: str) -> float:
    env = {**os.environ, "PYTHONPATH": ROOT, "FLUX_STORE": store}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flux", *args], env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"flux {' '.join(args)}: {done.stderr.strip()}")
    return took


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
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="flux-bench-list-")
    load_before = os.getloadavg()
    try:
        built = time.perf_counter()
        store, newest = build(work, args.executions)
        built = time.perf_counter() - built
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
        for _ in range(args.runs):  # interleaved, so that the machine's load falls on all alike
            samples["floor: list the folder, read every header"].append(_floor(store))
            for name, argv in cases:
                samples.setdefault(name, []).append(_flux(argv, store))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    floor = statistics.median(samples["floor: list the folder, read every header"])
    print(
        f"| {args.executions:,} executions, {args.runs} runs, built in {built:.0f} s | median s (min-max) | x floor |"
    )
    print("|---|---|---|")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} ({min(values):.2f}-{max(values):.2f}) | {med / floor:.2f} |")
    print(f"\nload average before {load_before[0]:.1f}, after {load_after[0]:.1f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
