"""`flux worker` on a directory of files: the embedded store recovers by itself. Interrupted
executions are continued concurrently (a long sleep holds up nothing else), submitted ones run,
timed pauses that are due go on, untimed pauses wait; SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, flux_cmd, flux_popen

pytestmark = pytest.mark.slow

WORKFLOWS = str(ROOT / "tests" / "fleet_workflows.py")


def _status(store: Path, execution_id: str, tmp: Path) -> str:
    shown = flux_cmd("show", execution_id, "--store", str(store), cwd=tmp).stdout
    return shown.split("status: ", 1)[1].split()[0] if "status: " in shown else "?"


def _kill_when(proc: subprocess.Popen[str], journal: Path, marker: bytes, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (journal.exists() and marker in journal.read_bytes()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    proc.kill()
    proc.communicate()  # reaps it and closes its pipes


def test_a_worker_recovers_a_file_store_by_itself(tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {"FLUX_TEST_TASK_SECONDS": "0.05"}
    submitted = flux_cmd(
        "exec",
        WORKFLOWS,
        "order_flow",
        "--input",
        '{"id": "s", "n": 3}',
        "--detach",
        "--store",
        str(store),
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    sub_id = submitted.stdout.strip()
    assert _status(store, sub_id, tmp_path) == "created"
    crashed = flux_popen(
        "exec", WORKFLOWS, "long_flow", "--input", "30", "--id", "crashed", "--store", str(store), cwd=tmp_path, env=env
    )
    _kill_when(crashed, store / "executions" / "crashed.jsonl", b'"call_id":"5"')
    timed = flux_cmd(
        "exec", WORKFLOWS, "timed_flow", "--input", "1.5", "--id", "timed", "--store", str(store), cwd=tmp_path
    )
    asked = flux_cmd(
        "exec", WORKFLOWS, "approval_flow", "--input", '"x"', "--id", "asked", "--store", str(store), cwd=tmp_path
    )
    sleeper = flux_popen(
        "exec", WORKFLOWS, "nap_flow", "--input", "15", "--id", "sleeper", "--store", str(store), cwd=tmp_path
    )
    _kill_when(sleeper, store / "executions" / "sleeper.jsonl", b"timer_started")
    slept_from = time.monotonic()
    assert "status: paused" in timed.stdout and "status: paused" in asked.stdout
    assert {_status(store, e, tmp_path) for e in ("crashed", "sleeper")} == {"interrupted"}
    worker = flux_popen("worker", WORKFLOWS, "--store", str(store), "--concurrency", "8", cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 60
        while {_status(store, e, tmp_path) for e in (sub_id, "crashed", "timed")} != {"completed"}:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.2)
        others_done = time.monotonic() - slept_from
        assert _status(store, "sleeper", tmp_path) == "running"  # still in its sleep, held by the worker
        while _status(store, "sleeper", tmp_path) != "completed":
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.2)
        assert _status(store, "asked", tmp_path) == "paused"  # an untimed pause waits for its input
        # Answered from elsewhere without running it (no code needed there): the worker runs it.
        handed = flux_cmd(
            "resume", "asked", "--input", '"yes"', "--detach", "--module", "no_such_module", "--store", str(store),
            cwd=tmp_path,
        )
        assert handed.returncode == 0 and handed.stdout.strip() == "asked", handed.stderr
        while _status(store, "asked", tmp_path) != "completed":
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    assert "worker stopped: 5 claimed, 5 finished" in out, out
    answered = flux_cmd("show", "asked", "--store", str(store), cwd=tmp_path).stdout
    assert answered.count("resumed") >= 1 and ':yes"' in answered, answered
    assert others_done < 15.0  # the 15-second sleep held up nothing else
    shown = flux_cmd("show", "timed", "--store", str(store), cwd=tmp_path).stdout
    assert "status: completed" in shown and "resumed with null" in shown  # the timed pause went on by itself
    replay = flux_cmd(
        "replay", "crashed", "--store", str(store), "--summary", cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}
    )
    assert replay.returncode == 0, replay.stderr
