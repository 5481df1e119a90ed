"""Paired, interleaved A/B timing of two source trees of Flux: the hot paths before and after a change.

    python benchmarks/ab.py BEFORE_TREE AFTER_TREE [--rounds 7] [--tasks 1000] [--big 100000]

Each tree needs its own virtual environment at `TREE/.venv` with Flux installed from that tree
(`pip install -e TREE`). Every measurement is a fresh process of the tree's Python, with its
store in a fresh temporary directory (FLUX_HOME, which every version reads); the rounds
alternate A and B, so a noisy minute on a shared machine touches both alike. Printed: the median
(and range) of each row for A and B, and B/A, for wall time and for the process's CPU time.

- W1: N sequential trivial tasks, durability fsync, µs per task (the whole `wf.run`).
- W2: N trivial tasks under one `asyncio.gather`, then a sum, fsync, µs per task.
- W3: resume of a journal of N tasks paused at its end (replay, then finish), fsync, µs per task.
- W5: the same with BIG tasks, in a fresh process, seconds (the resume call only).

Each process first runs a small workflow untimed, so that imports made on first use and warm
caches are not what is measured; bytecode is compiled once per tree before the first round.

A run whose result is wrong stops the script: a fast wrong answer is not a measurement.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import asyncio, sys, time
from flux import task, workflow
from flux.tasks import pause

@task
async def noop(i):
    return i

@workflow
async def sequential(ctx):
    total = 0
    for i in range(ctx.input):
        total += await noop(i)
    return total

@workflow
async def fan_out(ctx):
    return sum(await asyncio.gather(*(noop(i) for i in range(ctx.input))))

@workflow
async def paused_at_end(ctx):
    total = 0
    for i in range(ctx.input):
        total += await noop(i)
    await pause("end")
    return total

case, n = sys.argv[1], int(sys.argv[2])
expected = n * (n - 1) // 2
if case in ("W1", "W2"):
    wf = sequential if case == "W1" else fan_out
    wf.run(10, durability="fsync")  # warm-up: first-use imports and caches are not what is measured
    started, cpu = time.perf_counter(), time.process_time()
    ctx = wf.run(n, durability="fsync")
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert ctx.status == "completed" and ctx.output == expected, (ctx.status, ctx.output)
    print(took, cpu)
elif case == "setup":
    ctx = paused_at_end.run(n, durability="os")
    assert ctx.status == "paused"
    print(ctx.execution_id)
elif case == "resume":
    execution_id = sys.argv[3]
    warm = paused_at_end.run(10, durability="os")
    paused_at_end.resume(warm.execution_id, None, durability="os")
    started, cpu = time.perf_counter(), time.process_time()
    ctx = paused_at_end.resume(execution_id, None, durability="fsync")
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert ctx.status == "completed" and ctx.output == expected, (ctx.status, ctx.output)
    print(took, cpu)
"""


def _child(tree: str, home: str, *args: str) -> str:
    python = os.path.join(tree, ".venv", "bin", "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLUX_STORE", "PYTHONDONTWRITEBYTECODE")}
    env["FLUX_HOME"] = home
    proc = subprocess.run([python, "-c", CHILD, *args], cwd=home, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def measure(tree: str, case: str, n: int, parent: str) -> tuple[float, float]:
    """(wall, CPU) time of one run: µs per task, or seconds for W5."""
    home = tempfile.mkdtemp(prefix="flux-ab-", dir=parent)
    try:
        if case in ("W1", "W2"):
            took, cpu = map(float, _child(tree, home, case, str(n)).split())
        else:
            execution_id = _child(tree, home, "setup", str(n))
            took, cpu = map(float, _child(tree, home, "resume", str(n), execution_id).split())
        scale = 1.0 if case == "W5" else 1e6 / n
        return took * scale, cpu * scale
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--dir", default=".", help="parent of the temporary stores (default: .)")
    parser.add_argument("--only", default="W1,W2,W3,W5")
    args = parser.parse_args(argv)
    cases = [c for c in ("W1", "W2", "W3", "W5") if c in args.only.split(",")]
    sizes = {"W1": args.tasks, "W2": args.tasks, "W3": args.tasks, "W5": args.big}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    parent = os.path.abspath(args.dir)
    for tree in (args.before, args.after):
        python = os.path.join(tree, ".venv", "bin", "python")
        dirs = (os.path.join(tree, d) for d in ("engine", "flux", "cli"))
        subprocess.run([python, "-m", "compileall", "-q", *dirs], check=False)
    for _ in range(args.rounds):
        for case in cases:
            for side, tree in (("A", args.before), ("B", args.after)):
                results.setdefault((case, side), []).append(measure(tree, case, sizes[case], parent))
    print(f"A = {args.before}\nB = {args.after}")
    print(f"{args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.2f}")
    # Wall time is what a user waits; CPU time (the process's own, without the fsyncs' waits)
    # moves less when other processes share the cores, so it is shown too.
    for which, title in ((0, "wall time"), (1, "CPU time")):
        print(f"\n{title}\n{'case':<6}{'unit':>9}{'A median (min-max)':>28}{'B median (min-max)':>28}{'B/A':>8}")
        for case in cases:
            unit = "s" if case == "W5" else "µs/task"
            a = [r[which] for r in results[(case, "A")]]
            b = [r[which] for r in results[(case, "B")]]
            ma, mb = statistics.median(a), statistics.median(b)
            fmt = "{:.3f}" if case == "W5" else "{:.2f}"
            cell_a = f"{fmt.format(ma)} ({fmt.format(min(a))}-{fmt.format(max(a))})"
            cell_b = f"{fmt.format(mb)} ({fmt.format(min(b))}-{fmt.format(max(b))})"
            print(f"{case:<6}{unit:>9}{cell_a:>28}{cell_b:>28}{mb / ma:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
