"""`flux replay` as a debugger: call timelines, --until, --break-at (pdb), divergence views, --json,
--summary, `flux show`, and bad input (another workflow, a newer format, damage)."""

from __future__ import annotations

import io
import os
import pdb
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux import debug
from flux._engine.errors import JournalCorruptError
from flux._engine.journal import encode_line, encode_line_body, seed_for
from flux.errors import WorkflowLoadError
from flux.loader import load_file
from flux.timeline import error_summary, timeline
from tests.conftest import ROOT, flux_cmd
from tests.support.cli import invoke

FLOWS = textwrap.dedent(
    """
    import asyncio

    from flux import ExecutionContext, task, workflow
    from flux.tasks import now, pause

    TRIES = {}


    @task
    async def double(x: int) -> int:
        return x * 2


    @task.with_options(retry_max_attempts=2, retry_delay=0)
    async def flaky(key: str) -> str:
        TRIES[key] = TRIES.get(key, 0) + 1
        if TRIES[key] < 3:
            raise RuntimeError(f"try {TRIES[key]}")
        return f"{key} after {TRIES[key]}"


    @task
    async def boom(message: str) -> None:
        raise ValueError(message)


    @workflow
    async def calc(ctx: ExecutionContext[int]) -> dict:
        a = await double(ctx.input)  # LINE-A
        b = await double(a)  # LINE-B
        c = await flaky(key="k")  # LINE-C
        try:
            await boom("bad")  # LINE-BOOM
        except Exception as err:
            e = type(err.__cause__).__name__
        when = await now()  # LINE-NOW
        lanes = await asyncio.gather(double(b), double(b + 1))  # LINE-LANES
        approved = await pause("approve")  # LINE-PAUSE
        return {"a": a, "b": b, "c": c, "e": e, "lanes": lanes, "approved": approved, "year": when.year}


    @workflow
    async def other(ctx: ExecutionContext[int]) -> int:
        return await double(ctx.input)
    """
)


def _line(source: str, marker: str) -> int:
    return next(i for i, text in enumerate(source.splitlines(), 1) if marker in text)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One finished execution of `calc` (input 3, resumed with "yes") and one paused one."""
    root = tmp_path_factory.mktemp("debugger")
    (root / "flows_dbg.py").write_text(FLOWS)
    module = load_file(str(root / "flows_dbg.py"))
    home = str(root / "store")
    done = module.calc.run(3, store=home, durability="os")
    assert done.status == "paused"
    done = module.calc.resume(done.execution_id, "yes", store=home, durability="os")
    assert done.status == "completed", done.output
    module.TRIES.clear()
    waiting = module.calc.run(5, store=home, durability="os")
    assert waiting.status == "paused"
    return {
        "root": root,
        "home": home,
        "done": done.journal_path,
        "waiting": waiting.journal_path,
        "records": [orjson.loads(line) for line in Path(done.journal_path).read_bytes().splitlines()],
    }


def _invoke(*args: str) -> Any:
    return invoke(*args)


def _seq_of(records: list[dict[str, Any]], kind: str, call_id: str) -> int:
    return next(r["seq"] for r in records if r["kind"] == kind and r.get("call_id") == call_id)


# -- timeline -----------------------------------------------------------------------------------


def test_timeline_has_one_row_per_call_with_its_outcome_attempts_and_source(recorded: dict[str, Any]) -> None:
    listed = timeline(recorded["records"])
    rows = {row.call_id: row for row in listed}
    assert [row.call_id for row in listed][:5] == ["1", "2", "3", "4", "5"] and len(listed) == 8
    assert [row.seq for row in listed] == sorted(row.seq for row in listed)
    a = rows["1"]
    assert (a.kind, a.name, a.args, a.outcome, a.value, a.attempts) == ("task", "double", [3], "completed", 6, 1)
    assert a.src == f"flows_dbg.py:{_line(FLOWS, 'LINE-A')}"
    assert a.duration_ms is not None and a.duration_ms >= 0 and a.end_seq == a.seq + 1
    assert (rows["3"].kwargs, rows["3"].attempts, rows["3"].value) == ({"key": "k"}, 3, "k after 3")
    assert rows["4"].outcome == "failed" and error_summary(rows["4"].error) == {"type": "ValueError", "message": "bad"}
    assert (rows["5"].kind, rows["5"].name, rows["5"].outcome) == ("value", "now", "recorded")
    lanes = sorted((row.args, row.value) for row in listed[5:7])
    assert lanes == [([12], 24), ([13], 26)]
    pause = listed[-1]
    assert (pause.kind, pause.name, pause.outcome, pause.value) == ("pause", "approve", "resumed", "yes")
    assert pause.src == f"flows_dbg.py:{_line(FLOWS, 'LINE-PAUSE')}"


def test_show_lists_calls_and_keeps_the_record_view(recorded: dict[str, Any]) -> None:
    execution_id = Path(recorded["done"]).stem
    calls = _invoke("show", execution_id, "--home", recorded["home"])
    records = _invoke("show", execution_id, "--records", "--home", recorded["home"])
    assert calls.exit_code == 0 and records.exit_code == 0
    assert "flaky" in calls.output and "task_completed" not in calls.output
    assert "task_completed" in records.output and "retry_started" in records.output


# -- replay: timeline, json, summary ------------------------------------------------------------


def test_replay_prints_the_calls_and_the_verdict(recorded: dict[str, Any]) -> None:
    shown = flux_cmd(
        "replay", Path(recorded["done"]).stem, "--store", recorded["home"], cwd=recorded["root"], env={"COLUMNS": "200"}
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    row = next(line for line in lines if " double(3) " in line)
    assert "→ 6" in row and f"flows_dbg.py:{_line(FLOWS, 'LINE-A')}" in row
    assert "✗ ValueError: bad" in shown.stdout
    assert "the code reproduces the recorded output" in lines[-1]


def test_replay_json_is_the_same_for_scripts(recorded: dict[str, Any]) -> None:
    result = _invoke("replay", recorded["done"], "--json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["status"] == "completed" and data["matches"] is True and data["records"] == len(recorded["records"])
    assert data["workflow"] == "calc"
    flaky = next(c for c in data["calls"] if c["name"] == "flaky")
    assert flaky["attempts"] == 3 and flaky["value"] == "k after 3" and flaky["src"].startswith("flows_dbg.py:")
    assert data["output"]["approved"] == "yes"


def test_summary_is_one_line(recorded: dict[str, Any]) -> None:
    result = _invoke("replay", recorded["waiting"], "--summary")
    assert result.exit_code == 0, result.output
    (line,) = result.output.strip().splitlines()
    assert "matches the journal up to its last record" in line and "8 calls" in line
    by_id = _invoke("replay", Path(recorded["waiting"]).stem, "--home", recorded["home"], "--summary")
    assert by_id.exit_code == 0 and Path(recorded["waiting"]).stem in by_id.output and "8 calls" in by_id.output


def _copy_paused(recorded: dict[str, Any], into: Path) -> tuple[Path, Path]:
    """The paused execution's journal and its replay snapshot, copied into a store of their own."""
    source = Path(recorded["waiting"])
    executions = into / "store" / "executions"
    executions.mkdir(parents=True)
    journal = executions / source.name
    journal.write_bytes(source.read_bytes())
    snapshot = journal.with_suffix(".index")
    snapshot.write_bytes(source.with_suffix(".index").read_bytes())
    return journal, snapshot


def test_a_summary_starts_from_the_snapshot_a_pause_left_and_finds_what_a_full_check_finds(
    recorded: dict[str, Any], tmp_path: Path
) -> None:
    journal, _ = _copy_paused(recorded, tmp_path)
    flows = str(recorded["root"] / "flows_dbg.py")
    fast = debug.replay(str(journal), file=flows, calls=False, snapshot=True)
    slow = debug.replay(str(journal), file=flows, calls=False)
    fields = ("status", "recorded_status", "matches", "note", "records", "replayed", "call_count")
    assert [getattr(fast, f) for f in fields] == [getattr(slow, f) for f in fields]
    assert fast.matches and fast.call_count == 8 and fast.recorded_status == "paused"

    changed = tmp_path / "flows_snapshot_changed.py"
    changed.write_text(FLOWS.replace("b = await double(a)", "b = await double(a + 1)"))
    fast = debug.replay(str(journal), file=str(changed), calls=False, snapshot=True)
    slow = debug.replay(str(journal), file=str(changed), calls=False)
    assert fast.divergence is not None and slow.divergence is not None
    assert fast.divergence.as_json() == slow.divergence.as_json()
    assert fast.divergence.as_json()["recorded"]["args"] == [10]


def test_a_summary_takes_the_lines_a_snapshot_vouches_for_and_full_checks_them_again(
    recorded: dict[str, Any], tmp_path: Path
) -> None:
    """A line rewritten with a space and sealed again (its CRC holds; no Flux wrote it), and the
    snapshot sealed again over the new bytes: the summary takes the prefix as the snapshot
    vouches for it, as a resume does; `--full` checks every line and names that one."""
    journal, snapshot = _copy_paused(recorded, tmp_path)
    execution_id = journal.stem
    seed = seed_for(execution_id)
    lines = journal.read_bytes().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if b'"kind":"task_started"' in line)
    body = lines[at][: lines[at].rindex(b',"crc":"')] + b"}"
    lines[at] = encode_line_body(body.replace(b'"kind":', b'"kind": ', 1), seed)
    data = b"".join(lines)
    journal.write_bytes(data)
    state = orjson.loads(snapshot.read_bytes())
    del state["crc"]
    state["size"], state["prefix_crc"] = len(data), zlib.crc32(data)
    snapshot.write_bytes(encode_line_body(orjson.dumps(state), seed))

    flows = str(recorded["root"] / "flows_dbg.py")
    summary = _invoke("replay", str(journal), "--file", flows, "--summary")
    assert summary.exit_code == 0, summary.output
    assert "matches the journal up to its last record" in summary.output
    full = flux_cmd("replay", str(journal), "--file", flows, "--summary", "--full", cwd=recorded["root"])
    assert full.returncode == 2 and full.stdout == ""
    assert f"{journal}:{at + 1}" in full.stderr and "not as Flux writes it" in full.stderr
    with pytest.raises(JournalCorruptError) as caught:
        debug.replay(str(journal), file=flows, calls=False)
    assert caught.value.line == at + 1
    assert journal.read_bytes() == data and snapshot.exists()  # nothing changed


# -- --until ------------------------------------------------------------------------------------


def test_until_shows_the_calls_so_far_and_the_workflows_locals_there(recorded: dict[str, Any]) -> None:
    records = recorded["records"]
    after_b = _seq_of(records, "task_completed", "2")
    result = debug.replay(recorded["done"], until=after_b)
    assert result.status == "stopped" and result.matches
    assert [row.call_id for row in result.calls or []] == ["1", "2"]
    assert result.stop is not None and result.stop.call_id == "3" and result.stop.seq == after_b
    frame = result.stop.frames[0]
    assert (frame.function, frame.line) == ("calc", _line(FLOWS, "LINE-C"))
    assert frame.locals["a"] == "6" and frame.locals["b"] == "12" and "c" not in frame.locals

    shown = _invoke("replay", recorded["done"], "--until", str(after_b))
    assert shown.exit_code == 0
    assert f"stopped after seq {after_b}" in shown.output and "flows_dbg.py" in shown.output


def test_until_inside_a_gather_stops_in_the_branch(recorded: dict[str, Any]) -> None:
    rows = timeline(recorded["records"])
    lane = next(row for row in rows if row.args == [12])
    result = debug.replay(recorded["done"], until=lane.seq)  # started, its outcome not replayed
    assert result.stop is not None and result.status == "stopped"
    assert result.stop.frames[0].line == _line(FLOWS, "LINE-LANES")
    assert result.stop.frames[0].locals["b"] == "12"


def test_until_past_the_end_says_how_many_records(recorded: dict[str, Any]) -> None:
    count = len(recorded["records"])
    result = _invoke("replay", recorded["done"], "--until", str(count))
    assert result.exit_code == 2
    assert f"the journal has {count} records" in result.output


# -- --break-at ---------------------------------------------------------------------------------


class _ScriptedPdb(pdb.Pdb):
    def __init__(self, commands: str) -> None:
        self.transcript = io.StringIO()
        super().__init__(stdin=io.StringIO(commands), stdout=self.transcript, nosigint=True, readrc=False)
        self.use_rawinput = False


def test_break_at_stops_in_the_workflow_after_the_await_with_the_value_assigned(recorded: dict[str, Any]) -> None:
    records = recorded["records"]
    seq = _seq_of(records, "task_completed", "2")
    dbg = _ScriptedPdb("p a, b\nc\n")
    hits: list[debug.BreakPoint] = []

    def on_break(point: debug.BreakPoint) -> None:
        hits.append(point)
        debug.break_into(point, dbg)

    result = debug.replay(recorded["done"], break_at=str(seq), on_break=on_break)
    assert result.matches and result.status == "completed"
    assert [(h.call_id, h.seq) for h in hits] == [("2", seq)]
    text = dbg.transcript.getvalue()
    assert f"flows_dbg.py({_line(FLOWS, 'LINE-C')})calc()" in text  # the line after the await
    assert "(6, 12)" in text  # b already holds the recorded value


def test_break_at_a_task_name_breaks_at_its_first_call(recorded: dict[str, Any]) -> None:
    seen: list[tuple[str, str]] = []
    result = debug.replay(recorded["done"], break_at="flak*", on_break=lambda p: seen.append((p.call_id, p.name)))
    assert result.matches and seen == [("3", "flaky")]


def test_break_at_in_pdb_through_the_command_line(recorded: dict[str, Any]) -> None:
    seq = _seq_of(recorded["records"], "task_completed", "1")
    run = subprocess.run(
        [sys.executable, "-m", "flux", "replay", Path(recorded["done"]).stem, "--store", recorded["home"]]
        + ["--break-at", str(seq), "--summary"],
        cwd=recorded["root"], env={**os.environ, "PYTHONPATH": str(ROOT)}, input="p a\nc\n",
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert f"flows_dbg.py({_line(FLOWS, 'LINE-B')})calc()" in run.stdout
    assert "(Pdb) 6\n" in run.stdout
    assert "the code reproduces the recorded output" in run.stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [("999", "the journal has {count} records (seq 0 to {last})"), ("1", "record 1 is workflow_started"),
     ("nope", "no call of that name")],
)
def test_break_at_outside_the_journal_is_one_line_and_exit_2(
    recorded: dict[str, Any], target: str, message: str
) -> None:
    count = len(recorded["records"])
    result = _invoke("replay", recorded["done"], "--break-at", target)
    assert result.exit_code == 2
    assert message.format(count=count, last=count - 1) in result.output
    assert len(result.output.strip().splitlines()) == 1


# -- divergence ---------------------------------------------------------------------------------


def test_divergence_is_shown_side_by_side_with_the_argument_diff(recorded: dict[str, Any]) -> None:
    changed = recorded["root"] / "flows_changed.py"
    changed.write_text(FLOWS.replace("b = await double(a)", "b = await double(a + 1)"))
    before = Path(recorded["done"]).read_bytes()
    run = flux_cmd("replay", recorded["done"], "--file", str(changed), cwd=recorded["root"], env={"COLUMNS": "200"})
    assert run.returncode == 2 and "NondeterminismError" in run.stderr
    seq = _seq_of(recorded["records"], "task_started", "2")
    out = run.stdout
    assert "journal" in out and "code now" in out
    assert "double(6)" in out and "double(7)" in out
    assert f"flows_dbg.py:{_line(FLOWS, 'LINE-B')}" in out and f"flows_changed.py:{_line(FLOWS, 'LINE-B')}" in out
    assert next(line for line in out.splitlines() if line.startswith("args[0]")).split() == ["args[0]", "6", "7"]
    assert f"first record where they part: seq {seq} (line {seq + 1})" in out
    assert f"{recorded['done']}:{seq + 1}" in out
    assert Path(recorded["done"]).read_bytes() == before

    data = orjson.loads(_invoke("replay", recorded["done"], "--file", str(changed), "--json").stdout)
    assert data["status"] == "diverged" and data["line"] == seq + 1 and data["call_id"] == "2"
    assert data["recorded"]["args"] == [6] and data["current"]["args"] == [7]


def test_a_call_left_out_is_a_divergence_with_nothing_on_the_code_side(recorded: dict[str, Any]) -> None:
    changed = recorded["root"] / "flows_shorter.py"
    changed.write_text(FLOWS.replace('approved = await pause("approve")', 'approved = "yes"'))
    result = debug.replay(recorded["done"], file=str(changed))
    assert result.status == "diverged" and result.divergence is not None
    assert result.divergence.current is None and result.divergence.recorded["kind"] == "workflow_paused"


def test_a_call_past_the_end_of_a_finished_run_is_a_divergence(recorded: dict[str, Any]) -> None:
    changed = recorded["root"] / "flows_longer.py"
    source = FLOWS.replace('    return {"a": a,', '    await double(99)  # LINE-NEW\n    return {"a": a,')
    changed.write_text(source)
    result = debug.replay(recorded["done"], file=str(changed))
    assert result.status == "diverged" and result.divergence is not None
    current = result.divergence.current or {}
    assert (current["kind"], current["name"], current["args"]) == ("task", "double", [99])
    assert current["src"] == f"flows_longer.py:{_line(source, 'LINE-NEW')}"
    assert result.divergence.recorded is None and "the recorded run completed without it" in result.note
    shown = _invoke("replay", recorded["done"], "--file", str(changed))
    assert shown.exit_code == 2 and "double(99)" in shown.output


def test_a_different_output_is_reported_and_exits_1(recorded: dict[str, Any]) -> None:
    changed = recorded["root"] / "flows_output.py"
    changed.write_text(FLOWS.replace('"year": when.year', '"year": 0'))
    result = _invoke("replay", recorded["done"], "--file", str(changed), "--summary")
    assert result.exit_code == 1 and "the code now returns" in result.output


# -- bad input ----------------------------------------------------------------------------------


def test_a_journal_of_another_workflow_names_the_journal_and_the_file(recorded: dict[str, Any], tmp_path: Path) -> None:
    elsewhere = tmp_path / "unrelated.py"
    elsewhere.write_text(FLOWS.replace("async def calc(", "async def calculate("))
    before = Path(recorded["done"]).read_bytes()
    result = _invoke("replay", recorded["done"], "--file", str(elsewhere))
    assert result.exit_code == 2
    assert "WorkflowLoadError" in result.output and f"{recorded['done']}:1" in result.output
    assert "unrelated.py" in result.output and "'calc'" in result.output
    assert Path(recorded["done"]).read_bytes() == before


def test_a_workflow_renamed_under_the_same_attribute_is_refused(recorded: dict[str, Any], tmp_path: Path) -> None:
    renamed = tmp_path / "renamed.py"
    renamed.write_text(
        FLOWS.replace("@workflow\nasync def calc(", '@workflow.with_options(name="calc2")\nasync def calc(')
    )
    with pytest.raises(WorkflowLoadError, match="is of workflow 'calc'"):
        debug.replay(recorded["done"], file=str(renamed))


def _copy_store(recorded: dict[str, Any], tmp_path: Path) -> Path:
    src = Path(recorded["done"])
    folder = tmp_path / "executions"
    folder.mkdir()
    target = folder / src.name
    target.write_bytes(src.read_bytes())
    return target


def test_a_newer_format_version_names_the_file_and_line_and_changes_nothing(
    recorded: dict[str, Any], tmp_path: Path
) -> None:
    journal = _copy_store(recorded, tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    header = orjson.loads(lines[0])
    del header["crc"]
    header["format"] = 2
    journal.write_bytes(encode_line(header, seed_for(journal.stem)) + b"".join(lines[1:]))
    before = journal.read_bytes()
    result = _invoke("replay", str(journal))
    assert result.exit_code == 2
    assert f"JournalCorruptError: {journal}:1:" in result.output
    assert "format version 2 is not supported" in result.output
    assert journal.read_bytes() == before


def test_a_damaged_line_names_the_file_and_line_and_changes_nothing(recorded: dict[str, Any], tmp_path: Path) -> None:
    journal = _copy_store(recorded, tmp_path)
    data = bytearray(journal.read_bytes())
    fifth = [i for i, byte in enumerate(data) if byte == ord("\n")][3] + 1  # the start of line 5
    data[fifth + 20] ^= 0x01
    journal.write_bytes(bytes(data))
    before = journal.read_bytes()
    for args in (
        ("replay", str(journal)), ("replay", str(journal), "--until", "3"), ("replay", str(journal), "--json")
    ):
        result = _invoke(*args)
        assert result.exit_code == 2
        assert f"JournalCorruptError: {journal}:5:" in result.output
    assert journal.read_bytes() == before
    assert sorted(os.listdir(journal.parent)) == [journal.name]
