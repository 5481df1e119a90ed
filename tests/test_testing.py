"""flux.testing: the determinism checker passes correct workflows and catches four planted bugs
(wall clock, `random`, set iteration order, a value whose type changes on replay) and a choice by
completion order, through the API, the `flux_check` pytest fixture and `flux check`."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

import flux.errors
import flux.testing
from flux import ExecutionContext, workflow
from flux._engine.clock import VirtualClock
from flux._engine.errors import InvalidOptionError, WorkflowLoadError
from flux._engine.history import History as ReplayIndex
from flux.testing import DeterminismError, check_once, check_workflow
from flux.testing._check import _cut_points
from flux.testing._compare import difference
from tests import determinism_workflows as W
from tests.conftest import ROOT, flux_cmd

WORKFLOWS = str(ROOT / "tests" / "determinism_workflows.py")


@pytest.fixture(autouse=True)
def stores_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed check keeps its stores for inspection: keep them in the test's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def statuses(report: flux.testing.CheckReport) -> dict[str, str]:
    return {r.name: r.status for r in report.results}


def test_public_surface() -> None:
    assert sorted(flux.testing.__all__) == sorted(
        [
            "PROPERTIES", "CheckReport", "DeterminismError", "PropertyResult",
            "check_file", "check_once", "check_workflow",
        ]
    )
    assert issubclass(DeterminismError, AssertionError)
    assert issubclass(DeterminismError, flux.errors.FluxError)


# -- a correct workflow passes ----------------------------------------------------------------


@pytest.mark.slow
def test_a_correct_workflow_passes_every_property_for_generated_inputs(tmp_path: Path) -> None:
    check_workflow(
        W.fulfil,
        st.lists(st.integers(0, 50), max_size=4),
        resume_inputs=lambda name: f"ok-{name}",
        max_examples=4,
        cuts=8,
        tmp_dir=tmp_path,
    )
    assert list(tmp_path.iterdir()) == []  # stores of passing checks are removed


def test_check_once_runs_every_property_and_counts_the_runs() -> None:
    W.RUNS.clear()
    report = check_once(W.fulfil, [3, 1, 2], resume_inputs="yes")
    assert report.ok, report.describe()
    assert statuses(report) == dict.fromkeys(flux.testing.PROPERTIES, "pass")
    assert report.status == "completed"
    assert report.output == {"totals": [36, 12, 24], "approval": "yes", "reservation": "reserved 3", "sum": 72}
    runs = {r.name: r.runs for r in report.results}
    assert runs == {"run": 1, "resume": report.records - 1, "no-rerun": report.records - 1, "replay": 1,
                    "replay-subprocess": 8, "completion-order": 2}
    assert report.store is None


def test_a_workflow_that_fails_the_same_way_every_time_passes() -> None:
    report = check_once(W.refund, 4)
    assert report.ok, report.describe()
    assert report.status == "failed"
    assert str(report.output) == "ValueError: cannot refund order 4"


def test_tasks_that_answer_differently_each_time_are_not_taken_for_non_determinism() -> None:
    """A task returning a new id, or now() reached again live, changes the output of a resumed
    run without any fault of the workflow: such runs are checked against a replay of their own
    journal instead of the uninterrupted run."""
    report = check_once(W.ticketing, 3)
    assert report.ok, report.describe()
    resume = report.results[1]
    assert resume.detail == (
        "7 interrupted runs (4 of 7 checked against a replay of their own journal only: "
        "call 1 (issue_ticket(3)) answered otherwise when it ran again)"
    )


def test_a_list_of_inputs_is_checked_one_by_one() -> None:
    check_workflow(W.fulfil, [[1], []], resume_inputs="ok", cuts=3, subprocess_replay=False)
    with pytest.raises(DeterminismError) as info:
        check_workflow(W.dispatch, [7, 8], subprocess_replay=False)
    assert info.value.input == 7


# -- the four planted bugs are caught ---------------------------------------------------------


def test_reading_the_wall_clock_is_caught_with_the_smallest_input_and_the_cut(tmp_path: Path) -> None:
    with pytest.raises(DeterminismError) as info:
        check_workflow(W.quote, st.integers(0, 1000), max_examples=3, tmp_dir=tmp_path)
    err = info.value
    message = str(err)
    print(message)
    assert (err.property, err.seq, err.input) == ("resume", 3, 0)
    assert message.startswith("workflow 'quote' is not deterministic for input 0:")
    assert "- resume: a run interrupted after any record and resumed returns" in message
    assert "interrupted after record seq=3 (task_completed, call 1) of 7, then resumed:" in message
    assert "the resumed run returned {'quote': 0, 'escalated': False}" in message
    assert "(output['escalated']: got False, expected True)" in message
    kept = list(tmp_path.iterdir())
    assert len(kept) == 1 and f"journals kept in {kept[0]}" in message  # only the reported example's store
    assert (kept[0] / "cut-3" / "executions").is_dir()


def test_using_random_directly_is_caught_where_the_runs_part() -> None:
    with pytest.raises(DeterminismError) as info:
        check_workflow(W.dispatch, st.integers(0, 1000), max_examples=5)
    err = info.value
    message = str(err)
    print(message)
    assert (err.property, err.seq, err.input) == ("resume", 0, 0)
    found = re.search(
        r'interrupted after record seq=0 \(header\) of 7, then resumed: the resumed run asked for ship\(0, "(\w+)"\) '
        r'at call 2 \(determinism_workflows\.py:\d+\), where the uninterrupted run asked for ship\(0, "(\w+)"\) '
        r"\(determinism_workflows\.py:\d+\)",
        message,
    )
    assert found and found[1] != found[2], message
    # Where the journal holds the call, the engine itself reports the divergence.
    report = check_once(W.dispatch, 0, subprocess_replay=False)
    assert report.results[3].name == "replay" and report.results[3].status == "fail"
    assert re.search(r'NondeterminismError: .*\.jsonl:5: workflow \'dispatch\' asked for ship\(0, "\w+"\) at call 2 '
                     r".* but the journal recorded ship\(0, \"\w+\"\) there", report.results[3].detail)


@pytest.mark.slow
def test_iterating_a_set_of_strings_is_caught_by_the_replay_in_another_process() -> None:
    with pytest.raises(DeterminismError) as info:
        check_workflow(W.greet_team, st.integers(0, 1000), max_examples=3)
    err = info.value
    message = str(err)
    print(message)
    assert (err.property, err.seq, err.input) == ("replay-subprocess", None, 0)
    assert "- replay-subprocess: replaying it in another process, with another PYTHONHASHSEED" in message
    assert re.search(
        r"replayed with PYTHONHASHSEED=\d: NondeterminismError: .*\.jsonl:\d+: workflow 'greet_team' "
        r"asked for greet\(\"\w+\", 0\) at call \d+ .* but the journal recorded greet\(\"\w+\", 0\)",
        message,
    )
    # In one process the order of the set is the same on every run: only the other process sees it.
    report = check_once(W.greet_team, 0)
    assert statuses(report) == {"run": "pass", "resume": "pass", "no-rerun": "pass", "replay": "pass",
                                "replay-subprocess": "fail", "completion-order": "pass"}


def test_a_value_whose_type_changes_on_replay_is_caught() -> None:
    with pytest.raises(DeterminismError) as info:
        check_workflow(W.opening, st.integers(0, 1000), max_examples=3)
    err = info.value
    message = str(err)
    print(message)
    assert (err.property, err.seq, err.input) == ("resume", 3, 0)
    assert "interrupted after record seq=3 (task_completed, call 1) of 5, then resumed:" in message
    assert ("(output['opens'].tzinfo: got datetime.timezone(datetime.timedelta(seconds=3600)) of type "
            "datetime.timezone, expected ShopTime() of type tests.determinism_workflows.ShopTime)") in message
    # == alone would not see it: the two datetimes are the same instant.
    report = check_once(W.opening, 0, subprocess_replay=False)
    assert statuses(report)["replay"] == "fail"


def test_choosing_by_completion_order_is_caught_by_shuffling_completions() -> None:
    report = check_once(W.first_responder, 1, subprocess_replay=False)
    assert report.first_failure is not None and report.first_failure.name == "completion-order", report.describe()
    assert re.match(
        r"the run whose task bodies started after random delays \(seed \d+\) returned 'deployed to (us|ap)', "
        r"the uninterrupted run returned 'deployed to eu'",
        report.first_failure.detail,
    ), report.first_failure.detail


def test_choosing_by_an_order_asyncio_observed_is_recorded_and_held_to_its_own_replay() -> None:
    """as_completed records the order it observed (SPEC.md 4.1): a run that saw another order
    is checked against a replay of its own journal, and passes."""
    report = check_once(W.fastest_region, 1, subprocess_replay=False)
    assert report.first_failure is None, report.describe()
    order = next(r for r in report.results if r.name == "completion-order")
    assert order.status == "pass" and "checked against a replay of their own journal only" in order.detail
    assert "(asyncio.as_completed()) answered otherwise when it ran again" in order.detail


def test_a_completed_task_that_runs_again_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine that forgot recorded completions would re-run their bodies: no-rerun says so."""
    apply_all = ReplayIndex.apply_all

    def forgetful(self: ReplayIndex, records: list[dict[str, Any]], offsets: Any = None) -> None:
        apply_all(self, records, offsets)
        for call in self.calls.values():
            if call.kind == "task" and call.name == "reserve_stock":
                call.end = None

    monkeypatch.setattr(ReplayIndex, "apply_all", forgetful)
    report = check_once(W.dispatch_fixed, 5, subprocess_replay=False)
    failed = report.results[2]
    assert failed.name == "no-rerun" and failed.status == "fail", report.describe()
    assert failed.seq == 3
    assert failed.detail == (
        "interrupted after record seq=3 (task_completed, call 1) of 8, then resumed: "
        "completed task calls ran again: 1 (reserve_stock)"
    )


def test_non_determinism_that_comes_and_goes_is_reported_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    real = flux.testing.run_checks
    calls = {"n": 0}

    def sometimes(*args: Any, **kwargs: Any) -> flux.testing.CheckReport:
        calls["n"] += 1
        report = real(*args, **kwargs)
        if calls["n"] % 2:
            report.results[1].fail("interrupted after record seq=2 (task_started, call 1) of 7, then resumed: boom", 2)
        return report

    monkeypatch.setattr(flux.testing, "run_checks", sometimes)
    with pytest.raises(DeterminismError) as info:
        check_workflow(W.dispatch_fixed, st.just(1), max_examples=2, subprocess_replay=False)
    assert info.value.property == "resume"
    assert "failed on some runs of the check and passed on others" in str(info.value)


# -- options and limits -----------------------------------------------------------------------


def test_durable_timers_take_no_time_on_a_virtual_clock() -> None:
    started = time.perf_counter()
    report = check_once(W.reminder, 2, clock=VirtualClock)
    assert report.ok, report.describe()
    assert report.output == "order 2 shipped"
    # The workflow sleeps an hour on each of its runs: on a real clock this would take hours.
    assert time.perf_counter() - started < 900


def test_engine_trouble_in_the_uninterrupted_run_fails_the_run_property(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FLUX_TESTING_NO_SUCH_SECRET", raising=False)
    readable = tmp_path / "secrets.json"
    readable.write_text("{}")
    readable.chmod(0o644)  # a secrets file others can read is engine trouble: the run stops
    monkeypatch.setenv("FLUX_SECRETS_FILE", str(readable))
    report = check_once(W.needs_secret, 1)
    assert statuses(report) == {"run": "fail", **dict.fromkeys(list(flux.testing.PROPERTIES)[1:], "skip")}
    assert report.results[0].detail.startswith("the uninterrupted run stopped: SecretError:")
    with pytest.raises(DeterminismError, match="- run: the uninterrupted run ends without engine trouble"):
        check_workflow(W.needs_secret, [1])


def test_check_once_works_from_inside_a_running_event_loop() -> None:
    async def from_async_code() -> flux.testing.CheckReport:
        return check_once(W.dispatch_fixed, 3, cuts=2, subprocess_replay=False)

    report = asyncio.run(from_async_code())
    assert report.ok, report.describe()
    assert report.output == "order 3 shipped"



def test_a_workflow_another_process_cannot_load_is_refused_unless_subprocess_replay_is_off() -> None:
    @workflow
    async def local(ctx: ExecutionContext[int]) -> int:
        return await W.reserve_stock(ctx.input)

    with pytest.raises(WorkflowLoadError, match="not defined at the top level of a .py file.*subprocess_replay=False"):
        check_once(local, 1)
    report = check_once(local, 1, subprocess_replay=False)
    assert report.ok and statuses(report)["replay-subprocess"] == "skip"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cuts": -1}, "cuts=-1 must be 'all' or an int >= 0"),
        ({"cuts": "some"}, "cuts='some' must be 'all' or an int >= 0"),
        ({"max_examples": 0}, "max_examples=0 must be an int >= 1"),
        ({"clock": 3}, "clock=3 must be a callable"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=re.escape(message)):
        check_workflow(W.dispatch_fixed, [1], **options)


def test_inputs_must_be_a_strategy_or_a_list() -> None:
    with pytest.raises(InvalidOptionError, match="to check one input, pass"):
        check_workflow(W.dispatch_fixed, "abc")


def test_cut_points_spread_evenly() -> None:
    assert _cut_points(7, "all") == [1, 2, 3, 4, 5, 6]
    assert _cut_points(7, 10) == [1, 2, 3, 4, 5, 6]
    assert _cut_points(11, 3) == [1, 5, 10]
    assert _cut_points(11, 1) == [6]
    assert _cut_points(11, 0) == []


@dataclasses.dataclass
class Box:
    size: int

    def __post_init__(self) -> None:
        self.area = self.size * self.size


@pytest.mark.parametrize(
    ("expected", "actual", "found"),
    [
        (1, 1.0, "output: got 1.0 of type float, expected 1 of type int"),
        (True, 1, "output: got 1 of type int, expected True of type bool"),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, "output: the same keys in another order"),
        ([0.0], [-0.0], "output[0]: got -0.0, expected 0.0"),
        ((1, 2), [1, 2], "output: got [1, 2] of type list, expected (1, 2) of type tuple"),
        (ValueError("x"), ValueError("y"), "output: got ValueError('y'), expected ValueError('x')"),
        (
            dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1), "CET")),
            dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "output.tzinfo: got datetime.timezone(datetime.timedelta(seconds=3600)), expected",
        ),
    ],
)
def test_outputs_are_compared_strictly(expected: Any, actual: Any, found: str) -> None:
    text = difference(expected, actual)
    assert text is not None and text.startswith(found), text


def test_strict_comparison_accepts_equal_values_and_sees_missing_attributes() -> None:
    same = [math.nan, {"k": (1, b"x")}, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), Box(3), ValueError("x")]
    again = [math.nan, {"k": (1, b"x")}, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), Box(3), ValueError("x")]
    assert difference(same, again) is None
    rebuilt = Box.__new__(Box)  # what the codec does: no __init__, so no __post_init__
    object.__setattr__(rebuilt, "size", 3)
    assert difference(Box(3), rebuilt) == "output.area: missing, expected 9"


# -- one line in a user's test: the pytest fixture, and the command line -----------------------


@pytest.mark.slow
def test_the_pytest_plugin_gives_a_one_line_fixture(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            from hypothesis import strategies as st
            from tests import determinism_workflows as W

            def test_fixed(flux_check):
                flux_check(W.dispatch_fixed, st.integers(0, 9), max_examples=2, cuts=3)

            def test_buggy(flux_check):
                flux_check(W.dispatch, st.integers(0, 9), max_examples=2)
            """
        )
    )
    env = {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout
    assert "DeterminismError: workflow 'dispatch' is not deterministic for input 0:" in proc.stdout
    assert (
        "interrupted after record seq=0 (header) of 7, then resumed: the resumed run asked for ship(0," in proc.stdout
    )


@pytest.mark.slow
def test_flux_check_command_prints_a_table_and_exits_1_on_failure(tmp_path: Path) -> None:
    proc = flux_cmd(
        "check", WORKFLOWS, "dispatch", "--input", "3", "--cuts", "6", "--tmp-dir", str(tmp_path), cwd=tmp_path,
        env={"COLUMNS": "300"},
    )
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"^resume\s+FAIL\s+6\s+interrupted after record seq=0 \(header\) of 7", proc.stdout, re.M)
    assert re.search(r"^no-rerun\s+PASS\s+6", proc.stdout, re.M)
    assert "NondeterminismError" in proc.stdout and "not deterministic; journals kept in" in proc.stdout


@pytest.mark.slow
def test_flux_check_command_exits_0_when_every_property_holds(tmp_path: Path) -> None:
    proc = flux_cmd(
        "check", WORKFLOWS, "fulfil", "--input", "[2, 5]", "--resume-input", '"ok"',
        cwd=tmp_path, env={"COLUMNS": "300"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in flux.testing.PROPERTIES:
        assert re.search(rf"^{name}\s+PASS", proc.stdout, re.M), proc.stdout
    assert "'approval': 'ok'" in proc.stdout


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["fulfil", "--input", "[1,"], "ValueError: --input is not valid JSON"),
        (["fulfil", "--input", "[1]", "--resume-input", "{"], "ValueError: --resume-input is not valid JSON"),
        (["nope", "--input", "1"], "WorkflowLoadError:"),
        (["fulfil", "--input", "[1]", "--cuts", "-2"], "InvalidOptionError: cuts=-2 must be 'all' or an int >= 0"),
    ],
)
def test_flux_check_command_exits_2_on_bad_input(tmp_path: Path, args: list[str], error: str) -> None:
    proc = flux_cmd("check", WORKFLOWS, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert error in proc.stderr


def test_a_small_set_iterated_is_caught_on_every_check() -> None:
    for _ in range(3):
        report = check_once(W.greet_trio, 1)
        assert report.first_failure is not None and report.first_failure.name == "replay-subprocess", report.describe()
