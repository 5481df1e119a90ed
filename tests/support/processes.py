"""Waiting for a condition, and killing a `flux` subprocess once it holds: the crashes of the crash
tests are real SIGKILLs of real processes."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import flux_popen


def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float = 30.0,
    proc: subprocess.Popen[str] | None = None,
    what: str = "the condition",
) -> None:
    """Polls `predicate` until it holds. Fails after `timeout` seconds, or as soon as `proc`, the
    process expected to bring the condition about, has exited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None:
            assert proc.poll() is None, (f"the process exited before {what}", proc.communicate())
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def kill_when(
    proc: subprocess.Popen[str], until: Callable[[], object], *, settle: float = 0.0, timeout: float = 30.0
) -> tuple[str, str]:
    """Kills `proc` with SIGKILL once `until()` holds and `settle` more seconds have passed.
    Returns its stdout and stderr; fails unless it died of that SIGKILL."""
    try:
        wait_for(until, timeout=timeout, proc=proc, what="the point to kill at")
        time.sleep(settle)
    finally:
        proc.send_signal(signal.SIGKILL)  # also when the wait failed: leave no process behind
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    return out, err


def exec_and_kill(
    project: Path, workflow: str, input: str, env: dict[str, str], until: Callable[[], object], *, settle: float = 0.0
) -> tuple[str, str]:
    """Runs `flux exec flows.py WORKFLOW --input INPUT` in the project directory and kills it with
    SIGKILL once `until()` holds and `settle` more seconds have passed; returns its stdout and
    stderr."""
    proc = flux_popen("exec", "flows.py", workflow, "--input", input, cwd=project, env=env)
    return kill_when(proc, until, settle=settle)
