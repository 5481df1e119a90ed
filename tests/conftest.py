"""Shared fixtures: a private store per test, and helpers to run the `flux` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux._engine import faults

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty store directory, also set as FLUX_HOME."""
    path = tmp_path / "store"
    monkeypatch.setenv("FLUX_HOME", str(path))
    return path


@pytest.fixture
def armed_faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The file store's fault hooks (engine/faults.py) armed in this process with no rules:
    `faults.configure(...)` sets the faults of the test, and `faults._counts` tells which points
    were reached."""
    from flux._engine.stores import files

    monkeypatch.setattr(files, "_FAULTS", True)
    monkeypatch.setattr(files, "_WRITE", faults.write)
    faults.configure("none")
    yield
    faults.configure("none")


def flux_cmd(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m flux ARGS` the way a user runs `flux ARGS`."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flux", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def flux_popen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "flux", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
