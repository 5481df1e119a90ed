"""Where the store is touched, every operating-system failure becomes one error of Flux's tree:
one red line and exit 2 on the command line, never a traceback, and nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux._engine.errors import ExecutionNotFoundError, StoreError, UnsafePathError
from flux._engine.stores.files import FileStore

APP = """
from flux import task, workflow

@task
async def one() -> int:
    return 1

@workflow
async def wf(ctx):
    return await one()
"""


def _flux(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLUX_HOME", "FLUX_STORE")}
    return subprocess.run(
        [sys.executable, "-m", "flux", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def _one_line(result: subprocess.CompletedProcess[str], error: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{error}: "), result.stderr
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def test_a_store_path_that_is_a_file_is_one_line(project: Path) -> None:
    (project / "notadir").write_text("x")
    line = _one_line(_flux("exec", "app.py", "wf", "--store", str(project / "notadir"), cwd=project), "StoreError")
    assert "notadir" in line and "give a directory" in line
    _one_line(_flux("list", "--store", str(project / "notadir"), cwd=project), "StoreError")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can write into: mode 0500, or for root (who writes through any mode) a
    read-only filesystem mounted there."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o500)
        yield path
        path.chmod(0o700)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"root cannot make a read-only directory here (mount: {mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_a_read_only_store_is_one_line(project: Path, read_only_dir: Path) -> None:
    line = _one_line(_flux("exec", "app.py", "wf", "--store", str(read_only_dir), cwd=project), "StoreError")
    assert str(read_only_dir) in line and ("permissions" in line or "Read-only" in line)


def test_a_store_the_process_cannot_write_is_one_line_even_as_root(project: Path) -> None:
    # A store below a file: no permission bits matter, the directory can never be made.
    (project / "blocker").write_text("x")
    line = _one_line(
        _flux("exec", "app.py", "wf", "--store", str(project / "blocker" / "store"), cwd=project), "StoreError"
    )
    assert "blocker" in line


def test_a_fifo_in_place_of_a_journal_is_refused_at_once(project: Path) -> None:
    store = project / "store"
    (store / "executions").mkdir(parents=True)
    os.mkfifo(store / "executions" / "e1.jsonl")
    for args in (("show", "e1"), ("resume", "e1"), ("replay", "e1")):
        line = _one_line(_flux(*args, "--store", str(store), cwd=project), "UnsafePathError")
        assert "not a regular file" in line
    listed = _flux("list", "--store", str(store), cwd=project)
    assert listed.returncode == 0 and "damaged" in listed.stdout


def test_a_directory_named_like_a_journal_is_refused(project: Path) -> None:
    store = project / "store"
    (store / "executions" / "e1.jsonl").mkdir(parents=True)
    line = _one_line(_flux("show", "e1", "--store", str(store), cwd=project), "UnsafePathError")
    assert "e1.jsonl" in line
    with pytest.raises(UnsafePathError):
        FileStore(str(store)).acquire("e1", "fsync")


def test_the_library_raises_errors_of_the_tree_not_os_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    store = FileStore(str(tmp_path / "file"))
    with pytest.raises(StoreError):
        store.create(
            "e1",
            {
                "kind": "header",
                "format": 1,
                "execution_id": "e1",
                "workflow": "w",
                "code": {},
                "input": None,
                "created": "t",
            },
            "fsync",
        )
    with pytest.raises(StoreError):
        store.list_ids()
    with pytest.raises(ExecutionNotFoundError):
        FileStore(str(tmp_path / "nothing")).read("e1")
