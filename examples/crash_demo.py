"""Crash and resume: a slow workflow you can kill with `kill -9` and resume.

    flux exec examples/crash_demo.py slow_sum --input 20 &    # note the pid
    sleep 3; kill -9 %1
    flux list                                                 # the execution is "interrupted"
    flux resume <execution_id>                                # finishes; done steps do not run again

`python examples/crash_demo.py` does all of this by itself and checks the result.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from flux import ExecutionContext, task, workflow


@task
async def slow_square(i: int) -> int:
    print(f"  running step {i}", flush=True)
    await asyncio.sleep(float(os.environ.get("DEMO_DELAY", "0.3")))
    return i * i


@workflow
async def slow_sum(ctx: ExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await slow_square(i)
    return total


def _demo() -> None:
    home = tempfile.mkdtemp(prefix="flux-demo-")
    try:
        _kill_and_resume(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # the demo's store goes with it


def _kill_and_resume(home: str) -> None:
    env = {**os.environ, "FLUX_HOME": home, "DEMO_DELAY": "0.1"}
    flux = [sys.executable, "-m", "flux"]
    here = os.path.abspath(__file__)
    print("starting a 20-step workflow, killing it with SIGKILL once 5 steps are recorded…")
    proc = subprocess.Popen([*flux, "exec", here, "slow_sum", "--input", "20"], env=env)
    journal = _journal_with_steps(os.path.join(home, "executions"), 5, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    execution_id = os.path.basename(journal).removesuffix(".jsonl")
    print(f"killed. resuming {execution_id}: only the steps not yet recorded run")
    result = subprocess.run([*flux, "resume", execution_id], env=env, capture_output=True, text=True)
    print(result.stdout, end="")
    expected = sum(i * i for i in range(20))
    assert f"output: {expected}" in result.stdout, result.stderr
    print(f"same result as an uninterrupted run: {expected}")


def _journal_with_steps(folder: str, steps: int, proc: subprocess.Popen[bytes]) -> str:
    """The path of the journal in `folder` once it records `steps` completed steps."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        names = os.listdir(folder) if os.path.isdir(folder) else []
        for name in names:
            if name.endswith(".jsonl"):
                path = os.path.join(folder, name)
                with open(path, "rb") as journal:
                    if journal.read().count(b'"kind":"task_completed"') >= steps:
                        return path
        time.sleep(0.02)
    proc.kill()
    raise SystemExit(f"the workflow did not record {steps} steps (exit code {proc.wait()})")


if __name__ == "__main__":
    _demo()
