"""`flux serve` beside other processes on one file store: executions another process runs or ran
(locked, interrupted, recorded by other code), durability trouble, the command line, and the
imports `flux` itself never makes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import flux_cmd, flux_popen
from tests.serve_helpers import ROOT, WORKFLOWS, Server, free_port, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("shared")
    running = Server(str(tmp / "store"), tmp)
    yield running, tmp
    running.stop()


def _problem(response: httpx.Response, status: int, error: str) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["error"] == error
    return body  # type: ignore[no-any-return]


def test_an_execution_run_by_another_process_is_locked_and_can_be_cancelled(shared: tuple[Server, Path]) -> None:
    server, tmp = shared
    other = flux_popen(
        "exec",
        str(WORKFLOWS),
        "slow",
        "--input",
        "60",
        "--id",
        "elsewhere",
        "--store",
        server.store,
        "--durability",
        "os",
        cwd=tmp,
    )
    try:
        with server.client() as api:
            wait_for(
                lambda: (
                    api.get("/api/v1/executions/elsewhere").status_code == 200
                    and api.get("/api/v1/executions/elsewhere").json()["pending"]["running"]
                ),
                what="the other process to run it",
            )
            data = api.get("/api/v1/executions/elsewhere").json()
            assert data["status"] == "running" and data["owner"]["pid"] == other.pid
            locked = _problem(
                api.post("/api/v1/executions/elsewhere/resume", json={"input": 1}), 409, "ExecutionLockedError"
            )
            assert locked["owner"]["pid"] == other.pid and f"pid {other.pid}" in locked["detail"]
            cancelled = api.post("/api/v1/executions/elsewhere/cancel", params={"wait": 30}).json()
            assert cancelled["status"] == "cancelled"
        other.communicate(timeout=30)
        assert other.returncode == 1  # its own `flux exec` reports the cancellation
    finally:
        if other.poll() is None:
            other.kill()
        other.communicate()


def test_an_interrupted_execution_is_listed_and_continued_by_resume(shared: tuple[Server, Path]) -> None:
    server, tmp = shared
    other = flux_popen(
        "exec",
        str(WORKFLOWS),
        "slow",
        "--input",
        "1.5",
        "--id",
        "killed",
        "--store",
        server.store,
        "--durability",
        "os",
        cwd=tmp,
    )
    with server.client() as api:
        wait_for(
            lambda: (
                api.get("/api/v1/executions/killed").status_code == 200
                and api.get("/api/v1/executions/killed").json()["pending"]["running"]
            ),
            what="the body to start",
        )
        other.send_signal(signal.SIGKILL)
        other.communicate()
        row = wait_for(
            lambda: [
                r
                for r in api.get("/api/v1/executions", params={"prefix": "killed"}).json()["items"]
                if r["status"] == "interrupted"
            ],
            what="interrupted",
        )
        assert row[0]["execution_id"] == "killed"
        done = api.post("/api/v1/executions/killed/resume", params={"wait": 20}).json()
        assert done["status"] == "completed" and done["output"] == 1.5
        records = [json.loads(line) for line in api.get("/api/v1/executions/killed/records").text.splitlines()]
        assert [r["kind"] for r in records].count("task_started") == 1  # the body ran again; recorded once


def test_a_journal_of_other_code_is_shown_diverged_by_replay(shared: tuple[Server, Path]) -> None:
    server, tmp = shared
    old = tmp / "old_code"
    old.mkdir(exist_ok=True)
    (old / "approval_v1.py").write_text(
        textwrap.dedent("""
        from flux import task, workflow
        from flux.tasks import pause

        @task
        async def audit(n: int) -> int:
            return n

        @workflow
        async def approval(ctx):
            await audit(7)
            return await pause("approve")
    """)
    )
    made = flux_cmd(
        "exec", str(old / "approval_v1.py"), "approval", "--id", "old-run", "--store", server.store, cwd=tmp
    )
    assert "status: paused" in made.stdout, made.stderr
    with server.client() as api:
        assert api.get("/api/v1/executions/old-run").json()["diverged"] is False
        result = api.post("/api/v1/executions/old-run/replay").json()
        assert result["status"] == "diverged" and result["call_id"] == "1" and result["seq"] == 2
        assert result["recorded"]["name"] == "audit" and result["current"]["name"] == "step"
        assert result["recorded"]["src"] == "approval_v1.py:11" and result["current"]["src"].startswith(
            "serve_workflows.py:"
        )
        data = api.get("/api/v1/executions/old-run").json()
        assert data["diverged"] is True and data["divergence"]["call_id"] == "1" and data["status"] == "paused"
        row = api.get("/api/v1/executions", params={"prefix": "old-run"}).json()["items"][0]
        assert row["diverged"] is True
        refused = _problem(
            api.post("/api/v1/executions/old-run/resume", params={"wait": 10}, json={"input": True}),
            409,
            "NondeterminismError",
        )
        assert "audit" in refused["detail"] and "step" in refused["detail"]
        after = api.get("/api/v1/executions/old-run/records").text.splitlines()
        assert len(after) == data["records"], "a divergence writes nothing"


def test_a_failed_journal_write_is_503(tmp_path: Path) -> None:
    broken = Server(str(tmp_path / "store"), tmp_path, env={"FLUX_TEST_FAULTS": "fail:1:write:EIO"})
    try:
        with broken.client() as api:
            body = _problem(
                api.post("/api/v1/workflows/greet/executions", params={"wait": 10}, content="1"), 503, "DurabilityError"
            )
            assert "Input/output error" in body["detail"] or "EIO" in body["detail"] or "I/O" in body["detail"]
            assert api.get("/healthz").status_code == 200
    finally:
        broken.stop()


def test_bad_command_lines_print_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = flux_cmd("serve", "nowhere.py", "--store", str(tmp_path / "s"), "--port", str(free_port()), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("WorkflowLoadError:") and len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "empty.py").write_text("X = 1\n")
    none = flux_cmd("serve", str(tmp_path / "empty.py"), "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert none.returncode == 2 and "defines no workflow" in none.stderr
    port = flux_cmd("serve", "--store", str(tmp_path / "s"), "--port", "70000", cwd=tmp_path)
    assert port.returncode == 2 and "--port 70000" in port.stderr


def test_flux_and_flux_exec_never_import_the_server(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        import flux, flux.client, flux.runner, flux.journals, flux.debug
        from flux._cli.main import app
        try:
            app(["exec", {str(WORKFLOWS)!r}, "greet", "--input", "2", "--store", {str(tmp_path / "s")!r}])
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        heavy = ("fastapi", "starlette", "uvicorn", "httpx", "swagger_ui_bundle")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith("flux.serve")))
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
