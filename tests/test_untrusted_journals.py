"""A journal read by path may come from anywhere: the code its header names is never imported
unless the user names it, and a relative path in a header is refused everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from flux._engine.journal import encode_line, seed_for
from flux.golden import replay_one

APP = """
from flux import task, workflow

@task
async def one() -> int:
    return 1

@workflow
async def wf(ctx):
    return await one()
"""

EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")
"""


def _flux(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLUX_HOME", "FLUX_STORE")}
    return subprocess.run(
        [sys.executable, "-m", "flux", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def _rewrite_header(journal: Path, **code: str) -> None:
    lines = journal.read_bytes().splitlines(keepends=True)
    header = orjson.loads(lines[0])
    header.pop("crc")
    header["code"] = {**header["code"], **code}
    lines[0] = encode_line(header, seed_for(journal.stem))
    journal.write_bytes(b"".join(lines))


def _recorded(tmp_path: Path) -> tuple[Path, Path, Path]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text(APP)
    store = project / "store"
    ran = _flux("exec", "app.py", "wf", "--store", str(store), cwd=project)
    assert ran.returncode == 0, ran.stderr
    (journal,) = (store / "executions").glob("*.jsonl")
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.py"
    evil.write_text(EVIL.format(marker=str(marker)))
    golden = tmp_path / "golden"
    golden.mkdir()
    copy = golden / journal.name
    copy.write_bytes(journal.read_bytes())
    _rewrite_header(copy, file=str(evil), module="evil", attr="wf")
    return project, copy, marker


def test_replaying_a_journal_file_never_imports_the_code_it_names(tmp_path: Path) -> None:
    project, golden, marker = _recorded(tmp_path)
    result = _flux("replay", str(golden), cwd=tmp_path)
    assert result.returncode == 2 and "WorkflowLoadError" in result.stderr and "file=PATH" in result.stderr
    assert not marker.exists()
    checked = replay_one(str(golden))
    assert not checked.ok and "file=PATH" in checked.message
    assert not marker.exists()
    # Named by the user, the right code replays the journal.
    ok = _flux("replay", str(golden), "--file", str(project / "app.py"), "--summary", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert not marker.exists()


def test_a_relative_path_in_a_header_is_refused_even_in_a_store(tmp_path: Path) -> None:
    project, _, marker = _recorded(tmp_path)
    (journal,) = (project / "store" / "executions").glob("*.jsonl")
    (project / "evil.py").write_text(EVIL.format(marker=str(marker)))
    _rewrite_header(journal, file="evil.py", module="not_importable_here", attr="wf")
    for args in (("replay", journal.stem), ("resume", journal.stem)):
        result = _flux(*args, "--store", str(project / "store"), cwd=project)
        assert result.returncode == 2 and "relative path 'evil.py'" in result.stderr, result.stderr
    assert not marker.exists()
