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


def test_a_store_whose_parent_folder_does_not_exist_is_a_store_error(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "missing" / "store"))
    header = {"kind": "header", "format": 1, "execution_id": "e1", "workflow": "w", "code": {}, "input": None,
              "created": "t"}
    with pytest.raises(StoreError, match="missing/store: cannot create the store's directory .*create its parent"):
        store.create("e1", header, "fsync")
    assert not (tmp_path / "missing").exists()


PAUSES = """
from flux import task, workflow
from flux.tasks import pause

@task
async def one() -> int:
    return 1

@workflow
async def gate(ctx):
    return await one() + await pause("approve")
"""


def test_a_fifo_in_place_of_a_replay_snapshot_is_ignored_by_every_command(project: Path) -> None:
    (project / "gate.py").write_text(PAUSES)
    store = project / "store"
    ran = _flux("exec", "gate.py", "gate", "--store", str(store), cwd=project)
    assert ran.returncode == 0, ran.stderr
    (journal,) = (store / "executions").glob("*.jsonl")
    index = journal.with_suffix(".index")
    index.unlink(missing_ok=True)
    os.mkfifo(index)  # nothing ever writes into it: opening it to read would wait forever
    for args in (("list",), ("show", journal.stem), ("recover",)):
        done = _flux(*args, "--store", str(store), cwd=project)  # each would time out on a blocking open
        assert done.returncode == 0, (args, done.stderr)
    resumed = _flux("resume", journal.stem, "--input", "2", "--store", str(store), cwd=project)
    assert resumed.returncode == 0 and "3" in resumed.stdout, resumed.stderr


def test_every_new_folder_of_a_store_is_made_durable_in_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the real fsync, noting which file or folder it made durable
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    home = tmp_path / "store"
    header = {"kind": "header", "format": 1, "execution_id": "e1", "workflow": "w", "code": {}, "input": None,
              "created": "2026-01-01T00:00:00+00:00"}
    store = FileStore(str(home))
    store.create("e1", header, "fsync")
    store.blobs.put(b"[1]")
    assert (home / "executions").is_dir() and (home / "blobs").is_dir()
    assert str(tmp_path) in synced  # for store/
    assert synced.count(str(home)) >= 2  # for executions/ and blobs/
