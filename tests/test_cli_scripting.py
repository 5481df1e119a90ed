"""The command line as scripts use it: --json shapes, listing filters and pages, `flux show`'s
details, id prefixes, input from standard input, global options, completion, store discovery and
the progress line on a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.cli import Invoked, invoke
from tests.support.journals import keep_lines, records
from tests.support.processes import kill_when

FLOWS = '''
import asyncio
from flux import ExecutionContext, task, workflow
from flux.tasks import call, pause, sleep

@task
async def double(x: int) -> int:
    return 2 * x

@task
async def slow(i: int) -> int:
    await asyncio.sleep(0.4)
    return i

@task.with_options(retry_max_attempts=2, retry_delay=0.3)
async def flaky(x: int) -> int:
    raise ValueError(f"flaky {x}")

@workflow
async def echo(ctx: ExecutionContext):
    await double(1)
    return ctx.input

@workflow
async def broken(ctx: ExecutionContext[int]) -> int:
    await double(ctx.input)
    raise RuntimeError("workflow code broke")

@workflow
async def asks(ctx: ExecutionContext[int]) -> int:
    answer = await pause("approve")
    return answer + ctx.input

@workflow
async def naps(ctx: ExecutionContext[int]) -> int:
    await double(ctx.input)
    await sleep(3600)
    return 1

@workflow
async def child(ctx: ExecutionContext[int]) -> int:
    return await double(ctx.input)

@workflow
async def parent(ctx: ExecutionContext[int]) -> int:
    return await call(child, ctx.input)

@workflow
async def steps(ctx: ExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await slow(i)
    try:
        await flaky(1)
    except Exception:
        pass
    return total
'''

EXECUTION_KEYS = {
    "execution_id", "workflow", "status", "input", "output", "error", "created", "updated", "records", "path",
    "parent", "children", "waiting", "timers", "forked_from", "divergence", "schedule",
}
CALL_KEYS = {"call_id", "kind", "name", "seq", "src", "args", "kwargs", "outcome", "attempts", "duration_ms",
             "end_seq", "started_at", "ended_at"}
ROW_KEYS = {"execution_id", "workflow", "status", "created", "records", "parent", "schedule"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLUX_HOME", raising=False)
    monkeypatch.delenv("FLUX_STORE", raising=False)
    return tmp_path


def flux(*args: str, input: str | None = None) -> Invoked:
    return invoke(*args, input=input)


def as_json(result: Invoked) -> Any:
    return orjson.loads(result.stdout)


def exec_json(*args: str) -> dict[str, Any]:
    result = flux("exec", "flows.py", *args, "--json")
    assert result.stderr == "" or "Error" not in result.stderr, result.stderr
    return dict(as_json(result))


# -- --json shapes ------------------------------------------------------------------------------


def test_exec_json_has_the_execution_shape_and_never_cuts_the_output(project: Path) -> None:
    long = "x" * 5000
    shape = exec_json("echo", "--input", f'{{"text": "{long}", "big": {2**70}}}')
    assert set(shape) == EXECUTION_KEYS
    assert shape["status"] == "completed" and shape["workflow"] == "echo" and shape["error"] is None
    assert shape["output"] == {"text": long, "big": {"$int": str(2**70)}}  # recorded form (SPEC.md 3)
    text = flux("exec", "flows.py", "echo", "--input", orjson.dumps(long).decode())
    assert text.exit_code == 0
    assert f'output: "{long}"' in text.stdout  # the whole value, as JSON


def test_a_failure_in_workflow_code_shows_its_traceback(project: Path) -> None:
    failed = flux("exec", "flows.py", "broken", "--input", "3", "--json")
    assert failed.exit_code == 1
    shape = as_json(failed)
    assert shape["status"] == "failed" and shape["output"] is None
    assert shape["error"]["type"] == "RuntimeError" and shape["error"]["message"] == "workflow code broke"
    tb = shape["error"]["traceback"]
    assert tb.startswith("Traceback (most recent call last):\n") and 'flows.py", line' in tb
    assert 'raise RuntimeError("workflow code broke")' in tb
    assert "executor.py" not in tb and "no running event loop" not in tb  # the user's frames only
    shown = flux("show", shape["execution_id"])
    assert shown.exit_code == 0
    assert "error: RuntimeError: workflow code broke" in shown.stdout
    assert 'raise RuntimeError("workflow code broke")' in shown.stdout
    assert "double(3)" in shown.stdout and "→ 6" in shown.stdout


def test_show_json_pins_the_shape_with_calls(project: Path) -> None:
    done = exec_json("echo", "--input", "5")
    shown = flux("show", done["execution_id"], "--json")
    shape = as_json(shown)
    assert set(shape) == EXECUTION_KEYS | {"calls"}
    (call,) = shape["calls"]
    assert CALL_KEYS <= set(call) and call["name"] == "double" and call["value"] == 2
    assert call["outcome"] == "completed" and call["args"] == [1]


def test_show_names_the_waiting_pause_the_timer_and_the_parent_and_children(project: Path) -> None:
    paused = exec_json("asks", "--input", "1")
    assert paused["status"] == "paused"
    assert paused["waiting"] == [{"name": "approve", "call_id": "1", "execution_id": paused["execution_id"]}]
    assert "waiting at pause 'approve' (call 1)" in flux("show", paused["execution_id"]).stdout

    napping = subprocess.Popen(
        [sys.executable, "-m", "flux", "exec", "flows.py", "naps", "--input", "2", "--id", "napping"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    journal = project / ".flux" / "executions" / "napping.jsonl"
    kill_when(napping, lambda: journal.exists() and b'"timer_started"' in journal.read_bytes())
    nap = as_json(flux("show", "napping", "--json"))
    assert nap["status"] == "interrupted"
    assert len(nap["timers"]) == 1 and nap["timers"][0]["call_id"] == "2"
    assert f"timer: call 2 fires at {nap['timers'][0]['wake_at']}" in flux("show", "napping").stdout

    top = exec_json("parent", "--input", "4")
    assert top["output"] == 8
    (child_id,) = top["children"].values()
    below = as_json(flux("show", child_id, "--json"))
    assert below["parent"] == {"execution_id": top["execution_id"], "call_id": "1"}
    assert f"parent: {top['execution_id']} (call 1)" in flux("show", child_id).stdout
    assert f"child: call 1 -> {child_id}" in flux("show", top["execution_id"]).stdout


def test_a_call_run_again_after_a_crash_is_marked_rerun(project: Path) -> None:
    done = exec_json("echo", "--input", "1")
    journal = Path(done["path"])
    kept = next(i for i, r in enumerate(records(journal)) if r["kind"] == "task_started") + 1
    keep_lines(journal, kept)  # as a crash while double(1) ran leaves it
    resumed = as_json(flux("resume", done["execution_id"], "--json"))
    assert resumed["status"] == "completed"
    ended = [r for r in records(journal) if r["kind"] == "task_completed"]
    assert len(ended) == 1 and ended[0]["rerun"] is True
    (call,) = as_json(flux("show", done["execution_id"], "--json"))["calls"]
    assert call["notes"] == ["rerun"]
    assert "[rerun]" in flux("show", done["execution_id"]).stdout
    # A call that ran once is not marked.
    other = exec_json("echo", "--input", "2")
    (call,) = as_json(flux("show", other["execution_id"], "--json"))["calls"]
    assert "notes" not in call


def test_resume_cancel_recover_check_fork_diff_and_replay_print_json(project: Path) -> None:
    paused = exec_json("asks", "--input", "1")
    resumed = as_json(flux("resume", paused["execution_id"], "--input", "41", "--json"))
    assert set(resumed) == EXECUTION_KEYS and resumed["output"] == 42

    waiting = exec_json("asks", "--input", "1")
    cancelled = flux("cancel", waiting["execution_id"], "--json")
    assert cancelled.exit_code == 0 and as_json(cancelled)["status"] == "cancelled"
    assert set(as_json(cancelled)) == EXECUTION_KEYS

    cut = exec_json("echo", "--input", "9")
    keep_lines(Path(cut["path"]), 2)
    recovered = as_json(flux("recover", "--json"))
    assert recovered == {
        "executions": [
            {"execution_id": cut["execution_id"], "workflow": "echo", "status": "completed", "error": None,
             "wake_at": None}
        ]
    }

    replayed = as_json(flux("replay", resumed["execution_id"], "--json"))
    assert replayed["status"] == "completed" and replayed["matches"] is True
    other = exec_json("echo", "--input", "9")
    differs = flux("diff", cut["execution_id"], other["execution_id"], "--json")
    assert as_json(differs)["same"] is True

    forked = as_json(flux("fork", resumed["execution_id"], "--at", "3", "--input", "1", "--json"))
    assert forked["status"] == "completed" and forked["output"] == 2
    assert forked["forked_from"]["execution_id"] == resumed["execution_id"]

    checked = flux("check", "flows.py", "echo", "--input", "3", "--no-subprocess", "--json")
    report = as_json(checked)
    assert checked.exit_code == 0 and report["ok"] is True and report["output"] == 3
    assert {p["name"] for p in report["properties"]} >= {"resume"}
    assert all(p["status"] in ("pass", "skip") for p in report["properties"])


# -- flux list ---------------------------------------------------------------------------------


def test_list_is_newest_first_with_filters_pages_and_shapes(project: Path) -> None:
    made = []
    for i in range(5):
        made.append(exec_json("echo", "--input", str(i))["execution_id"])
        time.sleep(0.002)
    failed = flux("exec", "flows.py", "broken", "--input", "1", "--json")
    made.append(as_json(failed)["execution_id"])
    newest_first = made[::-1]

    page = as_json(flux("list", "--json"))
    assert set(page) == {"items", "cursor"} and page["cursor"] is None
    assert [row["execution_id"] for row in page["items"]] == newest_first
    assert all(set(row) == ROW_KEYS for row in page["items"])

    text = flux("list").stdout.splitlines()
    assert text[0].split() == ["execution_id", "workflow", "status", "started", "records"]
    assert [line.split()[0] for line in text[1:]] == newest_first

    assert [r["execution_id"] for r in as_json(flux("list", "--status", "failed", "--json"))["items"]] == [made[5]]
    assert len(as_json(flux("list", "-s", "failed", "-s", "completed", "--json"))["items"]) == 6
    assert len(as_json(flux("list", "--workflow", "echo", "--json"))["items"]) == 5
    assert as_json(flux("list", "--since", "1h", "--json"))["items"] != []
    assert as_json(flux("list", "--before", "1h", "--json"))["items"] == []
    assert as_json(flux("list", "--since", "2999-01-01", "--json"))["items"] == []

    seen: list[str] = []
    cursor: str | None = None
    while True:
        args = ["list", "--limit", "2", "--json"] + (["--cursor", cursor] if cursor else [])
        page = as_json(flux(*args))
        seen += [row["execution_id"] for row in page["items"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == newest_first
    more = flux("list", "-n", "2")
    assert more.stderr.startswith("more: flux list --cursor ")

    lines = flux("list", "--jsonl", "-n", "3")
    assert [orjson.loads(line)["execution_id"] for line in lines.stdout.splitlines()] == newest_first[:3]


def test_list_refuses_bad_times_and_cursors_in_one_line(project: Path) -> None:
    bad_time = flux("list", "--since", "yesterday")
    assert bad_time.exit_code == 2
    assert bad_time.stderr.strip().startswith("ValueError: --since 'yesterday': give an age (45s, 90m, 12h, 30d, 2w)")
    assert len(bad_time.stderr.strip().splitlines()) == 1
    bad_cursor = flux("list", "--cursor", "nonsense")
    assert bad_cursor.exit_code == 2 and "is not a cursor a listing gave" in bad_cursor.stderr


def test_an_empty_store_says_which_store_it_looked_in(project: Path) -> None:
    empty = flux("list")
    assert empty.exit_code == 0
    assert empty.stdout.strip() == f"no executions in store {project / '.flux'}"
    assert flux("list", "--status", "failed").stdout.startswith("no executions match in store ")


# -- ids, input, global options ---------------------------------------------------------------


def test_an_unambiguous_id_prefix_names_its_execution(project: Path) -> None:
    ids = [exec_json("asks", "--input", "1", "--id", name)["execution_id"] for name in ("abc1", "abc2", "xyz9")]
    shown = flux("show", "xy")
    assert shown.exit_code == 0 and "execution_id: xyz9" in shown.stdout
    resumed = as_json(flux("resume", "abc2", "--input", "1", "--json"))
    assert resumed["execution_id"] == "abc2" and resumed["output"] == 2
    ambiguous = flux("show", "abc")
    assert ambiguous.exit_code == 2
    assert ambiguous.stderr.strip() == (
        f"AmbiguousExecutionIdError: execution id prefix 'abc' matches several executions in {project / '.flux'} "
        "(abc2, abc1); give more of the id"
    )
    missing = flux("cancel", "q")
    assert missing.exit_code == 2 and "ExecutionNotFoundError: no execution 'q'" in missing.stderr
    assert ids == ["abc1", "abc2", "xyz9"]


def test_input_file_dash_reads_standard_input(project: Path) -> None:
    given = '{"from": "stdin", "n": 123456789012345678901234}'
    done = flux("exec", "flows.py", "echo", "--input-file", "-", "--json", input=given)
    assert done.exit_code == 0, done.stderr
    assert as_json(done)["output"] == {"from": "stdin", "n": {"$int": "123456789012345678901234"}}
    bad = flux("exec", "flows.py", "echo", "--input-file", "-", input="{not json")
    assert bad.exit_code == 2 and "--input-file - (standard input)" in bad.stderr


def test_store_and_debug_may_come_before_the_command(project: Path, tmp_path: Path) -> None:
    store = tmp_path / "elsewhere"
    done = flux("--store", str(store), "exec", "flows.py", "echo", "--input", "1", "--json")
    assert done.exit_code == 0 and as_json(done)["path"].startswith(str(store))
    assert [r["execution_id"] for r in as_json(flux("--store", str(store), "list", "--json"))["items"]] == [
        as_json(done)["execution_id"]
    ]
    assert as_json(flux("list", "--json"))["items"] == []  # the default store is another one
    # An option after the command wins over the same one before it.
    assert as_json(flux("--store", str(store), "list", "--store", str(tmp_path / "none"), "--json"))["items"] == []
    debugged = flux("--debug", "show", "nothing-here", "--store", str(store))
    assert debugged.exit_code == 2 and "Traceback (most recent call last)" in debugged.stderr
    assert "Traceback" not in flux("show", "nothing-here", "--store", str(store)).stderr


def test_version_and_completion(project: Path) -> None:
    from importlib.metadata import version

    shown = flux("--version")
    assert shown.exit_code == 0 and shown.stdout.startswith(f"flux {version('flux-replay')} (Python 3.")
    env = {**os.environ, "_FLUX_COMPLETE": "complete_bash", "COMP_WORDS": "flux list --st", "COMP_CWORD": "2"}
    completed = subprocess.run(
        [sys.executable, "-m", "flux"], env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0 and completed.stdout.split() == ["--status", "--store"]
    # The shell is named rather than detected from the process's ancestors (typer's detection
    # finds none where no shell started the tests).
    shown_script = subprocess.run(
        [sys.executable, "-m", "flux", "--show-completion", "bash"],
        env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}, capture_output=True, text=True,
        timeout=60,
    )
    assert shown_script.returncode == 0 and "_FLUX_COMPLETE=complete_bash" in shown_script.stdout, shown_script.stderr


def test_the_store_is_found_in_a_parent_directory_as_git_finds_its_folder(project: Path) -> None:
    done = exec_json("echo", "--input", "1")
    deeper = project / "src" / "pkg"
    deeper.mkdir(parents=True)
    listed = subprocess.run(
        [sys.executable, "-m", "flux", "list", "--json"], cwd=deeper, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("FLUX_HOME", "FLUX_STORE")},
    )
    assert listed.returncode == 0, listed.stderr
    assert [row["execution_id"] for row in orjson.loads(listed.stdout)["items"]] == [done["execution_id"]]
    assert not (deeper / ".flux").exists()


# -- progress -------------------------------------------------------------------------------------


def _exec_on_a_terminal(project: Path, *args: str) -> tuple[int, str, str]:
    """Runs `flux exec` with its standard error on a pseudo-terminal; (exit code, stdout, what the
    terminal showed)."""
    main, secondary = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160"}
    env.pop("FLUX_HOME", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flux", "exec", "flows.py", *args], cwd=project, stdout=subprocess.PIPE,
        stderr=secondary, env=env, text=True,
    )
    os.close(secondary)
    shown = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out, shown.decode(errors="replace")


@pytest.mark.slow
def test_exec_shows_progress_on_a_terminal_and_nothing_extra_when_piped(project: Path) -> None:
    code, out, terminal = _exec_on_a_terminal(project, "steps", "--input", "3")
    assert code == 0 and "status: completed" in out and "output: 3" in out
    execution_id = out.split("execution_id: ")[1].split()[0]
    assert terminal.index(f"execution_id: {execution_id}") < terminal.index("calls done")
    assert "running slow" in terminal
    assert "1 retries" in terminal and "retrying flaky" in terminal

    piped = subprocess.run(
        [sys.executable, "-m", "flux", "exec", "flows.py", "steps", "--input", "2"], cwd=project,
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "FLUX_HOME"},
    )
    assert piped.returncode == 0 and piped.stderr == ""
    assert piped.stdout.splitlines()[1:] == ["workflow: steps", "status: completed", "output: 1"]
