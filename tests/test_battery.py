"""The fault battery (benchmarks/battery.py) at its CI size: every figure that must be 0 is 0.

Each scenario is a real test of the engine, not a run of the script: its function returns the
figures and the assertions below name the ones the README quotes.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from benchmarks.battery import SCENARIOS, render
from benchmarks.battery_kit import SIZES, Figures
from flux import ExecutionContext, task, workflow
from flux._engine import faults
from flux._engine.stores.files import FileStore
from flux.errors import DurabilityError, StoreError
from flux.tasks import pause

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
    assert v["kills"] >= 200 and v["points_missed"] == 0  # every point of the store was killed at
    assert all(int(n) >= 20 for n in v["kills_by_mode"].split(" / "))  # every boundary of a sync
    assert v["past_eighth"] >= 20
    assert v["acked_lost"] == v["acked_bytes_changed"] == v["duplicates"] == v["divergences"] == 0
    assert v["reruns_after_ack"] == v["early_bodies"] == v["unreadable"] == v["errors"] == 0
    done, total = v["equal_output"].split("/")
    assert done == total and int(total) >= 10
    asked, unasked = v["unasked"].split("/")
    assert asked == unasked != "0"


@pytest.mark.slow
def test_power_loss_keeps_every_acknowledged_record_and_a_clean_prefix(tmp_path: Path) -> None:
    fig = run("power", tmp_path)
    v = fig.values
    assert v["states"] >= 2000
    assert v["acked_lost"] == v["unclean"] == v["failed"] == v["crashes"] == 0
    assert v["torn_cut"] > 1000  # most states leave something to cut: the test reaches the repair
    assert v["out_of_order"] > 100  # a later page on disk, an earlier one not
    damage, torn = (int(n) for n in v["stale"].split(" / "))
    assert damage > 100 and v["stale_accepted"] == v["stale_wrong"] == 0
    assert v["resumed"].split("/")[0] == v["resumed"].split("/")[1]
    assert v["lost_entries"] >= CI.lost_entries and v["lost_tracebacks"] == 0
    for key in ("lost_absent", "lost_again", "lost_child"):
        done, total = v[key].split("/")
        assert done == total != "0", key


@pytest.mark.slow
def test_a_journal_cut_at_every_byte_recovers_exactly_its_complete_records(tmp_path: Path) -> None:
    fig = run("truncation", tmp_path)
    assert int(fig.values["journal_bytes"]) >= 20_000
    assert fig.values["cuts"] == int(fig.values["journal_bytes"]) + 1
    assert fig.values["wrong"] == fig.values["on_disk_wrong"] == 0
    assert fig.values["on_disk"] == CI.truncation_store_cuts


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
    # Through every command: wrong types, unknown kinds and wrong values in every field.
    assert v["cmd_journals"] >= CI.command_journals and v["cmd_runs"] == 7 * v["cmd_journals"]
    fields, declared = v["cmd_fields"].split(" of ")
    assert fields == declared
    assert v["cmd_tracebacks"] == v["cmd_hangs"] == v["cmd_long_errors"] == v["cmd_changed"] == 0
    assert v["cmd_unnamed"] == 0


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
    assert v["runs"] == 4 * CI.disk_cases_per_fault + 16
    for key in ("stopped", "clear", "readable", "resumed", "short_ok"):
        done, total = v[key].split("/")
        assert done == total and int(total) > 0, key
    assert v["early"] == v["temporary"] == v["torn_whole"] == 0
    durability, store = (int(n) for n in v["clear_kinds"].split(" / "))
    assert durability > 0 and store > 0  # journal, header and blob writes; lock and .torn writes


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


def test_short_writes_only_at_write_points_and_every_point_is_known() -> None:
    assert set(faults.WRITE_POINTS) <= set(faults.POINTS)
    for point in faults.POINTS:
        assert faults.parse(f"kill:1:{point}")[0].point == point
        assert faults.parse(f"fail:2:{point}:ENOSPC")[0].errno == errno.ENOSPC
        if point in faults.WRITE_POINTS:
            assert faults.parse(f"short:1:{point}")[0].action == "short"
        else:
            with pytest.raises(faults.FaultSpecError, match="short write"):
                faults.parse(f"short:1:{point}")


@task.with_options(output_storage=True)
async def _stored(x: int) -> list[int]:
    return [x] * 3


@task.with_options(cache=True)
async def _cached(x: int) -> int:
    return x + 1


@workflow
async def _every_write(ctx: ExecutionContext[int]) -> int:
    got = await _stored(ctx.input)
    more = await _cached(ctx.input)
    answer = await pause("gate")
    return sum(got) + more + answer


def test_every_point_is_reached_where_the_store_writes(home: Path, armed_faults: None) -> None:
    ctx = _every_write.run(2)
    assert ctx.status == "paused"
    journal = Path(ctx.journal_path)
    with journal.open("ab") as fh:
        fh.write(b'{"seq":')  # a torn tail: the resume cuts it into .torn
    FileStore(str(home)).request_cancel(ctx.execution_id)
    Path(str(journal)[:-6] + ".cancel").unlink()
    assert _every_write.resume(ctx.execution_id, 1).output == 6 + 3 + 1
    FileStore(str(home)).mark_diverged(ctx.execution_id, {"call_id": "1"})  # what a worker keeps
    reached = {point for point, n in faults._counts.items() if n > 0}
    # `schedule_fired` is a point of the scheduler, reached by tests/test_schedules.py's kill.
    assert reached == set(faults.POINTS) - {"schedule_fired"}


def test_a_failing_point_raises_its_errno_at_that_place(home: Path, armed_faults: None) -> None:
    faults.configure("fail:1:blob_rename:EROFS")
    with pytest.raises(DurabilityError, match="Read-only file system"):
        _every_write.run(2)
    assert list((home / "blobs").iterdir()) == []  # the temporary file was removed
    faults.configure("fail:1:lock_write:ENOSPC")
    with pytest.raises(StoreError, match="No space left"):
        _every_write.run(2)


def test_the_hooks_are_unarmed_in_a_normal_process() -> None:
    from flux._engine.stores import files as journal

    assert faults.ACTIVE is False and journal._FAULTS is False
    assert journal._WRITE is __import__("os").write


@pytest.mark.slow
def test_the_battery_script_prints_one_table_and_exits_0(tmp_path: Path) -> None:
    from benchmarks.battery import main

    assert main(["--only", "truncation", "--dir", str(tmp_path)]) == 0
    assert list(tmp_path.iterdir()) == []  # the work directory is removed
