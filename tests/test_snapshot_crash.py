"""Replay snapshots under real SIGKILLs: a resume killed after any of its syncs, including the
last one before its snapshot is saved, resumes again to the uninterrupted output; the snapshot
left by the earlier pause still serves for the prefix it covers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux._engine.snapshot import Snapshot
from tests.conftest import flux_cmd
from tests.support.flows import flows_file
from tests.support.projects import executions, only_journal, run_env, run_log, write_project

FLOWS = flows_file(
    """
    @task
    async def step(i: int) -> int:
        log(str(i))
        return i * i


    @workflow
    async def two_pauses(ctx: ExecutionContext[int]) -> list:
        out = [await step(i) for i in range(ctx.input)]
        first = await pause("first")
        out += [await step(100 + i) for i in range(ctx.input)]
        second = await pause("second")
        out.append(await step(1000))
        return [out, first, second]
    """
)
TASKS = 8
EXPECTED = [[i * i for i in range(TASKS)] + [(100 + i) ** 2 for i in range(TASKS)] + [1000 * 1000], "a", "b"]


def _paused_at_first(project: Path) -> str:
    write_project(project, FLOWS)
    done = flux_cmd("exec", "flows.py", "two_pauses", "--input", str(TASKS), cwd=project, env=_env(project))
    assert done.returncode == 0, done.stderr
    journal = only_journal(project)
    assert journal.with_suffix(".index").exists()
    return journal.stem


def _env(project: Path, **extra: str) -> dict[str, str]:
    return run_env(project, FLUX_HOME=str(project / ".flux"), **extra)


def _last(project: Path, execution_id: str) -> dict[str, Any]:
    journal = executions(project) / f"{execution_id}.jsonl"
    return orjson.loads(journal.read_bytes().splitlines()[-1])


def _syncs_of_the_resume(tmp_path: Path) -> int:
    """How many syncs the resume from the first pause to the second makes, counted on a copy."""
    project = tmp_path / "count"
    project.mkdir()
    execution_id = _paused_at_first(project)
    log = project / "syncs.log"
    done = flux_cmd(
        "resume", execution_id, "--input", '"a"', cwd=project, env=_env(project, FLUX_TEST_SYNC_LOG=str(log))
    )
    assert done.returncode == 0, done.stderr
    return len(log.read_text().splitlines())


@pytest.mark.slow
def test_a_resume_killed_after_any_sync_resumes_to_the_same_output(tmp_path: Path) -> None:
    syncs = _syncs_of_the_resume(tmp_path)
    assert syncs >= TASKS
    for kill_at in sorted({1, 2, syncs // 2, syncs - 1, syncs}):
        project = tmp_path / f"kill-{kill_at}"
        project.mkdir()
        execution_id = _paused_at_first(project)
        snapshot_path = executions(project) / f"{execution_id}.index"
        first_snapshot = Snapshot.parse(snapshot_path.read_bytes(), execution_id)
        assert first_snapshot is not None

        killed = flux_cmd(
            "resume", execution_id, "--input", '"a"', cwd=project,
            env=_env(project, FLUX_TEST_FAULTS=f"kill:{kill_at}:after_fsync"),
        )
        assert killed.returncode == -9, (kill_at, killed.returncode, killed.stderr)
        # Killed after its last sync, the resume never saved its own snapshot: the first pause's
        # is still there, and covers only the journal's prefix.
        assert Snapshot.parse(snapshot_path.read_bytes(), execution_id) == first_snapshot

        state = _last(project, execution_id)
        if state.get("name") == "first":  # killed before the resume input was recorded
            again = flux_cmd("resume", execution_id, "--input", '"a"', cwd=project, env=_env(project))
        elif state["kind"] != "workflow_paused":  # interrupted: a plain resume goes on
            again = flux_cmd("resume", execution_id, cwd=project, env=_env(project))
        else:  # killed after its last sync: already waiting at the second pause
            again = None
        assert again is None or again.returncode == 0, (kill_at, again.stderr)
        assert _last(project, execution_id)["name"] == "second"
        second = Snapshot.parse(snapshot_path.read_bytes(), execution_id)
        if again is None:  # the first pause's snapshot serves the last resume, for its prefix only
            assert second == first_snapshot
        else:
            assert second is not None and second.size > first_snapshot.size

        done = flux_cmd("resume", execution_id, "--input", '"b"', cwd=project, env=_env(project))
        assert done.returncode == 0, (kill_at, done.stderr)
        last = _last(project, execution_id)
        assert (last["kind"], last["value"]) == ("workflow_completed", EXPECTED), kill_at
        assert not snapshot_path.exists()
        # At-least-once bodies: only a step running when the process died may have run twice.
        ran = run_log(project)
        assert len(ran) - len(set(ran)) <= 1, (kill_at, ran)
        shutil.rmtree(project)
