"""The fault battery (benchmarks/battery.py) at its CI size: every figure that must be 0 is 0.

Each scenario is a real test of the engine, not a run of the script: its function returns the
figures and the assertions below name the ones the README quotes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.battery import SCENARIOS, render
from benchmarks.battery_kit import SIZES, Figures
from flux._engine import faults

CI = SIZES["ci"]
SEED = 1


def run(name: str, tmp_path: Path) -> Figures:
    fig = SCENARIOS[name](CI, SEED, str(tmp_path))
    assert not fig.failed, render([fig], CI, SEED)
    return fig


@pytest.mark.slow
def test_kill_loop_loses_and_repeats_nothing_acknowledged(tmp_path: Path) -> None:
    fig = run("kill", tmp_path)
    v = fig.values
    assert v["kills"] >= 200
    assert all(int(n) >= 40 for n in v["kills_by_mode"].split(" / "))  # every boundary, and random moments
    assert v["acked_lost"] == v["acked_bytes_changed"] == v["duplicates"] == v["divergences"] == 0
    assert v["reruns_after_ack"] == v["early_bodies"] == v["unreadable"] == v["errors"] == 0
    done, total = v["equal_output"].split("/")
    assert done == total and int(total) >= 10


@pytest.mark.slow
def test_power_loss_keeps_every_acknowledged_record_and_a_clean_prefix(tmp_path: Path) -> None:
    fig = run("power", tmp_path)
    v = fig.values
    assert v["states"] >= 2000
    assert v["acked_lost"] == v["unclean"] == v["failed"] == 0
    assert v["torn_cut"] > 1000  # most states leave something to cut: the test reaches the repair
    assert v["resumed"].split("/")[0] == v["resumed"].split("/")[1]


@pytest.mark.slow
def test_a_journal_cut_at_every_byte_recovers_exactly_its_complete_records(tmp_path: Path) -> None:
    fig = run("truncation", tmp_path)
    assert int(fig.values["journal_bytes"]) >= 20_000
    assert fig.values["cuts"] == int(fig.values["journal_bytes"]) + 1
    assert fig.values["wrong"] == 0


@pytest.mark.slow
def test_every_corruption_is_repaired_as_torn_or_reported_with_path_and_line(tmp_path: Path) -> None:
    fig = run("corruption", tmp_path)
    v = fig.values
    assert v["cases"] >= 20_000
    assert v["accepted"] == v["crashes"] == 0
    assert v["corrupt"] + v["torn"] == v["cases"]
    by_case = v["by_case"]
    assert sum(by_case["bit flip"].values()) == 8 * v["journal_bytes"]
    for label in ("crafted: NaN", "crafted: duplicate seq", "crafted: huge integer", "crafted: nesting 100000",
                  "crafted: seq as true/false", "swapped lines", "foreign line"):
        assert set(by_case[label]) == {"corrupt"}, (label, by_case[label])


@pytest.mark.slow
def test_racing_resumers_have_exactly_one_owner_and_a_late_writer_is_refused(tmp_path: Path) -> None:
    fig = run("race", tmp_path)
    v = fig.values
    assert v["one_owner"] == v["takeover"] == f"{CI.race_rounds}/{CI.race_rounds}"
    assert v["journal_owners"] is True
    assert v["stopped"].split("/")[0] == v["stopped"].split("/")[1] != "0"
    assert v["unlinked"].split("/")[0] == v["unlinked"].split("/")[1] != "0"
    assert v["late_writer"].split("/")[0] == v["late_writer"].split("/")[1] != "0"


@pytest.mark.slow
def test_disk_faults_stop_the_run_with_one_clear_error_and_a_readable_journal(tmp_path: Path) -> None:
    fig = run("disk", tmp_path)
    v = fig.values
    assert v["runs"] == 4 * CI.disk_cases_per_fault
    for key in ("stopped", "clear", "readable", "resumed", "short_ok"):
        done, total = v[key].split("/")
        assert done == total and int(total) > 0, key
    assert v["early"] == 0


@pytest.mark.slow
def test_a_store_of_many_executions_lists_resumes_and_recovers_without_leaking(tmp_path: Path) -> None:
    fig = run("many", tmp_path)
    v = fig.values
    assert v["executions"] >= CI.executions
    assert v["flux_list_ok"] == 0  # how long listing took is in the battery's report, not checked here
    assert v["fd_leak"] == "0 / 0"
    assert v["left_interrupted"] == 0 and v["recover_wrong"] == 0


def test_fault_rules_are_parsed_and_bad_ones_named() -> None:
    rules = faults.parse("kill:3:after_write, fail:2:write:ENOSPC,short:1:write,none")
    assert [(r.action, r.n, r.point) for r in rules] == [
        ("kill", 3, "after_write"), ("fail", 2, "write"), ("short", 1, "write")
    ]
    for bad in ("kill:x:after_write", "boom:1:write", "kill:1:nowhere", "fail:1:write:ENOPE", "short:1:after_write",
                "kill:1:write:EIO"):
        with pytest.raises(faults.FaultSpecError, match="fault rule"):
            faults.parse(bad)


def test_the_hooks_are_unarmed_in_a_normal_process() -> None:
    from flux._engine.stores import files as journal

    assert faults.ACTIVE is False and journal._FAULTS is False
    assert journal._WRITE is __import__("os").write


@pytest.mark.slow
def test_the_battery_script_prints_one_table_and_exits_0(tmp_path: Path) -> None:
    from benchmarks.battery import main

    assert main(["--only", "corruption", "--dir", str(tmp_path)]) == 0
    assert list(tmp_path.iterdir()) == []  # the work directory is removed
