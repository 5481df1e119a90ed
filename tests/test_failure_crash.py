"""SIGKILL in the middle of a backoff wait, a fallback, a rollback and a saga's compensations,
then `flux resume`: the run finishes correctly and nothing the journal recorded as done runs again."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import flux_cmd, flux_popen

FLOWS = textwrap.dedent(
    """
    import asyncio
    import os

    from flux import ExecutionContext, Saga, task, workflow

    LOG = os.environ["RUN_LOG"]
    SLOW = float(os.environ.get("SLOW", "0"))


    def log(line):
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, line.encode() + b"\\n")
        os.close(fd)


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
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


def _journal(project: Path) -> Path:
    (path,) = (project / ".flux" / "executions").glob("*.jsonl")
    return path


def _kinds(path: Path) -> list[str]:
    return [orjson.loads(line)["kind"] for line in path.read_bytes().splitlines() if line.endswith(b"}")]


def _log(project: Path) -> list[str]:
    path = project / "runs.log"
    return path.read_text().split() if path.exists() else []


def _run_and_kill(project: Path, workflow: str, until, env: dict[str, str], settle: float = 0.0) -> None:
    proc = flux_popen("exec", "flows.py", workflow, "--input", "1", cwd=project, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            journals = list((project / ".flux" / "executions").glob("*.jsonl")) if (project / ".flux").exists() else []
            if journals and until(_kinds(journals[0]), _log(project)):
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)
        time.sleep(settle)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)


@pytest.mark.slow
def test_kill_during_a_backoff_wait_resumes_with_the_remaining_wait(project: Path) -> None:
    env = {"RUN_LOG": str(project / "runs.log")}
    _run_and_kill(project, "backoff", lambda kinds, log: "attempt_failed" in kinds, env, settle=1.0)
    assert _log(project) == ["flaky"]
    started = time.monotonic()
    result = flux_cmd("resume", _journal(project).stem, cwd=project, env=env)
    took = time.monotonic() - started
    assert result.returncode == 0 and "output: 2" in result.stdout, result.stderr
    assert _log(project) == ["flaky", "flaky"]  # the recorded attempt did not run again
    assert 1.0 < took < 2.9  # about 2 s of the 3 s wait were left


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fallback", "rollback"])
def test_kill_during_a_fallback_or_rollback_then_resume(project: Path, kind: str) -> None:
    env = {"RUN_LOG": str(project / "runs.log"), "SLOW": "30"}
    _run_and_kill(project, kind, lambda kinds, log: kind in log, env)
    assert _log(project) == ["body", kind]
    result = flux_cmd("resume", _journal(project).stem, cwd=project, env={**env, "SLOW": "0"})
    # The body's failure was recorded: only the interrupted handler runs again.
    assert _log(project) == ["body", kind, kind]
    kinds = _kinds(_journal(project))
    assert kinds.count(f"{kind}_started") == 1
    if kind == "fallback":
        assert result.returncode == 0 and "output: 100" in result.stdout, result.stderr
    else:
        assert result.returncode == 1 and "ValueError" in result.stdout
        assert kinds[-3:] == ["rollback_completed", "task_failed", "workflow_failed"]


@pytest.mark.slow
def test_kill_during_saga_compensation_then_resume(project: Path) -> None:
    env = {"RUN_LOG": str(project / "runs.log"), "SLOW": "0.3"}
    _run_and_kill(project, "saga", lambda kinds, log: "cancel:ref2" in log and "cancel-start:ref1" in log, env)
    before = _log(project)
    assert before[:5] == ["book0", "book1", "book2", "book3", "book4"]
    result = flux_cmd("resume", _journal(project).stem, cwd=project, env={**env, "SLOW": "0"})
    assert result.returncode == 1 and "step 4 fails" in result.stdout
    after = _log(project)[len(before):]
    assert not [line for line in after if line.startswith("book")]
    assert "cancel:ref3" not in after and "cancel:ref2" not in after  # recorded as done before the kill
    finished = [line for line in _log(project) if line.startswith("cancel:")]
    assert finished == ["cancel:ref3", "cancel:ref2", "cancel:ref1", "cancel:ref0"]
