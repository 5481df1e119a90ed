"""SIGKILL in the middle of a backoff wait, a fallback, a rollback and a saga's compensations,
then `flux resume`: the run finishes correctly and nothing the journal recorded as done runs again."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from flux._engine.clock import iso
from tests.conftest import flux_cmd
from tests.support.flows import flows_file
from tests.support.processes import exec_and_kill, wait_for
from tests.support.projects import journals, only_journal, run_env, run_log, write_project

FLOWS = flows_file(
    """
    LOG = os.environ["RUN_LOG"]
    SLOW = float(os.environ.get("SLOW", "0"))


    async def slow_fallback(x):
        log("fallback")
        await asyncio.sleep(SLOW)
        return x * 100


    async def slow_rollback(x):
        log("rollback")
        await asyncio.sleep(SLOW)


    @task.with_options(retry_max_attempts=1, retry_delay=3)
    async def flaky(x):
        log("flaky")
        if not os.path.exists(LOG + ".ok"):
            open(LOG + ".ok", "w").close()
            raise ConnectionError("first attempt fails")
        return x + 1


    @task.with_options(fallback=slow_fallback)
    async def with_fallback(x):
        log("body")
        raise ValueError("no")


    @task.with_options(rollback=slow_rollback)
    async def with_rollback(x):
        log("body")
        raise ValueError("no")


    @task
    async def book(n):
        log(f"book{n}")
        if n == 4:
            raise RuntimeError("step 4 fails")
        return f"ref{n}"


    @task
    async def cancel(ref):
        log(f"cancel-start:{ref}")
        await asyncio.sleep(SLOW)
        log(f"cancel:{ref}")


    @workflow
    async def backoff(ctx: ExecutionContext[int]):
        return await flaky(ctx.input)


    @workflow
    async def fallback(ctx: ExecutionContext[int]):
        return await with_fallback(ctx.input)


    @workflow
    async def rollback(ctx: ExecutionContext[int]):
        return await with_rollback(ctx.input)


    @workflow
    async def saga(ctx: ExecutionContext[None]):
        async with Saga() as s:
            for n in range(5):
                await s.step(book(n), compensate=cancel)
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path, FLOWS)


def _seconds(at: str) -> float:
    return dt.datetime.fromisoformat(at).timestamp()


def _kinds(project: Path) -> list[str]:
    """The kind of every complete record of the execution's journal (none before it exists)."""
    return [r["kind"] for recs in journals(project).values() for r in recs]


@pytest.mark.slow
def test_kill_during_a_backoff_wait_resumes_with_the_remaining_wait(project: Path) -> None:
    env = run_env(project)
    exec_and_kill(project, "backoff", "1", env, lambda: "attempt_failed" in _kinds(project), settle=1.0)
    assert run_log(project) == ["flaky"]
    execution_id = only_journal(project).stem
    retry_at = next(r for r in journals(project)[execution_id] if r["kind"] == "attempt_failed")["retry_at"]
    wait_for(lambda: time.time() > retry_at + 0.1, timeout=30, what="the recorded retry time")
    result = flux_cmd("resume", only_journal(project).stem, cwd=project, env=env)
    assert result.returncode == 0 and "output: 2" in result.stdout, result.stderr
    assert run_log(project) == ["flaky", "flaky"]  # the recorded attempt did not run again
    records = journals(project)[only_journal(project).stem]
    resumed = next(r for r in records if r["kind"] == "workflow_resumed")
    retried = next(r for r in records if r["kind"] == "retry_started")
    assert retried["at"] >= iso(retry_at)
    # Nothing was left of the 3 s wait: the resumed run retried at once instead of waiting 3 s
    # again (the records' own times, so the machine's load does not enter into it).
    assert _seconds(retried["at"]) - _seconds(resumed["at"]) < 3.0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fallback", "rollback"])
def test_kill_during_a_fallback_or_rollback_then_resume(project: Path, kind: str) -> None:
    env = run_env(project, SLOW="30")
    exec_and_kill(project, kind, "1", env, lambda: kind in run_log(project))
    assert run_log(project) == ["body", kind]
    result = flux_cmd("resume", only_journal(project).stem, cwd=project, env={**env, "SLOW": "0"})
    # The body's failure was recorded: only the interrupted handler runs again.
    assert run_log(project) == ["body", kind, kind]
    kinds = _kinds(project)
    assert kinds.count(f"{kind}_started") == 1
    if kind == "fallback":
        assert result.returncode == 0 and "output: 100" in result.stdout, result.stderr
    else:
        assert result.returncode == 1 and "ValueError" in result.stdout
        assert kinds[-3:] == ["rollback_completed", "task_failed", "workflow_failed"]


@pytest.mark.slow
def test_kill_during_saga_compensation_then_resume(project: Path) -> None:
    env = run_env(project, SLOW="0.3")
    exec_and_kill(project, "saga", "1", env, lambda: {"cancel:ref2", "cancel-start:ref1"} <= set(run_log(project)))
    before = run_log(project)
    assert before[:5] == ["book0", "book1", "book2", "book3", "book4"]
    result = flux_cmd("resume", only_journal(project).stem, cwd=project, env={**env, "SLOW": "0"})
    assert result.returncode == 1 and "step 4 fails" in result.stdout
    after = run_log(project)[len(before):]
    assert not [line for line in after if line.startswith("book")]
    assert "cancel:ref3" not in after and "cancel:ref2" not in after  # recorded as done before the kill
    finished = [line for line in run_log(project) if line.startswith("cancel:")]
    assert finished == ["cancel:ref3", "cancel:ref2", "cancel:ref1", "cancel:ref0"]
