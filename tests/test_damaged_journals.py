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
