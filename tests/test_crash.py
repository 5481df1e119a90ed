"""Real crashes: `flux exec` killed with SIGKILL, resumed with `flux resume`; racing resumers;
a workflow whose source changed between run and resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import flux_cmd, flux_popen
from tests.support.flows import SQUARES, flows_file
from tests.support.journals import records_so_far
from tests.support.processes import kill_when
from tests.support.projects import count_records, executions, logged_calls, only_journal, run_env, write_project

WORKFLOW = flows_file(SQUARES)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path, WORKFLOW)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_result(project: Path) -> None:
    env = run_env(project, STEP_DELAY="0.02")
    proc = flux_popen("exec", "flows.py", "squares", "--input", "30", cwd=project, env=env)
    kill_when(proc, lambda: count_records(project, "task_completed") >= 10)
    journal = only_journal(project)
    before = records_so_far(journal)
    completed_before = {r["call_id"] for r in before if r["kind"] == "task_completed"}
    assert 10 <= len(completed_before) < 30
    runs_before = [i for _, i in logged_calls(project)]
    result = flux_cmd("resume", journal.stem, cwd=project, env={**env, "STEP_DELAY": "0"})
    assert result.returncode == 0, result.stderr
    assert "status: completed" in result.stdout
    assert f"output: {sum(i * i for i in range(30))}" in result.stdout
    runs_after = [i for _, i in logged_calls(project)][len(runs_before):]
    # Task i has call id str(i + 1); none whose completion was recorded ran again.
    assert not {str(int(i) + 1) for i in runs_after} & completed_before
    assert sorted(set(runs_before + runs_after), key=int) == [str(i) for i in range(30)]


@pytest.mark.slow
def test_two_processes_resuming_one_execution_exactly_one_runs(project: Path) -> None:
    env = run_env(project, STEP_DELAY="0")
    first = flux_cmd("exec", "flows.py", "gated", "--input", "5", cwd=project, env=env)
    assert first.returncode == 0 and "status: paused" in first.stdout, first.stderr
    execution_id = only_journal(project).stem
    slow = {**env, "STEP_DELAY": "1.5"}
    racers = [flux_popen("resume", execution_id, "--input", '"yes"', cwd=project, env=slow) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in racers]
    codes = sorted(p.returncode for p in racers)
    assert codes == [0, 2], outputs
    loser = next(err for (out, err), p in zip(outputs, racers, strict=False) if p.returncode == 2)
    assert "ExecutionLockedError" in loser and "pid" in loser
    winner = next(out for (out, err), p in zip(outputs, racers, strict=False) if p.returncode == 0)
    assert 'output: [25,"yes",36]' in winner
    assert [i for _, i in logged_calls(project)] == ["5", "6"]


@pytest.mark.slow
def test_changing_a_task_call_between_run_and_resume_is_reported_at_that_call(project: Path) -> None:
    env = run_env(project, STEP_DELAY="0")
    first = flux_cmd("exec", "flows.py", "gated", "--input", "5", cwd=project, env=env)
    assert "status: paused" in first.stdout, first.stderr
    journal = only_journal(project)
    before = journal.read_bytes()
    source = project / "flows.py"
    source.write_text(WORKFLOW.replace("first = await work(ctx.input)", "first = await work(ctx.input + 100)"))
    result = flux_cmd("resume", journal.stem, "--input", "1", cwd=project, env=env)
    assert result.returncode == 2
    message = result.stderr
    assert "NondeterminismError" in message
    assert f"{journal.stem}.jsonl:3" in message  # path:line of the recorded call (header, started, task)
    assert "work(105)" in message and "work(5)" in message
    assert "flows.py:" in message and "call 1" in message
    assert journal.read_bytes() == before  # nothing written
    replay = flux_cmd("replay", journal.stem, cwd=project, env=env)
    assert replay.returncode == 2 and "NondeterminismError" in replay.stderr
    # Named by its path, a journal's recorded code is not imported unless asked for.
    by_path = flux_cmd("replay", str(journal), cwd=project, env=env)
    assert by_path.returncode == 2 and "WorkflowLoadError" in by_path.stderr and "file=PATH" in by_path.stderr
    assert flux_cmd("replay", str(journal), "--file", str(project / "flows.py"), cwd=project, env=env).returncode == 2


@pytest.mark.slow
def test_exec_reports_bad_input_in_one_line_with_exit_2(project: Path) -> None:
    cases = [
        (("exec", "missing.py", "squares"), "no such file"),
        (("exec", "flows.py", "nope"), "workflows found: gated, squares"),
        (("exec", "flows.py", "squares", "--input", "{"), "--input is not valid JSON"),
        (("resume", "no-such-id"), "no execution 'no-such-id'"),
        (("resume", "../etc"), "invalid execution id"),
        (("show", "nope"), "no execution 'nope'"),
    ]
    for args, expected in cases:
        result = flux_cmd(*args, cwd=project, env={"RUN_LOG": str(project / "log")})
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_failed_workflow_exits_1(project: Path) -> None:
    (project / "bad.py").write_text(
        "from flux import workflow, task\n@task\nasync def t():\n    raise KeyError('k')\n"
        "@workflow\nasync def w(ctx):\n    return await t()\n"
    )
    result = flux_cmd("exec", "bad.py", "w", cwd=project)
    assert result.returncode == 1
    assert "status: failed" in result.stdout and "KeyError" in result.stdout


@pytest.mark.slow
def test_damaged_journal_is_reported_with_path_and_line_and_left_alone(project: Path) -> None:
    env = run_env(project, STEP_DELAY="0")
    flux_cmd("exec", "flows.py", "gated", "--input", "2", cwd=project, env=env)
    journal = only_journal(project)
    data = bytearray(journal.read_bytes())
    second_line = data.index(b"\n") + 10
    data[second_line] ^= 0x01
    journal.write_bytes(bytes(data))
    result = flux_cmd("resume", journal.stem, cwd=project, env=env)
    assert result.returncode == 2
    assert "JournalCorruptError" in result.stderr and f"{journal.name}:2" in result.stderr
    assert journal.read_bytes() == bytes(data)


@pytest.mark.slow
def test_show_and_list_describe_the_execution(project: Path) -> None:
    env = run_env(project, STEP_DELAY="0")
    flux_cmd("exec", "flows.py", "gated", "--input", "2", cwd=project, env=env)
    execution_id = only_journal(project).stem
    listing = flux_cmd("list", cwd=project)
    assert execution_id in listing.stdout and "paused" in listing.stdout and "gated" in listing.stdout
    shown = flux_cmd("show", execution_id, "--records", cwd=project)
    assert shown.returncode == 0
    for word in ("task_started", "task_completed", "workflow_paused", "work", "flows.py:"):
        assert word in shown.stdout
    resumed = flux_cmd("resume", execution_id, "--input", '{"ok": true}', cwd=project, env=env)
    assert 'output: [4,{"ok":true},9]' in resumed.stdout
    replay = flux_cmd("replay", only_journal(project).stem, cwd=project, env=env)
    assert replay.returncode == 0 and "reproduces the recorded output" in replay.stdout


def test_paused_exec_prints_the_resume_command(project: Path) -> None:
    result = flux_cmd("exec", "flows.py", "gated", "--input", "1", cwd=project, env={"RUN_LOG": str(project / "l")})
    execution_id = only_journal(project).stem
    assert f"flux resume {execution_id}" in result.stdout


@pytest.mark.slow
def test_resume_finds_the_code_from_another_directory_and_moved_code_with_file(project: Path, tmp_path: Path) -> None:
    env = run_env(project, STEP_DELAY="0", FLUX_HOME=str(project / ".flux"))
    flux_cmd("exec", "flows.py", "gated", "--input", "3", cwd=project, env=env)
    execution_id = only_journal(project).stem
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / "flows_moved.py"
    (project / "flows.py").rename(moved)
    missing = flux_cmd("resume", execution_id, cwd=elsewhere, env=env)
    assert missing.returncode == 2 and "file=PATH" in missing.stderr
    result = flux_cmd("resume", execution_id, "--file", str(moved), "--input", "0", cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    assert "output: [9,0,16]" in result.stdout


@pytest.mark.slow
def test_input_file_is_read_and_a_bad_one_named(project: Path) -> None:
    (project / "in.json").write_text("2")
    (project / "bad.json").write_text("[1,")
    env = run_env(project, STEP_DELAY="0")
    ok = flux_cmd("exec", "flows.py", "squares", "--input-file", "in.json", cwd=project, env=env)
    assert ok.returncode == 0 and "output: 1" in ok.stdout, ok.stderr
    bad = flux_cmd("exec", "flows.py", "squares", "--input-file", "bad.json", cwd=project, env=env)
    assert bad.returncode == 2 and "bad.json is not valid JSON" in bad.stderr


@pytest.mark.slow
def test_a_symlinked_journal_is_listed_as_damaged_and_refused_in_one_line(project: Path, tmp_path: Path) -> None:
    env = run_env(project, STEP_DELAY="0")
    flux_cmd("exec", "flows.py", "squares", "--input", "1", cwd=project, env=env)
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("not a journal\n")
    (executions(project) / "evil.jsonl").symlink_to(target)
    listing = flux_cmd("list", cwd=project)
    assert listing.returncode == 0 and "evil" in listing.stdout and "damaged" in listing.stdout
    assert "completed" in listing.stdout  # the real execution is still listed
    for command in (("resume", "evil"), ("show", "evil")):
        result = flux_cmd(*command, cwd=project)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "UnsafePathError" in lines[0] and "symbolic link" in lines[0]
    assert target.read_text() == "not a journal\n"
