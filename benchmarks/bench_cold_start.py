"""Times the cold start of `flux exec` on a one-task workflow as a whole process, against floors
timed in the same run; prints one table of medians (min-max) and ratios.

Run from the project root:

    .venv/bin/python benchmarks/bench_cold_start.py [--runs N] [--compare OTHER_FLUX] [--no-compile]

Rows, each a fresh process, timed in interleaved rounds (one of each per round, after a warm-up
round that is not counted) so that a change of the machine's load falls on every row alike:

- `python -c pass`: the interpreter alone (with the venv's site);
- `python -c "import orjson"`: the interpreter and one compiled dependency;
- `python script.py`: the same workflow run by a plain script calling `wf.run(...)`: the floor
  `flux exec` can be compared with, since it runs the same engine;
- `flux exec FILE hello --input '"x"'`: the console script next to this interpreter, on the file
  store in a temporary FLUX_HOME;
- with `--compare PATH`: another `flux` script (another checkout's `.venv/bin/flux`), the same command.

By default the project's packages are compiled first (`compileall`) and the processes run with
PYTHONDONTWRITEBYTECODE unset, as an installed wheel would run with its .pyc files; `--no-compile`
runs them as the environment is. Every run's output is checked: a fast wrong answer stops it.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKFLOW = '''\
from flux import ExecutionContext, task, workflow


@task
async def greet(name: str) -> str:
    return f"hello {name}"


@workflow
async def hello(ctx: ExecutionContext[str]) -> str:
    return await greet(ctx.input)
'''

SCRIPT = '''\
import sys

sys.path.insert(0, {folder!r})
from hello_flow import hello

print(hello.run("x", store={store!r}).output)
'''


def flux_script(python: str) -> list[str]:
    """The `flux` console script beside `python`, or `python -m flux` when there is none."""
    script = os.path.join(os.path.dirname(python), "flux")
    return [script] if os.path.exists(script) else [python, "-m", "flux"]


def time_once(command: list[str], env: dict[str, str], expect: bytes) -> float:
    started = time.perf_counter()
    run = subprocess.run(command, env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if run.returncode != 0 or expect not in run.stdout:
        raise SystemExit(f"{' '.join(command)} failed ({run.returncode}): {run.stdout!r} {run.stderr!r}")
    return seconds


def cell(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:6.0f} ms ({min(times) * 1000:.0f}-{max(times) * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--compare", default=None, help="another flux script to time the same command with")
    parser.add_argument("--no-compile", action="store_true", help="do not compile the packages first")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-cold-")
    try:
        with open(os.path.join(folder, "hello_flow.py"), "w") as f:
            f.write(WORKFLOW)
        with open(os.path.join(folder, "plain.py"), "w") as f:
            f.write(SCRIPT.format(folder=folder, store=os.path.join(folder, "plain-store")))
        env = {**os.environ, "FLUX_HOME": os.path.join(folder, "home")}
        env.pop("FLUX_STORE", None)
        if not args.no_compile:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            for package in ("cli", "flux", "engine"):
                compileall.compile_dir(os.path.join(ROOT, package), quiet=1)
        flow = os.path.join(folder, "hello_flow.py")
        exec_args = ["exec", flow, "hello", "--input", '"x"']
        rows: list[tuple[str, list[str], bytes]] = [
            ("python -c pass", [sys.executable, "-c", "pass"], b""),
            ('python -c "import orjson"', [sys.executable, "-c", "import orjson"], b""),
            ("python script.py (wf.run)", [sys.executable, os.path.join(folder, "plain.py")], b"hello x"),
            ("flux exec (one task)", [*flux_script(sys.executable), *exec_args], b"status: completed"),
        ]
        if args.compare:
            rows.append(("flux exec, --compare", [args.compare, *exec_args], b"status: completed"))
        times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
        load_before = os.getloadavg()
        for round_ in range(args.runs + 1):
            for name, command, expect in rows:
                seconds = time_once(command, env, expect)
                if round_:  # round 0 warms the page cache and writes the workflow's .pyc
                    times[name].append(seconds)
        load_after = os.getloadavg()
        bytecode = "environment as is" if args.no_compile else "compiled .pyc (PYTHONDONTWRITEBYTECODE unset)"
        print(f"cold start, median (min-max) of {args.runs} interleaved rounds; python {sys.version.split()[0]}; "
              f"{bytecode}")
        print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs")
        floor, plain = statistics.median(times[rows[0][0]]), statistics.median(times[rows[2][0]])
        print(f"{'':28} {'wall':>22} {'/ python -c pass':>17} {'/ script.py':>12}")
        for name, _, _ in rows:
            median = statistics.median(times[name])
            print(f"{name:28} {cell(times[name]):>22} {median / floor:>17.2f} {median / plain:>12.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
