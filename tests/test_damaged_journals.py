"""Journals whose lines carry valid checksums but fields of the wrong type, or kinds that do not
exist, run through every command that reads journals: each is one `JournalCorruptError` line
naming path:line (exit 2), never a traceback; store-wide commands report it and go on."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux import ExecutionContext, Saga, task, workflow
from flux._engine.journal import encode_line, seed_for
from flux.errors import DecodeError
from flux.tasks import now, pause, sleep
from tests.support.cli import invoke

WRONG: dict[type, list[Any]] = {
    str: [["a list"], 7, None],
    int: ["7", [7], True],
    list: [5, "[1]", {"a": 1}],
    dict: ["{}", [1], 3],
    float: ["soon", [1.0]],
    bool: [1, "true"],
}


@task.with_options(retry_max_attempts=1, retry_delay=0)
async def flaky(x: int) -> int:
    if not TRIED:
        TRIED.append(x)
        raise ValueError("once")
    return x


TRIED: list[int] = []


@task
async def undo(x: Any) -> None:
    return None


@workflow
async def varied(ctx: ExecutionContext[int]) -> Any:
    async with Saga() as saga:
        got = await saga.step(flaky(ctx.input), compensate=undo)
    if ctx.patched("p"):
        got += 1
    when = await now()
    await sleep(0)
    answer = await pause("gate")
    return [got, when.year, answer]


def _variants(lines: list[bytes], execution_id: str) -> list[tuple[str, bytes]]:
    """One journal per (record, field, wrong value), each line resigned so its checksum holds."""
    from flux._engine import records as R

    out = []
    for index, line in enumerate(lines):
        record = orjson.loads(line)
        record.pop("crc")
        cls = R.RECORD_TYPES[record["kind"]]
        for name, accepted, _ in cls.FIELDS:
            if name not in record or accepted is None:
                continue
            for wrong in WRONG[accepted[0]][:2]:
                if isinstance(wrong, accepted) and not (type(wrong) is bool and bool not in accepted):
                    continue
                changed = {**record, name: wrong}
                out.append(
                    (f"line {index + 1} {record['kind']}.{name}={wrong!r}", _with(lines, index, changed, execution_id))
                )
        renamed = {**record, "kind": "handler"} if index else None
        if renamed:
            out.append((f"line {index + 1} kind=handler", _with(lines, index, renamed, execution_id)))
    return out


def _with(lines: list[bytes], index: int, record: dict[str, Any], execution_id: str) -> bytes:
    copy = list(lines)
    copy[index] = encode_line(record, seed_for(execution_id))
    return b"".join(copy)


COMMANDS = [
    ("list",),
    ("show", "{id}"),
    ("show", "{id}", "--records"),
    ("replay", "{id}"),
    ("replay", "{id}", "--json"),
    ("diff", "{id}", "{other}"),
    ("recover",),
    ("resume", "{id}", "--input", "1"),
    ("cancel", "{id}"),
]


@pytest.mark.slow
def test_wrong_field_types_and_unknown_kinds_never_give_a_traceback(home: Path, tmp_path: Path) -> None:
    TRIED.clear()
    first = varied.run(3)
    other = varied.run(3)
    assert first.status == "paused"
    journal = Path(first.journal_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    variants = _variants(lines, journal.stem)
    assert len(variants) > 60
    pristine = journal.read_bytes()
    crashes: list[str] = []
    runs = 0
    for label, data in variants:
        for command in COMMANDS:
            journal.write_bytes(data)
            args = [a.format(id=journal.stem, other=Path(other.journal_path).stem) for a in command]
            result = invoke(*args, "--store", str(home))
            runs += 1
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                crashes.append(
                    f"{label}: flux {' '.join(command)}: {type(result.exception).__name__}: {result.exception}"
                )
                continue
            if command[0] in ("list", "recover"):
                assert "damaged" in result.output or "JournalCorruptError" in result.output, (label, command)
            else:
                assert result.exit_code == 2, (label, command, result.output)
                assert "JournalCorruptError" in result.output and f"{journal.name}:" in result.output, (
                    label,
                    result.output,
                )
            assert journal.read_bytes() == data, (label, command)  # nothing changed
    journal.write_bytes(pristine)
    assert crashes == [], "\n".join(crashes[:20])
    assert runs == len(variants) * len(COMMANDS)


def test_recover_reports_a_damaged_execution_and_recovers_the_others(home: Path) -> None:
    TRIED.clear()
    damaged = varied.run(1)
    interrupted = varied.run(2)
    bad = Path(damaged.journal_path)
    lines = bad.read_bytes().splitlines(keepends=True)
    record = orjson.loads(lines[2])
    record.pop("crc")
    bad.write_bytes(_with(lines, 2, {**record, "call_id": ["not", "a", "string"]}, bad.stem))
    cut = Path(interrupted.journal_path)
    cut.write_bytes(b"".join(cut.read_bytes().splitlines(keepends=True)[:4]))
    result = invoke("recover", "--store", str(home))
    assert result.exit_code == 2  # something could not be recovered
    assert bad.stem in result.output and "JournalCorruptError" in result.output
    assert interrupted.execution_id in result.output and "paused" in result.output
    listed = invoke("list", "--store", str(home))
    assert listed.exit_code == 0 and "damaged" in listed.output
    shutil.rmtree(home)


def test_list_and_recover_name_the_damaged_line_in_full(home: Path) -> None:
    TRIED.clear()
    damaged = varied.run(1)
    bad = Path(damaged.journal_path)
    lines = bad.read_bytes().splitlines(keepends=True)
    record = orjson.loads(lines[2])
    record.pop("crc")
    bad.write_bytes(_with(lines, 2, {**record, "call_id": 7}, bad.stem))
    for command in ("list", "recover"):
        result = invoke(command, "--store", str(home))
        assert result.exception is None or isinstance(result.exception, SystemExit)
        named = [line for line in result.output.splitlines() if f"{bad}:3: " in line]
        # One line, as long as it needs: a table cell would cut the path:line off.
        assert len(named) == 1 and "task_started field 'call_id' is a number, not a string" in named[0], result.output
    shutil.rmtree(home)


@pytest.mark.parametrize(("kind", "field", "value"), [("timer_started", "wake_at", 1e308),
                                                      ("attempt_failed", "retry_at", -1e308)])
def test_a_time_no_clock_can_give_is_damage_not_a_crash(home: Path, kind: str, field: str, value: float) -> None:
    TRIED.clear()
    ctx = varied.run(4)
    journal = Path(ctx.journal_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if f'"kind":"{kind}"'.encode() in line)
    record = orjson.loads(lines[index])
    record.pop("crc")
    journal.write_bytes(_with(lines, index, {**record, field: value}, journal.stem))
    for command in (["show", journal.stem], ["show", journal.stem, "--records"], ["replay", journal.stem],
                    ["resume", journal.stem, "--input", "1"]):
        result = invoke(*command, "--store", str(home))
        assert isinstance(result.exception, SystemExit) and result.exit_code == 2, (command, result.output)
        assert f"JournalCorruptError: {journal}:{index + 1}: " in result.output, result.output
        assert "is not a time" in result.output
    shutil.rmtree(home)


@workflow
async def plain(ctx: ExecutionContext[int]) -> Any:
    return await undo(ctx.input)


@pytest.mark.parametrize("call_id", [["1"], {"a": 1}])
def test_a_plain_completion_with_an_unhashable_call_id_is_damage_not_a_crash(home: Path, call_id: Any) -> None:
    ctx = plain.run(1)
    journal = Path(ctx.journal_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if b'"kind":"task_completed"' in line)
    record = orjson.loads(lines[index])
    record.pop("crc")
    assert len(record) == 5  # seq, kind, at, call_id, value: the completion read on the fast path
    journal.write_bytes(_with(lines, index, {**record, "call_id": call_id}, journal.stem))
    for command in (["show", journal.stem], ["replay", journal.stem], ["resume", journal.stem], ["list"]):
        result = invoke(*command, "--store", str(home))
        assert result.exception is None or isinstance(result.exception, SystemExit), (command, result.exception)
        assert f"{journal}:{index + 1}: " in result.output, (command, result.output)
    shutil.rmtree(home)


@pytest.mark.parametrize(
    ("value", "error"),
    [({"$nope": 1}, "DecodeError"), ({"$int": "12x"}, "DecodeError"), ({"$blob": "../../x", "size": 1}, "BlobError"),
     ({"$blob": "f" * 64, "size": 1}, "BlobError")],
)
def test_a_recorded_value_that_cannot_be_rebuilt_names_its_line(home: Path, value: Any, error: str) -> None:
    ctx = plain.run(1)
    journal = Path(ctx.journal_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    for kind in ("task_completed", "workflow_completed"):
        index = next(i for i, line in enumerate(lines) if f'"kind":"{kind}"'.encode() in line)
        record = orjson.loads(lines[index])
        record.pop("crc")
        damaged = _with(lines, index, {**record, "value": value}, journal.stem)
        if kind == "task_completed":
            damaged = b"".join(damaged.splitlines(keepends=True)[:-1])  # interrupted: resume replays the call
        journal.write_bytes(damaged)
        # Replay decodes a task's value to hand it to the workflow; it compares the output the
        # workflow ends with to the recorded one as recorded. A resume decodes both.
        replay = [["replay", journal.stem]] if kind == "task_completed" else []
        for command in (*replay, ["resume", journal.stem]):
            result = invoke(*command, "--store", str(home))
            assert isinstance(result.exception, SystemExit) and result.exit_code == 2, (command, result.output)
            assert result.output.startswith(f"{error}: {journal}:{index + 1}: "), (kind, command, result.output)
            assert journal.read_bytes() == damaged  # engine trouble: nothing recorded, no workflow_failed
    shutil.rmtree(home)


@workflow
async def forgiving(ctx: ExecutionContext[int]) -> Any:
    try:
        return await undo(ctx.input)
    except Exception:  # noqa: BLE001 - a workflow that catches everything must not hide engine trouble
        return await undo(ctx.input + 1)


def test_a_recorded_value_that_cannot_be_rebuilt_stops_the_run_even_if_the_workflow_catches_it(home: Path) -> None:
    ctx = forgiving.run(1)
    journal = Path(ctx.journal_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if b'"kind":"task_completed"' in line)
    record = orjson.loads(lines[index])
    record.pop("crc")
    damaged = b"".join(_with(lines, index, {**record, "value": {"$nope": 1}}, journal.stem).splitlines(True)[:-1])
    journal.write_bytes(damaged)
    with pytest.raises(DecodeError, match=f"^{journal}:{index + 1}: unknown value tag"):
        forgiving.run(execution_id=journal.stem)
    assert journal.read_bytes() == damaged  # no second call, no workflow_failed
