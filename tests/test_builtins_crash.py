"""Real crashes in the middle of the built-ins: `flux exec` killed with SIGKILL during a parallel
fan-out, a pipeline, a map, a graph, a sub-workflow, a durable sleep and a cancellation, then
`flux resume`. The output is the uninterrupted one and no task body whose completion was
recorded before the kill runs again. Also: `flux cancel` of a running execution from another
process, a timed pause continued by `flux resume` without input, and a secret canary that must
not be in any byte a killed and resumed run wrote."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from flux._engine.clock import iso
from tests.conftest import flux_cmd, flux_popen
from tests.support.flows import flows_file
from tests.support.journals import every_byte_under
from tests.support.processes import exec_and_kill, wait_for
from tests.support.projects import (
    completed_calls,
    count_records,
    executions,
    journals,
    logged_calls,
    run_env,
    top_execution,
    write_project,
)

FLOWS = flows_file(
    """
    SLOW = float(os.environ.get("SLOW", "0"))
    SLOW_UNDO = float(os.environ.get("SLOW_UNDO", "0"))


    @task
    async def work(i):
        log_call(f"work:{i}")
        await asyncio.sleep(SLOW * (1 + i % 4))
        log_call(f"done:{i}")
        return i * i


    @workflow
    async def fan_out(ctx: ExecutionContext[int]):
        return await parallel(*(work(i) for i in range(ctx.input)), max_concurrent=4)


    @workflow
    async def mapped(ctx: ExecutionContext[int]):
        return await work.map(range(ctx.input))


    @task
    async def inc(x):
        log_call(f"inc:{x}")
        await asyncio.sleep(SLOW)
        return x + 1


    @task
    async def double(x):
        log_call(f"double:{x}")
        await asyncio.sleep(SLOW)
        return x * 2


    @workflow
    async def piped(ctx: ExecutionContext[int]):
        return await pipeline(inc, double, inc, double, inc, input=ctx.input)


    NODE_DELAY = {"a": 0.1, "b": 0.1, "c": 20.0, "audit": 0.0, "d": 0.1}


    @task
    async def node(label, x):
        log_call(f"node:{label}")
        await asyncio.sleep(SLOW * NODE_DELAY[label])
        log_call(f"node-done:{label}")
        if label == "d":
            return sum(x)
        return {"a": x + 1, "b": x * 10, "c": x * 100, "audit": -1}[label]


    def action(label):
        async def run(*xs):
            return await node(label, xs[0] if len(xs) == 1 else list(xs))
        return run


    @workflow
    async def graphed(ctx: ExecutionContext[int]):
        graph = (
            Graph("orders")
            .add_node("a", action("a")).add_node("b", action("b")).add_node("c", action("c"))
            .add_node("audit", action("audit")).add_node("d", action("d"))
            .add_edge("a", "b").add_edge("a", "c")
            .add_edge("a", "audit", condition=lambda r: r > 100)
            .add_edge("b", "d").add_edge("c", "d")
            .start_with("a").end_with("d").end_with("audit")
        )
        return await graph(ctx.input)


    @workflow
    async def kid(ctx: ExecutionContext[int]):
        total = 0
        for i in range(ctx.input, ctx.input + 4):
            total += await work(i)
        return total


    @workflow
    async def parent(ctx: ExecutionContext[int]):
        first = await work(ctx.input)
        inner = await call(kid, first)
        last = await work(inner % 7)
        return [first, inner, last]


    @workflow
    async def napper(ctx: ExecutionContext[int]):
        a = await work(ctx.input)
        await sleep(3)
        b = await work(ctx.input + 1)
        return [a, b]


    @workflow
    async def gated(ctx: ExecutionContext[float]):
        answer = await pause("gate", delay=ctx.input)
        return {"answer": answer}


    @task
    async def book(n):
        log_call(f"book:{n}")
        return f"ref{n}"


    @task
    async def unbook(ref):
        log_call(f"undo-start:{ref}")
        await asyncio.sleep(SLOW_UNDO)
        log_call(f"undo:{ref}")


    @task
    async def hang():
        log_call("hang")
        await asyncio.sleep(float(os.environ.get("HANG", "60")))
        log_call("hang-end")


    @workflow
    async def trip(ctx: ExecutionContext[None]):
        async with Saga() as saga:
            await saga.step(book(1), compensate=unbook)
            await saga.step(book(2), compensate=unbook)
            await hang()
            await saga.step(book(3), compensate=unbook)
        return "booked"


    @task.with_options(output_storage=LocalFileStorage())
    async def report(n):
        log_call(f"report:{n}")
        return "r" * n


    @task.with_options(cache=True)
    async def price(sku):
        log_call(f"price:{sku}")
        return {"sku": sku, "cents": len(sku) * 100}


    @workflow
    async def stored(ctx: ExecutionContext[int]):
        text = await report(ctx.input)
        quote = await price("widget")
        await work(1)
        return [len(text), text[:2], quote]


    @task.with_options(secret_requests=["FLUX_CANARY_KEY"])
    async def fetch_token(secrets):
        log_call("fetch_token")
        return {"token": secrets["FLUX_CANARY_KEY"], "n": 1}


    @task.with_options(secret_requests=["FLUX_CANARY_KEY"])
    async def login(user, secrets):
        log_call("login")
        raise PermissionError(f"{user}: key {secrets['FLUX_CANARY_KEY']} rejected")


    @workflow
    async def secretive(ctx: ExecutionContext[str]):
        token = await fetch_token()
        await work(1)
        try:
            await login(ctx.input)
        except Exception as err:
            return [token, str(err)]
        return [token, "accepted"]
    """
)

CANARY = "CANARY-91c4e0aa-do-not-leak"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path, FLOWS)


def _resume_and_check(
    project: Path, env: dict[str, str], expected_output: str
) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, str]]]:
    """Resumes the killed execution; checks the output and that no recorded completion ran again.
    Returns the resume's result and the log lines written by the resumed run."""
    for recs in journals(project).values():
        assert recs[-1]["kind"] not in ("workflow_completed", "workflow_failed"), "the kill came too late"
    done_before = completed_calls(project)
    logged_before = len(logged_calls(project))
    result = flux_cmd("resume", top_execution(project), cwd=project, env=env)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "status: completed" in result.stdout
    assert f"output: {expected_output}\n" in result.stdout
    after = logged_calls(project)[logged_before:]
    ran_again = {key for key, _ in after} & done_before
    assert not ran_again, f"completed before the kill, ran again: {sorted(ran_again)}"
    for recs in journals(project).values():
        started = [r["call_id"] for r in recs if r["kind"] == "task_started"]
        assert len(started) == len(set(started))
        assert recs[-1]["kind"] == "workflow_completed"
    return result, after


@pytest.mark.slow
def test_kill_during_a_parallel_fan_out_then_resume(project: Path) -> None:
    env = run_env(project, SLOW="0.3")
    exec_and_kill(project, "fan_out", "10", env, lambda: count_records(project, "task_completed") >= 3)
    before = logged_calls(project)
    assert 3 <= count_records(project, "task_completed") < 10
    assert len([what for _, what in before if what.startswith("work:")]) < 10  # max_concurrent=4: some had not started
    _, after = _resume_and_check(project, run_env(project, SLOW="0"), str([i * i for i in range(10)]).replace(" ", ""))
    labels = sorted({what for _, what in before + after if what.startswith("work:")}, key=lambda w: int(w[5:]))
    assert labels == [f"work:{i}" for i in range(10)]


@pytest.mark.slow
def test_kill_during_a_pipeline_then_resume(project: Path) -> None:
    env = run_env(project, SLOW="0.4")
    exec_and_kill(project, "piped", "1", env, lambda: count_records(project, "task_completed") == 2)
    assert count_records(project, "task_completed") == 2
    assert [what for _, what in logged_calls(project)][:2] == ["inc:1", "double:2"]
    _, after = _resume_and_check(project, run_env(project, SLOW="0"), "11")
    # Each step got the previous result; the steps not recorded as done ran after the kill.
    assert [what for _, what in after] == ["inc:4", "double:5", "inc:10"]


def _ended(project: Path) -> list[str]:
    """`execution_id:call_id` of the work bodies that ran to their end, in order."""
    return [key for key, what in logged_calls(project) if what.startswith("done:")]


@pytest.mark.slow
def test_kill_during_a_map_then_resume(project: Path) -> None:
    env = run_env(project, SLOW="0.5")
    exec_and_kill(project, "mapped", "8", env, lambda: len(_ended(project)) >= 2, settle=0.2)
    assert len([what for _, what in logged_calls(project) if what.startswith("work:")]) == 8  # every call at once
    assert 2 <= len(_ended(project)) < 8
    _, after = _resume_and_check(project, run_env(project, SLOW="0"), str([i * i for i in range(8)]).replace(" ", ""))
    assert after  # the calls still running at the kill ran again


@pytest.mark.slow
def test_the_completion_of_a_finished_body_reaches_the_journal_while_the_others_still_run(project: Path) -> None:
    env = run_env(project, SLOW="0.5")
    exec_and_kill(project, "mapped", "8", env, lambda: len(_ended(project)) >= 2, settle=0.5)
    ended = set(_ended(project))
    assert 2 <= len(ended) < 8
    assert ended <= completed_calls(project), (
        f"finished 0.5 s before the kill, not recorded: {sorted(ended - completed_calls(project))}"
    )
    _, after = _resume_and_check(project, run_env(project, SLOW="0"), str([i * i for i in range(8)]).replace(" ", ""))
    assert not {key for key, _ in after} & ended


@pytest.mark.slow
def test_kill_during_a_graph_then_resume(project: Path) -> None:
    env = run_env(project, SLOW="1")
    ended = lambda: {what for _, what in logged_calls(project) if what.startswith("node-done:")}  # noqa: E731
    exec_and_kill(project, "graphed", "1", env, lambda: {"node-done:a", "node-done:b"} <= ended(), settle=0.2)
    before = {what for _, what in logged_calls(project) if what.startswith("node:")}
    assert before == {"node:a", "node:b", "node:c"}  # c was running, d had not started, audit was skipped
    assert "node-done:c" not in ended()
    _, after = _resume_and_check(project, run_env(project, SLOW="0"), "220")
    started_after = {what for _, what in after if what.startswith("node:")}
    assert {"node:c", "node:d"} <= started_after <= {"node:b", "node:c", "node:d"}
    assert "node:a" not in started_after  # its completion was recorded before b and c started


@pytest.mark.slow
def test_kill_the_parent_while_its_sub_workflow_runs_then_resume_both(project: Path) -> None:
    env = run_env(project, SLOW="0.25")

    def child_half_done() -> bool:
        return any(
            "parent" in recs[0] and sum(r["kind"] == "task_completed" for r in recs) >= 2
            for recs in journals(project).values()
        )

    exec_and_kill(project, "parent", "2", env, child_half_done)
    parent_id = top_execution(project)
    child_id = f"{parent_id}-2"
    recorded = journals(project)
    assert set(recorded) == {parent_id, child_id}
    call = next(r for r in recorded[parent_id] if r["kind"] == "task_started" and r["name"] == "kid")
    assert call["call_id"] == "2" and call["child"] == child_id
    assert recorded[child_id][0]["parent"] == {"execution_id": parent_id, "call_id": "2"}
    assert recorded[child_id][0]["input"] == 4
    _, after = _resume_and_check(project, run_env(project, SLOW="0"), "[4,126,0]")
    ran_after = {key.split(":")[0] for key, _ in after}
    assert ran_after == {parent_id, child_id}
    child = journals(project)[child_id]
    assert [r["kind"] for r in child].count("workflow_resumed") == 1
    assert child[-1]["value"] == 126


def _seconds(at: str) -> float:
    return dt.datetime.fromisoformat(at).timestamp()


@pytest.mark.slow
def test_kill_during_a_durable_sleep_then_resume_sleeps_only_what_is_left(project: Path) -> None:
    env = run_env(project)
    exec_and_kill(project, "napper", "3", env, lambda: count_records(project, "timer_started") == 1, settle=1.0)
    wake_at = next(r for r in journals(project)[top_execution(project)] if r["kind"] == "timer_started")["wake_at"]
    wait_for(lambda: time.time() > wake_at + 0.1, timeout=30, what="the recorded wake-up time")
    _, after = _resume_and_check(project, env, "[9,16]")
    assert [what for _, what in after] == ["work:4", "done:4"]
    recs = journals(project)[top_execution(project)]
    assert [r["kind"] for r in recs].count("timer_started") == 1
    resumed = next(r for r in recs if r["kind"] == "workflow_resumed")
    fired = next(r for r in recs if r["kind"] == "timer_fired")
    assert fired["at"] >= iso(wake_at)
    # Nothing was left of the 3 s: the resumed run fired the timer at once instead of sleeping
    # 3 s again (the records' own times, so the machine's load does not enter into it).
    assert _seconds(fired["at"]) - _seconds(resumed["at"]) < 3.0


@pytest.mark.slow
def test_flux_cancel_stops_a_running_execution_from_another_process(project: Path) -> None:
    env = run_env(project)
    proc = flux_popen("exec", "flows.py", "trip", cwd=project, env=env)
    try:
        wait_for(lambda: any(what == "hang" for _, what in logged_calls(project)))
        cancel = flux_cmd("cancel", top_execution(project), cwd=project, env=env)
    finally:
        out, err = proc.communicate(timeout=30)
    assert cancel.returncode == 0, cancel.stderr
    assert "status: cancelled" in cancel.stdout
    assert proc.returncode == 1, (out, err)
    assert "status: cancelled" in out
    assert [what for _, what in logged_calls(project)] == [
        "book:1",
        "book:2",
        "hang",
        "undo-start:ref2",
        "undo:ref2",
        "undo-start:ref1",
        "undo:ref1",
    ]
    recs = journals(project)[top_execution(project)]
    hang_id = next(r["call_id"] for r in recs if r.get("name") == "hang")
    tail = [(r["kind"], r.get("call_id"), r.get("args")) for r in recs[-6:]]
    assert tail == [
        ("task_cancelled", hang_id, None),
        ("task_started", tail[1][1], ["ref2"]),
        ("task_completed", tail[1][1], None),
        ("task_started", tail[3][1], ["ref1"]),
        ("task_completed", tail[3][1], None),
        ("workflow_cancelled", None, None),
    ]
    assert not list(executions(project).glob("*.cancel"))
    journal = executions(project) / f"{top_execution(project)}.jsonl"
    before = journal.read_bytes()
    again = flux_cmd("resume", top_execution(project), cwd=project, env=env)
    assert again.returncode == 1
    assert "status: cancelled" in again.stdout and "was cancelled" in again.stdout
    assert journal.read_bytes() == before and len(logged_calls(project)) == 7  # nothing ran, nothing written


@pytest.mark.slow
def test_kill_during_the_compensations_of_a_cancellation_then_resume_finishes_cancelling(project: Path) -> None:
    env = run_env(project, SLOW_UNDO="30")
    proc = flux_popen("exec", "flows.py", "trip", cwd=project, env=env)
    cancel: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: any(what == "hang" for _, what in logged_calls(project)))
        cancel = flux_popen("cancel", top_execution(project), cwd=project, env=env)
        wait_for(lambda: any(what == "undo-start:ref2" for _, what in logged_calls(project)))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert cancel is not None
    execution_id = top_execution(project)
    assert journals(project)[execution_id][-1]["kind"] != "workflow_cancelled"
    done_before = completed_calls(project)
    logged = len(logged_calls(project))
    resumed = flux_cmd("resume", execution_id, cwd=project, env=run_env(project))
    cancel_out, cancel_err = cancel.communicate(timeout=40)
    assert resumed.returncode == 1, (resumed.stdout, resumed.stderr)
    assert "status: cancelled" in resumed.stdout
    assert "status: cancelled" in cancel_out, cancel_err
    after = logged_calls(project)[logged:]
    assert not {key for key, _ in after} & done_before
    assert [what for _, what in after if what.startswith("undo")] == [
        "undo-start:ref2",
        "undo:ref2",
        "undo-start:ref1",
        "undo:ref1",
    ]
    assert not [what for _, what in after if what.startswith("book")]
    recs = journals(project)[execution_id]
    assert recs[-1]["kind"] == "workflow_cancelled"
    assert [r.get("args") for r in recs if r["kind"] == "task_started" and r["name"] == "unbook"] == [
        ["ref2"],
        ["ref1"],
    ]


@pytest.mark.slow
def test_flux_cancel_of_a_killed_execution_compensates_and_records_cancelled(project: Path) -> None:
    env = run_env(project)
    exec_and_kill(project, "trip", "null", env, lambda: any(what == "hang" for _, what in logged_calls(project)))
    execution_id = top_execution(project)
    done_before = completed_calls(project)
    logged = len(logged_calls(project))
    # No process runs it now: `flux cancel` replays it and delivers the cancellation itself.
    cancel = flux_cmd("cancel", execution_id, cwd=project, env=run_env(project, HANG="0.5"))
    assert cancel.returncode == 0, cancel.stderr
    assert "status: cancelled" in cancel.stdout
    after = logged_calls(project)[logged:]
    assert not {key for key, _ in after} & done_before
    assert [what for _, what in after if what.startswith(("undo", "book"))] == [
        "undo-start:ref2",
        "undo:ref2",
        "undo-start:ref1",
        "undo:ref1",
    ]
    recs = journals(project)[execution_id]
    assert recs[-1]["kind"] == "workflow_cancelled"
    assert not any(r.get("name") == "book" and r.get("args") == [3] for r in recs)
    again = flux_cmd("resume", execution_id, cwd=project, env=env)
    assert again.returncode == 1 and "status: cancelled" in again.stdout
    assert len(logged_calls(project)) == logged + len(after)


@pytest.mark.slow
def test_a_timed_pause_is_continued_by_flux_resume_without_input_once_its_time_has_come(project: Path) -> None:
    env = run_env(project)
    first = flux_cmd("exec", "flows.py", "gated", "--input", "8", cwd=project, env=env)
    assert first.returncode == 0 and "status: paused" in first.stdout, first.stderr
    execution_id = top_execution(project)
    wake_at = journals(project)[execution_id][-1]["wake_at"]
    early = flux_cmd("resume", execution_id, cwd=project, env=env)
    assert time.time() < wake_at, "the early resume came too late to test anything"
    assert early.returncode == 2
    assert "ExecutionStateError" in early.stderr and "until" in early.stderr and "give an input" in early.stderr
    time.sleep(max(0.0, wake_at - time.time()) + 0.05)
    late = flux_cmd("resume", execution_id, cwd=project, env=env)
    assert late.returncode == 0, late.stderr
    assert 'output: {"answer":null}' in late.stdout


@pytest.mark.slow
def test_kill_after_a_stored_and_a_cached_result_then_resume_reads_them_back(project: Path) -> None:
    env = run_env(project, SLOW="30")
    n = 2_000_000
    exec_and_kill(project, "stored", str(n), env, lambda: any(what == "work:1" for _, what in logged_calls(project)))
    first = top_execution(project)
    recs = journals(project)[first]
    stored = next(r for r in recs if r["kind"] == "task_completed" and r["call_id"] == "1")
    assert set(stored["value"]) == {"$blob", "size"} and stored["value"]["size"] == n + 2
    blob = project / ".flux" / "blobs" / f"{stored['value']['$blob']}.json"
    assert (blob.stat().st_mode & 0o777) == 0o600 and blob.stat().st_size == n + 2
    assert (executions(project) / f"{first}.jsonl").stat().st_size < 4096
    expected = '[2000000,"rr",{"sku":"widget","cents":600}]'
    _, after = _resume_and_check(project, run_env(project), expected)
    assert [what for _, what in after] == ["work:1", "done:1"]  # the stored and the cached result were read back
    # A new execution finds the cached price; after `flux clear-cache` the body runs again.
    again = flux_cmd("exec", "flows.py", "stored", "--input", "10", cwd=project, env=run_env(project))
    assert again.returncode == 0 and 'output: [10,"rr",{"sku":"widget","cents":600}]' in again.stdout, again.stderr
    second = next(i for i in journals(project) if i != first)
    hit = next(r for r in journals(project)[second] if r["kind"] == "task_completed" and r["call_id"] == "2")
    assert hit["cached"] is True
    assert [what for _, what in logged_calls(project)].count("price:widget") == 1
    cleared = flux_cmd("clear-cache", cwd=project, env=run_env(project))
    assert cleared.returncode == 0 and "removed 1 cached results" in cleared.stdout
    third = flux_cmd("exec", "flows.py", "stored", "--input", "10", cwd=project, env=run_env(project))
    assert third.returncode == 0, third.stderr
    assert [what for _, what in logged_calls(project)].count("price:widget") == 2


@pytest.mark.slow
def test_a_secret_canary_is_in_no_byte_written_by_a_killed_and_resumed_run(project: Path, tmp_path: Path) -> None:
    assert "FLUX_CANARY_KEY" not in os.environ
    outputs: list[str] = []
    wide = {"COLUMNS": "1000"}  # no line of output is wrapped, so no canary can hide across lines
    env = run_env(project, SLOW="30", FLUX_CANARY_KEY=CANARY, **wide)

    def token_recorded_and_work_running() -> bool:
        return any(what == "work:1" for _, what in logged_calls(project))

    outputs += exec_and_kill(project, "secretive", '"bob"', env, token_recorded_and_work_running)
    # The resume takes the secret from a private secrets file outside the store.
    secrets = tmp_path / "private" / "secrets.json"
    secrets.parent.mkdir()
    secrets.write_bytes(orjson.dumps({"FLUX_CANARY_KEY": CANARY}))
    secrets.chmod(0o600)
    resume_env = run_env(project, FLUX_SECRETS_FILE=str(secrets), **wide)
    redacted = "[secret:FLUX_CANARY_KEY]"
    result, after = _resume_and_check(
        project, resume_env, f'[{{"token":"{redacted}","n":1}},"PermissionError: bob: key {redacted} rejected"]'
    )
    assert [what for _, what in after] == ["work:1", "done:1", "login"]
    execution_id = top_execution(project)
    commands = [
        result,
        flux_cmd("show", execution_id, cwd=project, env=resume_env),
        flux_cmd("list", cwd=project, env=resume_env),
        flux_cmd("replay", execution_id, cwd=project, env=resume_env),
        flux_cmd("replay", execution_id, "--json", cwd=project, env=resume_env),
    ]
    for command in commands:
        assert command.returncode == 0, (command.args, command.stderr)
        outputs += [command.stdout, command.stderr]
    assert redacted in commands[1].stdout  # show printed the records that held the secret
    written = every_byte_under(project / ".flux")
    assert redacted.encode() in written
    assert CANARY.encode() not in written
    for text in outputs:
        assert CANARY not in text
