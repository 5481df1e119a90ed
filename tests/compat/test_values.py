"""Values Flux programs return: numpy arrays and pandas DataFrames recorded exactly without
pickle, and any other type through a registered codec."""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, task, workflow
from flux.codecs import register_codec
from flux.tasks import pause
from tests.support.journals import records

np = pytest.importorskip("numpy", reason="numpy is in the test extra: pip install -e '.[test]'")
pd = pytest.importorskip("pandas", reason="pandas is in the test extra: pip install -e '.[test]'")


@task
async def matrix(n: int) -> Any:
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2) / 3


@task
async def frame() -> Any:
    return pd.DataFrame(
        {
            "qty": np.array([1, 2, 3], dtype=np.int16),
            "name": ["a", "b", None],
            "kind": pd.Categorical(["x", "y", "x"], categories=["y", "x"], ordered=True),
            "when": pd.to_datetime(["2026-01-01", "2026-01-02", None]),
            "maybe": pd.array([1, None, 3], dtype="Int64"),
        },
        index=pd.Index(["r1", "r2", "r3"], name="row"),
    )


SEEN: list[Any] = []


@workflow
async def analysis(ctx: ExecutionContext[int]) -> Any:
    m = await matrix(ctx.input)
    df = await frame()
    SEEN.append((m, df))
    await pause("check")
    return {"sum": m.sum(), "rows": df}


def test_numpy_arrays_and_dataframes_replay_exactly(home: Path) -> None:
    SEEN.clear()
    ctx = analysis.run(3)
    done = analysis.resume(ctx.execution_id, None)
    (live_m, live_df), (replay_m, replay_df) = SEEN
    assert replay_m.dtype == np.float32 and replay_m.shape == (3, 2) and np.array_equal(replay_m, live_m)
    pd.testing.assert_frame_equal(replay_df, live_df, check_exact=True)
    assert list(replay_df.dtypes.astype(str)) == list(live_df.dtypes.astype(str))
    assert replay_df.index.name == "row" and replay_df["kind"].cat.ordered
    assert isinstance(done.output["sum"], np.float32)
    pd.testing.assert_frame_equal(done.output["rows"], live_df, check_exact=True)
    written = b"".join(p.read_bytes() for p in (home / "executions").glob("*.jsonl"))
    assert b"pickle" not in written and b'"$ext":"pandas.DataFrame"' in written


class Money:
    def __init__(self, amount: decimal.Decimal, currency: str) -> None:
        self.amount = amount
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (other.amount, other.currency) == (self.amount, self.currency)

    __hash__ = None  # type: ignore[assignment]


register_codec(Money, "compat.Money", lambda m: [m.amount, m.currency], lambda v: Money(v[0], v[1]))


@task
async def price() -> Money:
    return Money(decimal.Decimal("9.99"), "EUR")


class Unknown:
    pass


@task
async def unknown() -> Unknown:
    return Unknown()


@workflow
async def priced(ctx: ExecutionContext[None]) -> Any:
    return await price()


@workflow
async def unrecordable(ctx: ExecutionContext[None]) -> Any:
    return await unknown()


def test_a_registered_codec_records_another_type(home: Path) -> None:
    ctx = priced.run()
    assert ctx.output == Money(decimal.Decimal("9.99"), "EUR")
    value = next(r for r in records(ctx) if r["kind"] == "task_completed")["value"]
    assert value == {"$ext": "compat.Money", "v": [{"$decimal": "9.99"}, "EUR"]}
    assert priced.run(execution_id=ctx.execution_id).output == ctx.output


def test_the_error_for_an_unknown_type_names_it_and_how_to_record_it(home: Path) -> None:
    ctx = unrecordable.run()
    message = str(ctx.output.inner_exception)
    assert "task 'unknown' result: values of type tests.compat.test_values.Unknown cannot be recorded" in message
    assert "flux.codecs.register_codec" in message


@task.with_options(output_storage=True)
async def big_matrix(n: int) -> Any:
    return np.arange(n, dtype=np.float64).reshape(-1, 4)


@task
async def big_inline(n: int) -> Any:
    return np.arange(n, dtype=np.float64)


@workflow
async def large(ctx: ExecutionContext[int]) -> Any:
    m = await big_matrix(ctx.input)
    SEEN.append(m)
    await pause("check")
    return float(m.sum())


@workflow
async def large_inline(ctx: ExecutionContext[int]) -> Any:
    return await big_inline(ctx.input)


def test_a_large_array_goes_through_output_storage_and_replays_exactly(home: Path) -> None:
    SEEN.clear()
    n = 400_000  # 3.2 MB of float64, over the 1 MiB a record may hold
    ctx = large.run(n)
    completed = next(r for r in records(ctx) if r["kind"] == "task_completed")
    assert set(completed["value"]) == {"$blob", "size"} and completed["value"]["size"] > 3_200_000
    done = large.resume(ctx.execution_id, None)
    live, replayed = SEEN
    assert replayed.dtype == np.float64 and replayed.shape == (n // 4, 4) and np.array_equal(replayed, live)
    assert done.output == float(np.arange(n, dtype=np.float64).sum())
    failed = large_inline.run(n)  # without output storage the record would be too large
    assert failed.has_failed and "output_storage" in str(failed.output.inner_exception)
