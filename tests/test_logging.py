"""What the library tells `logging.getLogger("flux")`: starts, retries with their delay, sleeps,
pauses, resumes, ends, recoveries and waits on another process (SPEC.md 4.12)."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from flux import ExecutionContext, task, workflow
from flux.client import Client
from flux.recover import recover_store
from flux.tasks import pause, sleep
from tests.conftest import flux_cmd, flux_popen
from tests.support.flows import SQUARES, flows_file
from tests.support.processes import wait_for
from tests.support.projects import execution_ids, run_env, write_project

ATTEMPTS: dict[str, int] = {}


@task.with_options(retry_max_attempts=2, retry_delay=0.01)
async def shaky(key: str) -> str:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] == 1:
        raise ConnectionError("first try fails")
    return key


@workflow
async def logged(ctx: ExecutionContext[str]) -> list[str]:
    first = await shaky(ctx.input)
    await sleep(0.01)
    answer = await pause("approve")
    return [first, answer]


@workflow
async def explodes(ctx: ExecutionContext[None]) -> None:
    raise RuntimeError("no")


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "flux"]


def test_the_life_of_an_execution_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flux")

    async def go() -> str:
        client = Client(str(tmp_path / ".flux"), durability="os")
        handle = await client.start(logged, "k1")
        paused = await handle.result()
        assert str(paused.status) == "paused"
        resumed = await client.resume(handle.execution_id, "yes")
        assert (await resumed.result()).output == ["k1", "yes"]
        failed = await client.start(explodes, None)
        await failed.result()
        return f"{handle.execution_id} {failed.execution_id}"

    first, second = asyncio.run(go()).split()
    lines = _messages(caplog)
    expected = [
        f"execution {first} of workflow 'logged' started",
        f"execution {first}: task 'shaky' (call 1) attempt 0 failed (ConnectionError: first try fails); "
        "retrying in 0.01 s",
        f"execution {first} paused",
        f"execution {first} resumed at pause 'approve' (call 3)",
        f"execution {first} completed",
        f"execution {second} of workflow 'explodes' started",
        f"execution {second} failed: RuntimeError: no",
    ]
    assert [line for line in lines if line in expected] == expected, lines


def test_a_recovery_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flux")
    store = str(tmp_path / ".flux")

    async def start() -> str:
        handle = await Client(store, durability="os").start(logged, "k2")
        await handle.result()
        return handle.execution_id

    execution_id = asyncio.run(start())
    journal = tmp_path / ".flux" / "executions" / f"{execution_id}.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:4]))  # cut before the task's outcome: interrupted
    [row] = recover_store(store, durability="os")
    assert row.status == "paused", row.error
    assert f"recovered execution {execution_id} of workflow 'logged': paused" in _messages(caplog)
    assert any(
        m.startswith(f"execution {execution_id} of workflow 'logged' continued after ") for m in _messages(caplog)
    )


@pytest.mark.slow
def test_a_cancel_that_waits_for_another_process_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flux")
    write_project(tmp_path, flows_file(SQUARES))
    env = run_env(tmp_path, FLUX_HOME=str(tmp_path / ".flux"), STEP_DELAY="0.2")
    owner = flux_popen("exec", "flows.py", "squares", "--input", "50", cwd=tmp_path, env=env)
    try:
        wait_for(lambda: (tmp_path / "runs.log").exists(), proc=owner, what="the first task body")
        (execution_id,) = execution_ids(tmp_path)
        status = asyncio.run(Client(str(tmp_path / ".flux")).cancel(execution_id, wait=60))
        owner.communicate(timeout=60)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    assert status == "cancelled"
    [line] = [m for m in _messages(caplog) if "asked it to cancel" in m]
    assert line == (
        f"execution {execution_id} runs in another process (pid {owner.pid}, host {socket.gethostname()}); "
        "asked it to cancel, waiting up to 60 s"
    )


@pytest.mark.slow
def test_flux_debug_shows_the_log_on_stderr(tmp_path: Path) -> None:
    write_project(tmp_path, flows_file(SQUARES))
    env = run_env(tmp_path, FLUX_HOME=str(tmp_path / ".flux"))
    quiet = flux_cmd("exec", "flows.py", "squares", "--input", "2", cwd=tmp_path, env=env)
    assert quiet.returncode == 0 and " flux INFO " not in quiet.stderr
    loud = flux_cmd("--debug", "exec", "flows.py", "squares", "--input", "2", cwd=tmp_path, env=env)
    assert loud.returncode == 0, loud.stderr
    assert "output: 1" in loud.stdout
    logged = [line.split(" flux INFO ", 1)[1] for line in loud.stderr.splitlines() if " flux INFO " in line]
    assert [line.split(" ", 2)[2] for line in logged] == ["of workflow 'squares' started", "completed"]
