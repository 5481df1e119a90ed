"""Type checkers see what `@task` and `@workflow` keep: a task's signature and return type, a
workflow's input and output types, typed options (tests/typing_examples). mypy must accept the
typed example and report each marked mistake of the wrong one; so must pyright, where it runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "typing_examples"

pytestmark = pytest.mark.slow


def _package_mirror(tmp: Path) -> Path:
    """`flux` as installed (engine/ as flux._engine, cli/ as flux._cli), for a type checker that
    cannot follow the editable install's import hook."""
    package = tmp / "site" / "flux"
    package.mkdir(parents=True)
    for entry in (ROOT / "flux").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "_engine").symlink_to(ROOT / "engine")
    (package / "_cli").symlink_to(ROOT / "cli")
    return tmp / "site"


def _expected_lines(example: Path) -> set[int]:
    return {i for i, line in enumerate(example.read_text().splitlines(), 1) if "# ERROR" in line}


def _mypy(tmp_path: Path, example: Path) -> subprocess.CompletedProcess[str]:
    site = _package_mirror(tmp_path)
    target = tmp_path / example.name
    shutil.copy(example, target)
    env = {**os.environ, "MYPYPATH": str(site)}
    command = [
        sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental",
        "--config-file", os.devnull, "--cache-dir", str(tmp_path / "cache"), str(target),
    ]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_mypy_accepts_the_typed_example(tmp_path: Path) -> None:
    done = _mypy(tmp_path, EXAMPLES / "typed_ok.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_reports_every_mistake_of_the_wrong_example(tmp_path: Path) -> None:
    example = EXAMPLES / "typed_wrong.py"
    done = _mypy(tmp_path, example)
    assert done.returncode == 1, done.stdout + done.stderr
    reported = {int(m) for m in re.findall(rf"{example.name}:(\d+): error", done.stdout)}
    assert reported == _expected_lines(example), done.stdout


def _pyright() -> str:
    found = shutil.which("pyright") or str(Path(sys.executable).with_name("pyright"))
    if not os.path.exists(found):
        pytest.skip("pyright is not installed (pip install pyright)")
    probe = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"pyright is installed but cannot run here: {(probe.stderr or probe.stdout).strip()[:200]}")
    return found


@pytest.mark.parametrize(("name", "errors"), [("typed_ok.py", False), ("typed_wrong.py", True)])
def test_pyright_agrees(tmp_path: Path, name: str, errors: bool) -> None:
    pyright = _pyright()
    site = _package_mirror(tmp_path)
    target = tmp_path / name
    shutil.copy(EXAMPLES / name, target)
    config = tmp_path / "pyrightconfig.json"
    config.write_text(f'{{"extraPaths": ["{site}"], "typeCheckingMode": "strict", "reportMissingTypeStubs": false}}')
    done = subprocess.run([pyright, "-p", str(config), str(target)], capture_output=True, text=True, timeout=300)
    reported = {int(m) for m in re.findall(rf"{name}:(\d+):\d+ - error", done.stdout)}
    if errors:
        assert _expected_lines(EXAMPLES / name) <= reported, done.stdout
    else:
        assert done.returncode == 0, done.stdout
