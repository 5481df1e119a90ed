"""What the command line does around a run: it names an interrupted execution and how to go on,
never lets journal content drive the terminal, clears only cache entries, keeps the store
private, and refuses an input too large for a journal line before writing anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flux import ExecutionContext, task, workflow
from flux.errors import RecordTooLargeError
from tests.support.cli import invoke

SLOW = """
import asyncio
from flux import task, workflow

@task
async def slow(i: int) -> int:
    await asyncio.sleep(60)
    return i

@workflow
async def wf(ctx):
    return await slow(1)
"""


@pytest.mark.slow
def test_ctrl_c_names_the_execution_and_how_to_continue_it(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(SLOW)
    env = {k: v for k, v in os.environ.items() if k not in ("FLUX_HOME", "FLUX_STORE")}
    env["FLUX_STORE"] = str(tmp_path / "store")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flux", "exec", "app.py", "wf"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as at a terminal, even when the suite itself was started in the background
        # (a shell starts background commands with SIGINT ignored, and children inherit that).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    executions = tmp_path / "store" / "executions"
    for _ in range(600):  # until the slow body runs
        journals = list(executions.glob("*.jsonl")) if executions.exists() else []
        if journals and b'"task_started"' in journals[0].read_bytes():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    (journal,) = executions.glob("*.jsonl")
    assert proc.returncode == 130, err
    assert f"interrupted: execution {journal.stem} stopped where it was" in err
    assert f"flux resume {journal.stem}" in err
    assert "Traceback" not in err


@workflow.with_options(name="evil\x1b[31mred\x07")
async def loud(ctx: ExecutionContext[None]) -> None:
    await boom()


@task
async def boom() -> None:
    raise ValueError("bad \x1b]0;pwned\x07 title")


def test_escape_sequences_from_a_journal_never_reach_the_terminal(home: Path) -> None:
    ctx = loud.run()
    for args in (["list"], ["show", ctx.execution_id], ["show", ctx.execution_id, "--records"], ["recover"]):
        result = invoke(*args, "--store", str(home))
        assert result.exit_code in (0, 1), result.output
        assert "\x1b" not in result.output and "\x07" not in result.output, (args, result.output)
    listed = invoke("list", "--store", str(home)).output
    assert "evil\\x1b[31mred\\x07" in listed


@task.with_options(cache=True)
async def cached(x: int) -> int:
    return x + 1


@workflow
async def uses_cache(ctx: ExecutionContext[int]) -> int:
    return await cached(ctx.input)


def test_clear_cache_deletes_only_cache_entries_and_never_follows_a_link(home: Path, tmp_path: Path) -> None:
    uses_cache.run(1)
    cache = home / "cache"
    (cache / "notes.txt").write_text("mine")
    result = invoke("clear-cache", "--store", str(home))
    assert result.exit_code == 0 and "removed 1 cached results" in result.output
    assert [p.name for p in cache.iterdir()] == ["notes.txt"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / ("a" * 64 + ".json")
    victim.write_text("{}")
    (cache / "notes.txt").unlink()
    cache.rmdir()
    cache.symlink_to(elsewhere)
    result = invoke("clear-cache", "--store", str(home))
    assert result.exit_code == 2 and "UnsafePathError" in result.output and "symbolic link" in result.output
    assert victim.exists()


def test_a_store_open_to_others_is_made_private(tmp_path: Path) -> None:
    store = tmp_path / "shared"
    store.mkdir()
    store.chmod(0o777)
    assert uses_cache.run(2, store=str(store)).output == 3
    assert store.stat().st_mode & 0o777 == 0o700
    assert (store / "executions").stat().st_mode & 0o777 == 0o700


@workflow
async def echo(ctx: ExecutionContext[str]) -> int:
    return len(ctx.input)


def test_an_input_too_large_for_a_journal_line_is_refused_before_anything_is_written(home: Path) -> None:
    with pytest.raises(RecordTooLargeError, match="workflow input of .* bytes is over the limit"):
        echo.run("x" * (5 << 20))
    executions = home / "executions"
    assert not executions.exists() or not list(executions.iterdir())
