"""`flux recover` (flux/recover.py): every interrupted execution is resumed, nothing else is
touched, and two recovers at once never run one execution twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flux._engine.journal import read_journal
from flux._engine.stores.files import FileStore
from flux.recover import recover_store
from tests.conftest import flux_cmd, flux_popen
from tests.support.flows import SQUARES, flows_file
from tests.support.journals import keep_lines
from tests.support.processes import exec_and_kill, wait_for
from tests.support.projects import execution_ids, executions, logged_calls, run_env, run_log, write_project

WORKFLOW = flows_file(
    SQUARES,
    """
    @task
    async def boom() -> None:
        raise ValueError("boom")


    @workflow
    async def failing(ctx: ExecutionContext[None]) -> None:
        await boom()
    """,
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_project(tmp_path, WORKFLOW)
    monkeypatch.setenv("RUN_LOG", str(tmp_path / "runs.log"))
    monkeypatch.setenv("FLUX_HOME", str(tmp_path / ".flux"))
    return tmp_path


def _env(project: Path, **extra: str) -> dict[str, str]:
    return run_env(project, FLUX_HOME=str(project / ".flux"), **extra)


def _status(project: Path) -> dict[str, str]:
    result = flux_cmd("list", cwd=project, env=_env(project))
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    return {row[0]: row[2] for row in rows}


def _exec(project: Path, *args: str) -> str:
    before = execution_ids(project)
    flux_cmd("exec", "flows.py", *args, cwd=project, env=_env(project))
    (new,) = execution_ids(project) - before
    return new


def _interrupt_by_cutting(project: Path, n: int) -> str:
    """A finished run of squares(n) whose last records are cut away, as a crash leaves it."""
    execution_id = _exec(project, "squares", "--input", str(n))
    path = executions(project) / f"{execution_id}.jsonl"
    keep_lines(path, len(path.read_bytes().splitlines()) // 2)
    return execution_id


def _final(project: Path, execution_id: str) -> dict[str, Any]:
    path = executions(project) / f"{execution_id}.jsonl"
    return read_journal(str(path), execution_id).records[-1]


@pytest.mark.slow
def test_recover_resumes_the_interrupted_executions_and_nothing_else(project: Path) -> None:
    completed = _exec(project, "squares", "--input", "3")
    paused = _exec(project, "gated", "--input", "2")
    failed = _exec(project, "failing")
    cut = _interrupt_by_cutting(project, 6)
    exec_and_kill(project, "squares", "30", _env(project, STEP_DELAY="0.02"), lambda: len(run_log(project)) >= 12)
    (killed,) = execution_ids(project) - {completed, paused, failed, cut}
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
        wait_for(lambda: (project / "runs.log").exists(), proc=owner, what="the first task body")
        (execution_id,) = execution_ids(project)
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
    racers = [flux_popen("recover", cwd=project, env=_env(project, STEP_DELAY="0.03")) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in racers]
    assert [p.returncode for p in racers] == [0, 0], outputs
    for execution_id in ids:
        records = read_journal(str(executions(project) / f"{execution_id}.jsonl"), execution_id).records
        assert records[-1]["kind"] == "workflow_completed" and records[-1]["value"] == sum(i * i for i in range(8))
        assert [r["kind"] for r in records].count("workflow_resumed") == 1  # one owner, one resume
        claimed = sum(
            f"{execution_id}  " in out and "completed" in out.split(execution_id)[1].split("\n")[0]
            for out, _ in outputs
        )
        assert claimed == 1, outputs
    runs = [key for key, _ in logged_calls(project)]
    assert len(runs) == len(set(runs))  # no task body ran twice


@pytest.mark.slow
def test_recover_reports_a_damaged_journal_and_goes_on(project: Path) -> None:
    cut = _interrupt_by_cutting(project, 4)
    damaged = _interrupt_by_cutting(project, 4)
    path = executions(project) / f"{damaged}.jsonl"
    data = bytearray(path.read_bytes())
    data[data.index(b"\n") + 5] ^= 1
    path.write_bytes(bytes(data))
    # The file is named: code loaded in this process wins over a journal's recorded file (SPEC.md
    # 7), and the tests before this one may have loaded another project's flows.squares.
    rows = {
        r.execution_id: r
        for r in recover_store(str(project / ".flux"), durability="os", file=str(project / "flows.py"))
    }
    assert rows[cut].status == "completed", rows[cut].error
    assert rows[cut].context is not None and rows[cut].context.output == 14
    assert rows[damaged].status == "error" and "journal damaged" in str(rows[damaged].error)
    result = flux_cmd("recover", cwd=project, env=_env(project))
    assert result.returncode == 2 and damaged in result.stdout and "JournalCorruptError" in result.stdout


def test_recover_of_an_empty_store_does_nothing(tmp_path: Path) -> None:
    assert recover_store(str(tmp_path / "nothing")) == []
    assert FileStore(str(tmp_path / "nothing")).list_ids() == []
