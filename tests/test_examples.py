"""The examples run as the README says: `python examples/crash_demo.py` kills a run with SIGKILL
and resumes it to the uninterrupted result; `examples/fastest_quote.py` races and replays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, flux_cmd


@pytest.mark.slow
def test_the_crash_demo_resumes_a_killed_run_without_running_its_recorded_steps_again(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}  # its store is made under tmp_path
    demo = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "crash_demo.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert demo.returncode == 0, (demo.stdout, demo.stderr)
    assert "same result as an uninterrupted run: 2470" in demo.stdout
    resumed = demo.stdout.split("killed. resuming", 1)[1]
    steps = [int(line.split()[-1]) for line in resumed.splitlines() if line.strip().startswith("running step")]
    # Killed once 5 steps were recorded: the resume runs only the steps from the first unrecorded one.
    assert steps and steps[0] >= 5 and steps == list(range(steps[0], 20)), steps
    assert list(tmp_path.iterdir()) == []  # its temporary store is removed


def test_the_fastest_quote_example_replays_its_race_exactly(tmp_path: Path) -> None:
    example = str(ROOT / "examples" / "fastest_quote.py")
    ran = flux_cmd(
        "exec", example, "cheapest_fast_quote", "--input", '{"item": "lamp", "within": 0.3}', "--json", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    done = json.loads(ran.stdout)
    assert done["status"] == "completed"
    assert done["output"] == {"first": "south", "west_in_time": False, "result": "ordered lamp from south at 15"}
    replayed = flux_cmd("replay", done["execution_id"], "--file", example, "--summary", cwd=tmp_path)
    assert replayed.returncode == 0 and "the code reproduces the recorded output" in replayed.stdout, replayed.stderr
