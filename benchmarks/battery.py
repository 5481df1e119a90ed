"""The fault battery: what Flux survives, with numbers. Prints one table of figures; exits 1 when
a requirement fails (a figure that must be 0 is not, say), else 0.

Run from the project root:

    .venv/bin/python benchmarks/battery.py --size ci            # what CI runs: about 2 minutes on 2 cores
    .venv/bin/python benchmarks/battery.py --size long          # 20,000 kills, 100,000 power losses
    .venv/bin/python benchmarks/battery.py --only kill,race --seed 7

Scenarios (SPEC.md, section "Fault battery"); each is seeded and reproducible:

1. kill (battery_kill.py): SIGKILL a workflow with retries, a timer, output storage, the cache,
   a sub-workflow, a pause and a saga at every point where the store writes (syncs, the middle
   of a write, journal creation, torn-tail repair, blob, cache, snapshot and lock writes), while
   a cancellation is asked for, and at random moments; resume until it finishes.
2. power (battery_power.py): keep what was synced plus part of the rest, zeros, pages out of
   order or stale blocks; recover. Take away the directory entry of a journal just created.
3. truncation (battery_power.py): a ~20 KB journal cut at every byte offset.
4. corruption (battery_files.py, battery_commands.py): every bit flip of a ~2 KB journal;
   swapped, repeated, dropped and foreign lines; lines with valid checksums around NaN, duplicate
   keys, huge numbers, deep nesting; then records with wrong field types, unknown kinds and wrong
   values through list, show, show --records, replay, diff, recover and resume.
5. race (battery_procs.py): 2 to 8 processes resume one execution at once; the owner is killed,
   stopped, its lock file removed; a writer that lost ownership keeps writing.
6. disk (battery_procs.py): fsync errors, a full disk and short writes injected into the
   journal, header, lock, blob, cache, snapshot and `.torn` writes of `flux exec`.
7. many (battery_procs.py): a store of 10,000 executions of 20 tasks: `flux list`, a resume,
   `flux recover`, file descriptors.

The scenario functions (`run_kill`, ...) take a `Size`, a seed and an empty work directory and
return `Figures`; tests/test_battery.py runs them at the CI size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.battery_files import run_corruption
from benchmarks.battery_kill import run_kill
from benchmarks.battery_kit import SIZES, Figures, Size
from benchmarks.battery_power import run_power, run_truncation
from benchmarks.battery_procs import run_disk, run_many, run_race

__all__ = ["SCENARIOS", "main", "render", "run_battery"]

Scenario = Callable[[Size, int, str], Figures]

SCENARIOS: dict[str, Scenario] = {
    "kill": run_kill,
    "power": run_power,
    "truncation": run_truncation,
    "corruption": run_corruption,
    "race": run_race,
    "disk": run_disk,
    "many": run_many,
}


def run_battery(
    size: Size, seed: int, only: list[str], workdir: str, progress: Callable[[str], None] | None = None
) -> list[Figures]:
    """Runs the chosen scenarios one after another, each in its own subfolder of `workdir`."""
    results = []
    for name in only:
        folder = os.path.join(workdir, name)
        os.makedirs(folder)
        if progress:
            progress(f"{name}...")
        started = time.perf_counter()
        fig = SCENARIOS[name](size, seed, folder)
        fig.seconds = time.perf_counter() - started
        results.append(fig)
        if progress:
            progress(f"{name}: {fig.seconds:.1f} s")
    return results


def render(results: list[Figures], size: Size, seed: int) -> str:
    """One table of every figure; the notes of failed scenarios follow it."""
    rows = [("scenario", "figure", "value", "required", "")]
    for fig in results:
        first = True
        for row in fig.rows:
            mark = "" if row.ok is None else ("ok" if row.ok else "FAIL")
            rows.append((fig.scenario if first else "", row.figure, str(row.value), row.required, mark))
            first = False
        rows.append(("", "  time (s)", f"{fig.seconds:.1f}", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"Flux fault battery, size {size.name}, seed {seed}"]
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    total = sum(f.seconds for f in results)
    failed = [f for f in results if f.failed]
    verdict = "all requirements met" if not failed else "FAILED: " + ", ".join(f.scenario for f in failed)
    lines.append(f"total {total:.1f} s; {verdict}")
    for fig in failed:
        lines.append(f"\n{fig.scenario}:")
        lines.extend(f"  {note}" for note in fig.notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="ci")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--dir", default=None, help="parent of the work directory (default: the system's temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (journals, logs) for inspection")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    size = SIZES[args.size]
    workdir = tempfile.mkdtemp(prefix="flux-battery-", dir=args.dir)
    try:
        results = run_battery(
            size, args.seed, only, workdir, progress=lambda text: print(text, file=sys.stderr, flush=True)
        )
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render(results, size, args.seed))
    return 1 if any(f.failed for f in results) else 0


if __name__ == "__main__":
    sys.exit(main())
