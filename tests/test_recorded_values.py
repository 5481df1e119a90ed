"""Recorded values: `now`, `uuid4`, `randint`, `choice` and `randrange` are recorded, so a replay
sees the values the first run saw, `now` is the engine clock's time, and asking for another value
where one was recorded is divergence."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux import ExecutionContext, workflow
from flux.clock import VirtualClock
from flux.errors import NondeterminismError
from flux.tasks import choice, now, pause, randint, randrange, uuid4
from tests.builtin_workflows import SEEN, reset
from tests.support.journals import records


@pytest.fixture(autouse=True)
def _reset() -> None:
    reset()


@workflow
async def chancy(ctx: ExecutionContext[None]) -> Any:
    seen = [
        await now(),
        await uuid4(),
        await randint(1, 10**12),
        await choice(["red", "green", "blue", "cyan", "magenta", "yellow", "black", "white"]),
        await randrange(0, 10**12, 7),
    ]
    SEEN.append(seen)
    answer = await pause("go")
    SEEN.append([await now(), await uuid4()])
    return [answer, *seen]


def test_recorded_values_are_the_same_after_a_pause_and_resume(home: Path) -> None:
    first = chancy.run()
    assert first.status == "paused"
    done = chancy.resume(first.execution_id, "ok")
    before, replayed, after = SEEN
    assert replayed == before  # the replay saw exactly the values the first run saw
    assert done.output == ["ok", *before]
    when, ident, number, colour, ranged = before
    assert isinstance(when, dt.datetime) and when.tzinfo is None  # local time, as datetime.now()
    assert isinstance(ident, uuid.UUID) and ident.version == 4
    assert 1 <= number <= 10**12
    assert colour in {"red", "green", "blue", "cyan", "magenta", "yellow", "black", "white"}
    assert ranged % 7 == 0 and 0 <= ranged < 10**12
    values = [r for r in records(done) if r["kind"] == "value_recorded"]
    assert [(r["call_id"], r["name"]) for r in values] == [
        ("1", "now"),
        ("2", "uuid4"),
        ("3", "randint"),
        ("4", "choice"),
        ("5", "randrange"),
        ("7", "now"),
        ("8", "uuid4"),
    ]
    assert values[2]["value"] == number and values[3]["value"] == colour
    assert values[1]["value"] == {"$uuid": str(ident)}
    assert after[1] != ident  # a new call after the pause draws a new value


def test_now_is_the_engine_clocks_time(home: Path) -> None:
    clock = VirtualClock(start=1_800_000_000.25)
    chancy.run(clock=clock)
    assert SEEN[0][0] == dt.datetime.fromtimestamp(1_800_000_000.25)


def test_flux_replay_reproduces_a_run_that_drew_random_values(home: Path) -> None:
    first = chancy.run()
    chancy.resume(first.execution_id, 3)
    from flux.debug import replay

    report = replay(first.journal_path)
    assert report.matches and report.note == "the code reproduces the recorded output"


@workflow
async def draws(ctx: ExecutionContext[str]) -> Any:
    value = await (now() if ctx.input == "now" else uuid4())
    await pause("p")
    return str(value)


def test_asking_for_another_value_where_one_was_recorded_is_divergence(home: Path) -> None:
    first = draws.run("now")
    path = Path(first.journal_path)
    data = path.read_bytes()
    header, rest = data.split(b"\n", 1)
    # Same execution, but the code now asks uuid4() where the journal recorded now().
    from flux._engine.journal import encode_line, seed_for

    head = orjson.loads(header)
    head["input"] = "uuid"
    del head["crc"]
    path.write_bytes(encode_line(head, seed_for(first.execution_id)) + rest)
    with pytest.raises(NondeterminismError) as info:
        draws.resume(first.execution_id, 1)
    assert "uuid4()" in str(info.value) and "call 1" in str(info.value)
