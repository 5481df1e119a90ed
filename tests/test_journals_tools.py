"""Journals as working material: `flux diff`, `flux fork`, and golden journals (flux.golden)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from flux import golden
from flux._engine.journal import read_journal
from flux.journals import diff_journals, fork_execution
from flux.loader import load_file
from tests.conftest import ROOT
from tests.support.cli import invoke
from tests.support.journals import records

FLOWS = textwrap.dedent(
    """
    from flux import ExecutionContext, task, workflow
    from flux.tasks import pause

    PRICES = {"book": 12.5, "pen": 1.5}
    RUNS = []


    @task
    async def price(item: str, qty: int) -> float:
        RUNS.append(("price", item))
        return PRICES[item] * qty


    @task
    async def charge(total: float) -> str:
        RUNS.append(("charge", total))
        return f"charged {total}"


    @workflow
    async def order(ctx: ExecutionContext[dict]) -> dict:
        total = 0.0
        for item, qty in ctx.input["items"]:
            total += await price(item, qty)
        approved = await pause("approve") if ctx.input.get("ask") else True
        receipt = await charge(total)
        return {"total": total, "receipt": receipt, "approved": approved}


    @workflow
    async def other(ctx: ExecutionContext[int]) -> float:
        return await price("pen", ctx.input)
    """
)

ORDER = {"items": [["book", 2], ["pen", 3]]}


@pytest.fixture
def flows(tmp_path: Path) -> ModuleType:
    path = tmp_path / "shop.py"
    path.write_text(FLOWS)
    module = load_file(str(path))
    module.RUNS.clear()
    return module


def _invoke(*args: str) -> Any:
    return invoke(*args)


def _store_files(home: Path) -> list[str]:
    return sorted(os.listdir(home / "executions"))


# -- diff ---------------------------------------------------------------------------------------


def test_two_runs_alike_are_the_same_in_substance(flows: ModuleType, home: Path) -> None:
    a = flows.order.run(ORDER, store=str(home))
    b = flows.order.run(ORDER, store=str(home))
    result = _invoke("diff", a.execution_id, b.execution_id, "--home", str(home))
    assert result.exit_code == 0, result.output
    assert "the same in substance" in result.output


def test_diff_names_the_first_differing_record_then_every_difference(flows: ModuleType, home: Path) -> None:
    a = flows.order.run(ORDER, store=str(home))
    flows.PRICES["pen"] = 2.0
    try:
        b = flows.order.run(ORDER, store=str(home))
    finally:
        flows.PRICES["pen"] = 1.5
    diff = diff_journals(a.journal_path, b.journal_path)
    seq = next(r["seq"] for r in records(a.journal_path) if r["kind"] == "task_completed" and r["call_id"] == "2")
    first = diff.differences[0]
    assert (first.what, first.seq_a, first.seq_b) == ("call 2 price: outcome", seq, seq)
    assert (first.a, first.b) == ("completed: 4.5", "completed: 6.0")
    whats = [d.what for d in diff.differences]
    assert whats == ["call 2 price: outcome", "call 3 charge: args[0]", "call 3 charge: outcome", "output"]

    result = _invoke("diff", a.journal_path, b.journal_path)
    assert result.exit_code == 1
    assert f"first difference: call 2 price: outcome at seq {seq} in A, seq {seq} in B" in result.output
    data = orjson.loads(_invoke("diff", a.journal_path, b.journal_path, "--json").stdout)
    assert data["same"] is False and data["first"]["seq_a"] == seq and len(data["differences"]) == 4


def test_diff_aligns_by_call_id_and_reports_calls_on_one_side_only(flows: ModuleType, home: Path) -> None:
    a = flows.order.run(ORDER, store=str(home))
    b = flows.order.run({"items": [["book", 2], ["pen", 3], ["pen", 1]]}, store=str(home))
    diff = diff_journals(a.journal_path, b.journal_path)
    whats = {d.what: d for d in diff.differences}
    assert diff.differences[0].what == "input" and diff.differences[0].seq_a == 0
    third = whats["call 3: another call"]  # a third price call where A charged
    assert third.a == "task charge(29.5) completed: \"charged 29.5\""
    assert third.b == 'task price("pen", 1) completed: 1.5'
    assert whats["call 4 charge"].seq_a is None and whats["call 4 charge"].a == "(absent)"
    assert [d.what for d in diff.differences] == ["input", "call 3: another call", "call 4 charge", "output"]


def test_diff_of_two_workflows_is_bad_input(flows: ModuleType, home: Path) -> None:
    a = flows.order.run(ORDER, store=str(home))
    b = flows.other.run(2, store=str(home))
    result = _invoke("diff", a.journal_path, b.journal_path)
    assert result.exit_code == 2
    assert "ExecutionStateError" in result.output and "'order'" in result.output and "'other'" in result.output


def test_diff_of_a_damaged_journal_names_file_and_line(flows: ModuleType, home: Path) -> None:
    a = flows.order.run(ORDER, store=str(home))
    b = flows.order.run(ORDER, store=str(home))
    data = Path(b.journal_path).read_bytes().replace(b'"charge"', b'"chargE"')
    Path(b.journal_path).write_bytes(data)
    result = _invoke("diff", a.journal_path, b.journal_path)
    line = next(i for i, text in enumerate(data.splitlines(), 1) if b"chargE" in text)
    assert result.exit_code == 2 and f"JournalCorruptError: {b.journal_path}:{line}:" in result.output
    assert Path(b.journal_path).read_bytes() == data


# -- fork ---------------------------------------------------------------------------------------


def test_fork_copies_the_first_records_and_continues_live(flows: ModuleType, home: Path) -> None:
    done = flows.order.run(ORDER, store=str(home))
    original = Path(done.journal_path).read_bytes()
    recorded = records(done.journal_path)
    at = next(r["seq"] for r in recorded if r["kind"] == "task_completed" and r["call_id"] == "1") + 1
    flows.RUNS.clear()
    result = _invoke("fork", done.execution_id, "--at", str(at), "--home", str(home))
    assert result.exit_code == 0, result.output
    assert "status: completed" in result.output and '"total":29.5' in result.output.replace(" ", "")
    assert flows.RUNS == [("price", "pen"), ("charge", 29.5)]  # call 1 was not run again
    assert Path(done.journal_path).read_bytes() == original
    (fork_id,) = {name[:-6] for name in _store_files(home) if name.endswith(".jsonl")} - {done.execution_id}
    forked = read_journal(str(home / "executions" / f"{fork_id}.jsonl"), fork_id)  # checksums of its own id
    header = forked.records[0]
    assert header["forked_from"] == {"execution_id": done.execution_id, "seq": at}
    assert header["execution_id"] == fork_id and "parent" not in header
    strip = lambda r: {k: v for k, v in r.items() if k != "crc"}  # noqa: E731
    assert [strip(r) for r in forked.records[1:at]] == [strip(r) for r in recorded[1:at]]  # `at` kept too
    assert forked.records[at]["kind"] == "workflow_resumed"


def test_fork_with_a_result_replaced(flows: ModuleType, home: Path) -> None:
    done = flows.order.run(ORDER, store=str(home))
    original = Path(done.journal_path).read_bytes()
    seq = next(r["seq"] for r in records(done.journal_path) if r["kind"] == "task_completed" and r["call_id"] == "2")
    result = _invoke("fork", done.execution_id, "--at", str(seq + 1), "--set-result", f"{seq}=100", "--home", str(home))
    assert result.exit_code == 0, result.output
    assert '"total":125.0' in result.output.replace(" ", "") and f"result of seq {seq} replaced" in result.output
    assert Path(done.journal_path).read_bytes() == original


def test_fork_before_a_pause_stays_paused_until_given_input(flows: ModuleType, home: Path) -> None:
    paused = flows.order.run({**ORDER, "ask": True}, store=str(home))
    assert paused.status == "paused"
    count = len(records(paused.journal_path))
    made = fork_execution(paused.execution_id, count, store=str(home))
    waiting = _invoke("fork", paused.execution_id, "--at", str(count), "--home", str(home))
    assert "status: paused" in waiting.output
    answered = _invoke("fork", paused.execution_id, "--at", str(count), "--input", '"ok"', "--home", str(home))
    assert answered.exit_code == 0 and '"approved":"ok"' in answered.output.replace(" ", "")
    assert made.copied == count - 1 and made.replaced is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "0"], "at=0: the journal has {count} records"),
        (["--at", "{over}"], "at={over}: the journal has {count} records (seq 0 to {last})"),
        (["--at", "{count}", "--set-result", "2=1"], "set_result=2: record 2 is task_started, not a result"),
        (["--at", "3", "--set-result", "3=1"], "set_result=3: at=3 keeps only records 0 to 2"),
        (["--at", "3", "--set-result", "x"], "expected SEQ=JSON"),
        (["--at", "{count}", "--set-result", "3={{"], "the value is not valid JSON"),
    ],
)
def test_fork_refuses_bad_positions_and_changes_nothing(
    flows: ModuleType, home: Path, args: list[str], message: str
) -> None:
    done = flows.order.run(ORDER, store=str(home))
    count = len(records(done.journal_path))
    values = {"count": count, "over": count + 1, "last": count - 1}
    before = _store_files(home)
    original = Path(done.journal_path).read_bytes()
    result = _invoke("fork", done.execution_id, *[a.format(**values) for a in args], "--home", str(home))
    assert result.exit_code == 2
    assert message.format(**values) in result.output and len(result.output.strip().splitlines()) == 1
    assert _store_files(home) == before and Path(done.journal_path).read_bytes() == original


def test_fork_of_a_damaged_journal_changes_nothing(flows: ModuleType, home: Path) -> None:
    done = flows.order.run(ORDER, store=str(home))
    data = Path(done.journal_path).read_bytes()
    damaged = data[:-5] + b"x" + data[-4:]
    Path(done.journal_path).write_bytes(damaged)
    before = _store_files(home)
    result = _invoke("fork", done.execution_id, "--at", "3", "--home", str(home))
    assert result.exit_code == 2 and f"JournalCorruptError: {done.journal_path}:" in result.output
    assert _store_files(home) == before and Path(done.journal_path).read_bytes() == damaged


# -- golden journals ----------------------------------------------------------------------------


def _golden_folder(flows: ModuleType, home: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "golden"
    folder.mkdir()
    for value in (ORDER, {"items": [["pen", 1]]}):
        ctx = flows.order.run(value, store=str(home))
        shutil.copy(ctx.journal_path, folder)
    return folder


def test_golden_journals_pass_with_the_code_that_recorded_them(flows: ModuleType, home: Path, tmp_path: Path) -> None:
    folder = _golden_folder(flows, home, tmp_path)
    results = golden.assert_golden(str(folder))
    assert [r.ok for r in results] == [True, True]
    params = golden.golden_params(str(folder))
    assert sorted(p.id for p in params) == sorted(os.listdir(folder))


def test_golden_journals_fail_naming_each_journal_a_change_breaks(
    flows: ModuleType, home: Path, tmp_path: Path
) -> None:
    folder = _golden_folder(flows, home, tmp_path)
    changed = tmp_path / "shop_next.py"
    changed.write_text(FLOWS.replace("await price(item, qty)", "await price(item, qty + 1)"))
    with pytest.raises(AssertionError) as caught:
        golden.assert_golden(str(folder), file=str(changed))
    message = str(caught.value)
    assert "2 of 2 golden journals no longer replay" in message
    for name in os.listdir(folder):
        seq = next(r["seq"] for r in records(folder / name) if r["kind"] == "task_started")
        assert f"{folder / name}:{seq + 1}: workflow 'order' asked for price(" in message
    damaged = folder / sorted(os.listdir(folder))[0]
    damaged.write_bytes(damaged.read_bytes()[:40] + b"?" + damaged.read_bytes()[41:])
    results = golden.replay_folder(str(folder))
    assert [r.status for r in results] == ["error", "completed"] and "JournalCorruptError" in results[0].message


@pytest.mark.slow
def test_golden_check_fails_a_pytest_run_after_the_code_changed(flows: ModuleType, home: Path, tmp_path: Path) -> None:
    folder = _golden_folder(flows, home, tmp_path)
    check = tmp_path / "test_golden_check.py"
    check.write_text(
        "import pytest\nfrom flux.golden import assert_golden, golden_params\n\nimport shop  # noqa: F401\n\n"
        f"@pytest.mark.parametrize('journal', golden_params({str(folder)!r}))\n"
        "def test_journal_replays(journal):\n    assert_golden(journal)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(check)]
    passed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert passed.returncode == 0 and "2 passed" in passed.stdout, passed.stdout
    source = Path(flows.__file__)
    source.write_text(FLOWS.replace("await charge(total)", "await charge(round(total))"))
    failed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "2 failed" in failed.stdout
    for name in os.listdir(folder):
        if name.endswith(".jsonl"):
            assert f"{folder / name}:" in failed.stdout and "charge(" in failed.stdout
