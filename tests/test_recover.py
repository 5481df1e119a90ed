"""`flux recover` (flux/recover.py): every interrupted execution is resumed, nothing else is
touched, and two recovers at once never run one execution twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from flux._engine.journal import read_journal
from flux._engine.stores.files import FileStore
from flux.recover import recover_store
from tests.conftest import ROOT, flux_cmd, flux_popen

WORKFLOW = textwrap.dedent(
    """
    import asyncio
    import os

    from flux import ExecutionContext, task, workflow
    from flux.tasks import idempotency_key, pause


    @task
    async def work(i: int) -> int:
        fd = os.open(os.environ["RUN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, idempotency_key().encode() + b"\\n")
        os.close(fd)
        await asyncio.sleep(float(os.environ.get("STEP_DELAY", "0")))
        return i * i


    @task
    async def boom() -> None:
        raise ValueError("boom")


    @workflow
    async def squares(ctx: ExecutionContext[int]) -> int:
        total = 0
        for i in range(ctx.input):
            total += await work(i)
        return total


    @workflow
    async def gated(ctx: ExecutionContext[int]) -> list:
        first = await work(ctx.input)
        return [first, await pause("approve")]


    @workflow
    async def failing(ctx: ExecutionContext[None]) -> None:
        await boom()
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "flows.py").write_text(WORKFLOW)
    monkeypatch.setenv("RUN_LOG", str(tmp_path / "runs.log"))
    monkeypatch.setenv("FLUX_HOME", str(tmp_path / ".flux"))
    return tmp_path


def _env(project: Path, **extra: str) -> dict[str, str]:
    return {"RUN_LOG": str(project / "runs.log"), "FLUX_HOME": str(project / ".flux"), **extra}


def _status(project: Path) -> dict[str, str]:
    result = flux_cmd("list", cwd=project, env=_env(project))
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    return {row[0]: row[2] for row in rows}


def _ids(project: Path) -> set[str]:
    return {p.stem for p in (project / ".flux" / "executions").glob("*.jsonl")}


def _exec(project: Path, *args: str) -> str:
    before = _ids(project)
    flux_cmd("exec", "flows.py", *args, cwd=project, env=_env(project))
    (new,) = _ids(project) - before
    return new


def _interrupt_by_cutting(project: Path, n: int) -> str:
    """A finished run of squares(n) whose last records are cut away, as a crash leaves it."""
    execution_id = _exec(project, "squares", "--input", str(n))
    path = project / ".flux" / "executions" / f"{execution_id}.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[: len(lines) // 2]))
    return execution_id


def _final(project: Path, execution_id: str) -> dict[str, Any]:
    path = project / ".flux" / "executions" / f"{execution_id}.jsonl"
    return read_journal(str(path), execution_id).records[-1]


@pytest.mark.slow
def test_recover_resumes_the_interrupted_executions_and_nothing_else(project: Path) -> None:
    completed = _exec(project, "squares", "--input", "3")
    paused = _exec(project, "gated", "--input", "2")
    failed = _exec(project, "failing")
    cut = _interrupt_by_cutting(project, 6)
    killed_run = flux_popen(
        "exec", "flows.py", "squares", "--input", "30", cwd=project, env=_env(project, STEP_DELAY="0.02")
    )
    deadline = time.monotonic() + 30
    while not (project / "runs.log").exists() or len((project / "runs.log").read_text().split()) < 12:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(killed_run.pid, signal.SIGKILL)
    killed_run.communicate(timeout=30)
    (killed,) = _ids(project) - {completed, paused, failed, cut}
    before = _status(project)
    assert before[cut] == before[killed] == "interrupted"

    result = flux_cmd("recover", cwd=project, env=_env(project))
    assert result.returncode == 0, result.stderr
    assert cut in result.stdout and killed in result.stdout
    for untouched in (completed, paused, failed):
        assert untouched not in result.stdout
    after = _status(project)
    assert after == {**before, cut: "completed", killed: "completed"}
    assert _final(project, cut)["value"] == sum(i * i for i in range(6))
    assert _final(project, killed)["value"] == sum(i * i for i in range(30))
    again = flux_cmd("recover", cwd=project, env=_env(project))
    assert again.returncode == 0 and "no interrupted executions" in again.stdout


@pytest.mark.slow
def test_recover_skips_an_execution_that_a_live_process_runs(project: Path) -> None:
    owner = flux_popen("exec", "flows.py", "squares", "--input", "10", cwd=project, env=_env(project, STEP_DELAY="0.1"))
    try:
        deadline = time.monotonic() + 30
        while not (project / "runs.log").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (execution_id,) = _ids(project)
        rows = recover_store(str(project / ".flux"))
        assert [(r.execution_id, r.status) for r in rows] == [(execution_id, "locked")]
        out, err = owner.communicate(timeout=60)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    assert owner.returncode == 0, err
    assert "output: 285" in out


@pytest.mark.slow
def test_two_recovers_at_once_resume_each_execution_exactly_once(project: Path) -> None:
    ids = [_interrupt_by_cutting(project, 8) for _ in range(6)]
    log = project / "runs.log"
    log.write_text("")
    env = {**os.environ, "PYTHONPATH": str(ROOT), **_env(project, STEP_DELAY="0.03")}
    racers = [
        subprocess.Popen([sys.executable, "-m", "flux", "recover"], cwd=project, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in racers]
    assert [p.returncode for p in racers] == [0, 0], outputs
    for execution_id in ids:
        records = read_journal(str(project / ".flux" / "executions" / f"{execution_id}.jsonl"), execution_id).records
        assert records[-1]["kind"] == "workflow_completed" and records[-1]["value"] == sum(i * i for i in range(8))
        assert [r["kind"] for r in records].count("workflow_resumed") == 1  # one owner, one resume
        claimed = sum(
            f"{execution_id}  " in out and "completed" in out.split(execution_id)[1].split("\n")[0]
            for out, _ in outputs
        )
        assert claimed == 1, outputs
    runs = log.read_text().split()
    assert len(runs) == len(set(runs))  # no task body ran twice


def test_recover_reports_a_damaged_journal_and_goes_on(project: Path) -> None:
    cut = _interrupt_by_cutting(project, 4)
    damaged = _interrupt_by_cutting(project, 4)
    path = project / ".flux" / "executions" / f"{damaged}.jsonl"
    data = bytearray(path.read_bytes())
    data[data.index(b"\n") + 5] ^= 1
    path.write_bytes(bytes(data))
    rows = {r.execution_id: r for r in recover_store(str(project / ".flux"), durability="os")}
    assert rows[cut].status == "completed" and rows[cut].context is not None and rows[cut].context.output == 14
    assert rows[damaged].status == "error" and "journal damaged" in str(rows[damaged].error)
    result = flux_cmd("recover", cwd=project, env=_env(project))
    assert result.returncode == 2 and damaged in result.stdout and "JournalCorruptError" in result.stdout


def test_recover_of_an_empty_store_does_nothing(tmp_path: Path) -> None:
    assert recover_store(str(tmp_path / "nothing")) == []
    assert FileStore(str(tmp_path / "nothing")).list_ids() == []
