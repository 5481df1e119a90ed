"""What every peer script shares: its arguments, the timing loop and the JSON it prints.

Standard library only: each peer runs in its own virtual environment with its own Python.

A peer script prints exactly one JSON object on stdout:

    {"peer": "dbos", "versions": {"dbos": "3.4.0"}, "python": "3.11.7",
     "notes": {"W3": "what W3 means for this peer"},
     "workloads": {"W1": {"tasks": 1000, "seconds": [...], "us_per_task": [...], "median_us": 2750.1}},
     "skipped": {"W5": "why"}}

or, when the peer cannot run at all here, `{"peer": ..., "unavailable": "why"}` (exit status 0).
Everything else (logs, progress) goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BenchmarkError", "Workload", "emit", "expect", "log", "parse_args", "run_workloads", "unavailable"]


class BenchmarkError(Exception):
    """A measured run gave a wrong result, so its time means nothing."""


def expect(ok: bool, message: str) -> None:
    if not ok:
        raise BenchmarkError(message)


@dataclass
class Workload:
    """One row: `prepare()` does the untimed setup and returns the timed call and its check."""

    key: str
    tasks: int
    prepare: Callable[[], tuple[Callable[[], Any], Callable[[Any], None]]]
    seconds: list[float] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        per = [s / self.tasks * 1e6 for s in self.seconds]
        return {"tasks": self.tasks, "seconds": self.seconds, "us_per_task": per, "median_us": statistics.median(per)}


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per execution in W1, W2, W3")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per workload (suite.py runs one per round)")
    parser.add_argument("--dir", default=".", help="where the peer keeps its store for this process")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs={args.runs} must be >= 1")
    if args.tasks < 10:
        parser.error(f"--tasks={args.tasks} must be >= 10")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_workloads(workloads: list[Workload], runs: int, warm_up: Callable[[], None] | None = None) -> None:
    """Times each workload `runs` times, round-robin, after an optional untimed warm-up."""
    if warm_up is not None:
        warm_up()
    for run in range(runs):
        for w in workloads:
            timed, verify = w.prepare()
            gc.collect()
            start = time.perf_counter()
            result = timed()
            elapsed = time.perf_counter() - start
            verify(result)
            w.seconds.append(elapsed)
            log(f"run {run + 1}/{runs} {w.key}: {elapsed / w.tasks * 1e6:.1f} µs/task")


def emit(peer: str, versions: dict[str, str], workloads: list[Workload], notes: dict[str, str],
         skipped: dict[str, str]) -> None:
    print(
        json.dumps(
            {
                "peer": peer,
                "versions": versions,
                "python": platform.python_version(),
                "notes": notes,
                "workloads": {w.key: w.result() for w in workloads},
                "skipped": skipped,
            }
        ),
        flush=True,
    )


def unavailable(peer: str, reason: str) -> None:
    print(json.dumps({"peer": peer, "unavailable": reason}), flush=True)
