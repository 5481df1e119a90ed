"""The task cache: `cache=True` reuses the result of an identical call made by an earlier
execution, keeps private entries in the journal's value format, takes a damaged entry for a miss,
never caches a failure, and `flux clear-cache` forgets every entry."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux import ExecutionContext, runner, task, workflow
from flux.errors import ExecutionError, InvalidOptionError
from tests.builtin_workflows import RAN, ran, reset
from tests.conftest import ROOT
from tests.support.cli import invoke
from tests.support.journals import kinds, records


@pytest.fixture(autouse=True)
def _reset() -> None:
    reset()


@task.with_options(cache=True)
async def expensive(x: int) -> dict[str, Any]:
    ran()
    return {"x": x, "at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "pair": (x, -x)}


@task.with_options(cache=True)
async def cached_failure(x: int) -> None:
    ran()
    raise ValueError(f"not cached {x}")


@workflow
async def uses_cache(ctx: ExecutionContext[int]) -> Any:
    return await expensive(ctx.input)


@workflow
async def uses_cached_failure(ctx: ExecutionContext[int]) -> Any:
    try:
        await cached_failure(ctx.input)
    except ExecutionError as err:
        return str(err.inner_exception)


def _expected(x: int) -> dict[str, Any]:
    return {"x": x, "at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "pair": (x, -x)}


def test_an_identical_call_in_a_later_execution_reuses_the_cached_result(home: Path) -> None:
    first = uses_cache.run(4)
    second = uses_cache.run(4)
    assert first.output == second.output == _expected(4)
    assert type(second.output["pair"]) is tuple
    assert RAN == [f"{first.execution_id}:1"]  # the body ran once
    one = next(r for r in records(first) if r["kind"] == "task_completed")
    two = next(r for r in records(second) if r["kind"] == "task_completed")
    assert "cached" not in one and two["cached"] is True and two["value"] == one["value"]
    assert kinds(second) == ["workflow_started", "task_started", "task_completed", "workflow_completed"]
    third = uses_cache.run(5)  # other arguments: a miss
    assert third.output == _expected(5) and RAN[-1] == f"{third.execution_id}:1"


def test_cache_entries_are_private_json_in_the_journals_value_format(home: Path) -> None:
    ctx = uses_cache.run(7)
    (entry,) = (home / "cache").iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    data = orjson.loads(entry.read_bytes())
    assert data["task"] == "tests.test_cache:expensive" and data["name"] == "expensive"
    assert data["execution_id"] == ctx.execution_id
    assert data["value"] == next(r for r in records(ctx) if r["kind"] == "task_completed")["value"]
    assert data["value"]["at"] == {"$datetime": "2026-01-02T03:04:05+00:00"}


def test_a_damaged_cache_entry_is_a_miss(home: Path) -> None:
    uses_cache.run(8)
    (entry,) = (home / "cache").iterdir()
    entry.write_bytes(b"\x80not json")
    ctx = uses_cache.run(8)
    assert ctx.output == _expected(8) and len(RAN) == 2
    assert "cached" not in next(r for r in records(ctx) if r["kind"] == "task_completed")


def test_failures_are_not_cached(home: Path) -> None:
    assert uses_cached_failure.run(1).output == "not cached 1"
    assert uses_cached_failure.run(1).output == "not cached 1"
    assert len(RAN) == 2
    assert not (home / "cache").exists() or not list((home / "cache").iterdir())


def test_flux_clear_cache_empties_the_cache(home: Path) -> None:
    uses_cache.run(1)
    uses_cache.run(2)
    assert len(list((home / "cache").iterdir())) == 2
    result = invoke("clear-cache", "--home", str(home))
    assert result.exit_code == 0 and "removed 2 cached results" in result.output
    assert list((home / "cache").iterdir()) == []
    RAN.clear()
    ctx = uses_cache.run(1)
    assert RAN == [f"{ctx.execution_id}:1"]  # the body ran again
    assert runner.clear_cache(str(home)) == 1 and runner.clear_cache(str(home)) == 0


def test_how_to_clear_the_cache_is_documented() -> None:
    spec = (ROOT / "SPEC.md").read_text()
    assert "flux clear-cache" in spec
    help_text = invoke("--help").output
    assert "clear-cache" in help_text


def test_cache_option_is_validated_when_decorating() -> None:
    with pytest.raises(InvalidOptionError, match="cache='yes' must be True or False"):
        task.with_options(cache="yes")


@task.with_options(cache=True, output_storage=True)
async def big_and_cached(x: int) -> list[int]:
    ran()
    return list(range(x))


@workflow
async def uses_big_cache(ctx: ExecutionContext[int]) -> Any:
    return await big_and_cached(ctx.input)


def test_an_entry_with_one_flipped_bit_is_a_miss_never_a_result(home: Path) -> None:
    assert uses_cache.run(5).output == _expected(5)
    (entry,) = (home / "cache").glob("*.json")
    data = bytearray(entry.read_bytes())
    at = data.index(b'"x":5') + 4
    data[at] ^= 0x01  # 5 -> 4: still valid JSON, still a plausible result
    entry.write_bytes(bytes(data))
    RAN.clear()
    again = uses_cache.run(5)
    assert again.output == _expected(5) and RAN  # the body ran: the entry did not check out
    assert not any(r.get("cached") for r in records(again))


def test_an_entry_whose_stored_output_was_deleted_is_a_miss(home: Path) -> None:
    assert uses_big_cache.run(3).output == [0, 1, 2]
    for blob in (home / "blobs").glob("*.json"):
        blob.unlink()
    RAN.clear()
    again = uses_big_cache.run(3)
    assert again.status == "completed" and again.output == [0, 1, 2] and RAN


def test_a_cache_that_cannot_be_written_is_ignored(home: Path) -> None:
    (home / "executions").mkdir(parents=True)
    (home / "cache").write_text("not a folder")  # every write into the cache fails
    ctx = uses_cache.run(6)
    assert ctx.status == "completed" and ctx.output == _expected(6)
    assert kinds(ctx)[-1] == "workflow_completed"
