"""Times `flux replay --summary` as a whole process on journals of N sequential tasks; prints one
table with the median wall time and the peak memory (max RSS) of the replaying process, for the
summary as users run it (starting from the replay snapshot the pause left, as a resume does) and
with `--full` (every line checked and parsed again, as for a journal that has no snapshot).

Run from the project root:

    .venv/bin/python benchmarks/bench_replay.py [--runs N] [--sizes 10,10000,100000] [--dir DIR]
        [--compare OTHER_FLUX]

Setup (not timed): one workflow of N trivial sequential tasks runs with durability "os" and ends
at `pause("end")`, so its journal holds 2N+3 records. Each timed run is a fresh `python -m
flux replay JOURNAL --file THIS_FILE --summary` process, interpreter start-up and imports included; its peak
RSS is that process's own VmHWM (benchmarks/peak_rss.py). A replay that does not report the code as
matching stops the script: a fast wrong answer is not a measurement.

The floor, timed in the same rounds (one replay then one floor process, in turn): a fresh process
that only reads the same journal and checks every line as any reader must (its CRC, that it parses,
that it is canonical, its seq: `read_journal`), interpreter start-up and that import included.
The ratios are the replay's medians (wall, CPU) over the floor's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from flux import ExecutionContext, task, workflow  # noqa: E402
from flux.tasks import pause  # noqa: E402


@task
async def noop(i: int) -> int:
    return i


@workflow
async def sequential(ctx: ExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await noop(i)
    await pause("end")
    return total


def make_journal(n: int, home: str) -> str:
    from flux.loader import load_file

    module = load_file(os.path.abspath(__file__))  # record this file as the workflow's code
    ctx = module.sequential.run(n, store=home, durability="os")
    assert ctx.status == "paused", ctx.status
    return os.path.join(home, "executions", ctx.execution_id + ".jsonl")


def replay_once(journal: str, full: bool) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and peak RSS in KiB of one `flux replay
    --summary` process (with `--full` when `full`)."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    peak_file = journal + ".peak"
    started = time.perf_counter()
    # Through peak_rss.py, which reports the process's own VmHWM: the rusage of a child forked
    # from this process (which made the journal) starts from this process's size.
    proc = subprocess.Popen(
        [
            sys.executable, os.path.join(ROOT, "benchmarks", "peak_rss.py"), peak_file,
            # The code named: peak_rss.py imports flux_workloads, whose `sequential` is another.
            "flux", "replay", journal, "--file", os.path.abspath(__file__), "--summary", *(["--full"] if full else []),
        ],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or b"matches the journal" not in out:
        raise SystemExit(f"replay of {journal} failed ({proc.returncode}): {out.decode()} {err.decode()}")
    with open(peak_file) as f:
        peak_kib = int(f.read()) // 1024
    return seconds, usage.ru_utime + usage.ru_stime, peak_kib


FLOOR = (
    "import sys\n"
    "from flux._engine.journal import read_journal\n"
    "path = sys.argv[1]\n"
    "read = read_journal(path, path.rsplit('/', 1)[-1][:-6])\n"
    "print(len(read.offsets))\n"
)


def process_once(command: list[str], expect: bytes, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of one process, whose standard output must hold `expect`."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0 or expect not in out:
        raise SystemExit(f"{' '.join(command)} failed: {out!r} {err!r}")
    return seconds, usage.ru_utime + usage.ru_stime


def floor_once(journal: str, records: int) -> tuple[float, float]:
    """Wall and CPU seconds of a process that reads and checks the journal and nothing else."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    return process_once([sys.executable, "-c", FLOOR, journal], f"{records}\n".encode(), env)


def compare_once(flux: str, journal: str) -> tuple[float, float]:
    """Wall and CPU seconds of `flux replay --summary` by another `flux` script (another tree)."""
    return process_once([flux, "replay", journal, "--file", os.path.abspath(__file__), "--summary"], b"matches")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="10,10000,100000")
    parser.add_argument("--dir", default=None, help="where the journals go (default: a temporary directory)")
    parser.add_argument("--compare", default=None, help="another flux script to time the same replay with")
    args = parser.parse_args()
    if args.dir is not None:
        os.makedirs(args.dir, exist_ok=True)  # a folder named but not made yet
    base = tempfile.mkdtemp(prefix="bench-replay-", dir=args.dir)
    try:
        rows = []
        compared: list[tuple[int, float, float]] = []
        load = os.getloadavg()
        for n in (int(s) for s in args.sizes.split(",")):
            journal = make_journal(n, os.path.join(base, f"n{n}"))
            size = os.path.getsize(journal)
            replay_once(journal, False)  # warm-up: page cache, .pyc files
            floor_once(journal, 2 * n + 3)
            runs: dict[str, list[tuple[float, float, int]]] = {"summary": [], "--full": []}
            floors, others = [], []
            for _ in range(args.runs):
                runs["summary"].append(replay_once(journal, False))
                runs["--full"].append(replay_once(journal, True))
                floors.append(floor_once(journal, 2 * n + 3))
                if args.compare:
                    others.append(compare_once(args.compare, journal))
            if others:
                compared.append((n, statistics.median(o[0] for o in others), statistics.median(o[1] for o in others)))
            floor = statistics.median(f[0] for f in floors)
            floor_cpu = statistics.median(f[1] for f in floors)
            for mode, got in runs.items():
                seconds = statistics.median(r[0] for r in got)
                spread = f"{min(r[0] for r in got):.2f}-{max(r[0] for r in got):.2f}"
                cpu = statistics.median(r[1] for r in got)
                peak = max(r[2] for r in got)
                rows.append((n, mode, 2 * n + 3, size, seconds, spread, cpu, peak, floor, floor_cpu))
        print(f"flux replay --summary, median of {args.runs} processes (python {sys.version.split()[0]}, "
              f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs)")
        print(f"{'tasks':>8} {'mode':>8} {'records':>8} {'journal MB':>11} {'wall s':>7} {'(min-max)':>11} "
              f"{'CPU s':>6} {'peak RSS MB':>12} {'floor s':>8} {'/ floor':>8} {'floor CPU s':>12} {'/ floor CPU':>12}")
        for n, mode, records, size, seconds, spread, cpu, peak, floor, floor_cpu in rows:
            print(f"{n:>8} {mode:>8} {records:>8} {size / 1e6:>11.1f} {seconds:>7.2f} {spread:>11} {cpu:>6.2f} "
                  f"{peak / 1024:>12.0f} {floor:>8.2f} {seconds / floor:>8.2f} {floor_cpu:>12.2f} "
                  f"{cpu / floor_cpu:>12.2f}")
        for n, seconds, cpu in compared:
            print(f"--compare {args.compare}, {n} tasks: wall {seconds:.2f} s, CPU {cpu:.2f} s (no peak RSS)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
