"""Listing a store: the file store (which keeps what it learnt between listings) and the memory
store (which summarizes every journal each time) give the same pages for the same executions."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flux import ExecutionContext, task, workflow
from flux._engine.errors import InvalidOptionError
from flux._engine.store import Page
from flux._engine.stores.files import FileStore
from flux._engine.stores.memory import MemoryStore
from flux.client import Client
from flux.tasks import pause


@task
async def double(n: int) -> int:
    return n * 2


@task
async def refuse(n: int) -> None:
    raise ValueError(f"refused {n}")


@workflow
async def listed(ctx: ExecutionContext[int]) -> Any:
    value = await double(ctx.input)
    if ctx.input % 3 == 1:
        await refuse(ctx.input)
    if ctx.input % 3 == 2:
        return await pause("more")
    return value


@workflow
async def other(ctx: ExecutionContext[int]) -> int:
    return await double(ctx.input)


async def _fill(client: Client, ids: list[str]) -> None:
    for n, execution_id in enumerate(ids):
        handle = await client.start(other if n % 4 == 3 else listed, n, execution_id=execution_id, durability="os")
        await handle.result()


def _ids(page: Page) -> list[str]:
    return [item.execution_id for item in page.items]


def _walk(store: Any, **filters: Any) -> list[str]:
    """Every execution the filters select, page after page."""
    out: list[str] = []
    cursor = None
    while True:
        page = store.list(cursor=cursor, **filters)
        out += _ids(page)
        if page.cursor is None:
            return out
        assert len(page.items) == filters["limit"], "a page that is not the last one is full"
        cursor = page.cursor


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[FileStore, MemoryStore, list[str]]:
    files = FileStore(str(tmp_path_factory.mktemp("listing")))
    memory = MemoryStore(f"listing-{uuid.uuid4().hex}")
    ids = [f"x{n:02d}" if n % 2 else f"y{n:02d}" for n in range(14)]

    async def go() -> None:
        await _fill(Client(files), ids)
        await _fill(Client(memory), ids)

    asyncio.run(go())
    return files, memory, ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    status=st.sampled_from([None, "completed", "failed", "paused", ["failed", "paused"], "running"]),
    workflow_name=st.sampled_from([None, "listed", "other", "none"]),
    prefix=st.sampled_from([None, "x", "y0", "x1", "z"]),
    limit=st.integers(1, 6),
    cut=st.integers(0, 14),
)
def test_file_and_memory_stores_give_the_same_pages(
    two_stores: Any, status: Any, workflow_name: Any, prefix: Any, limit: int, cut: int
) -> None:
    files, memory, ids = two_stores

    def filters(store: Any) -> dict[str, Any]:
        # The same executions were made in both stores in the same order, at other times: a
        # time filter is set at the same place in each.
        boundary = sorted(s.created for s in store.list().items)[min(cut, 13)]
        return dict(
            status=status,
            workflow=workflow_name,
            prefix=prefix,
            limit=limit,
            created_after=boundary if cut % 2 else None,
            created_before=boundary if cut % 3 == 0 else None,
        )

    from_files, from_memory = _walk(files, **filters(files)), _walk(memory, **filters(memory))
    assert from_files == from_memory
    assert len(set(from_files)) == len(from_files)
    summaries = {s.execution_id: s for s in files.list().items}
    assert [summaries[i].created for i in from_files] == sorted(
        (summaries[i].created for i in from_files), reverse=True
    )


def test_a_listing_sees_every_change_made_since_the_last_one(tmp_path: Path) -> None:
    """The file store keeps summaries between listings; an appended record, a new journal and a
    removed one all show at the next listing."""
    store = FileStore(str(tmp_path))

    async def go() -> None:
        client = Client(store)
        first = await client.start(listed, 2, execution_id="waits", durability="os")
        assert (await first.result()).status == "paused"
        assert [(s.execution_id, str(s.status)) for s in store.list().items] == [("waits", "paused")]
        await (await client.resume("waits", 5)).result()
        await (await client.start(other, 1, execution_id="later", durability="os")).result()

    asyncio.run(go())
    assert [(s.execution_id, str(s.status)) for s in store.list().items] == [
        ("later", "completed"),
        ("waits", "completed"),
    ]
    os.unlink(store.journal_path("later"))
    assert _ids(store.list()) == ["waits"]
    assert store.list(limit=1, status="paused").items == ()


def test_a_damaged_journal_is_listed_as_damaged_and_listing_goes_on(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))

    async def go() -> None:
        await (await Client(store).start(other, 1, execution_id="fine", durability="os")).result()
        await (await Client(store).start(other, 2, execution_id="hurt", durability="os")).result()

    asyncio.run(go())
    assert {str(s.status) for s in store.list().items} == {"completed"}
    path = Path(store.journal_path("hurt"))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # a flipped bit in the last record's checksum
    path.write_bytes(bytes(data))
    rows = {s.execution_id: s for s in store.list().items}
    assert str(rows["hurt"].status) == "damaged" and "hurt.jsonl:5" in rows["hurt"].problem
    assert str(rows["fine"].status) == "completed"


def test_a_listing_refuses_a_negative_limit_and_a_foreign_cursor(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    with pytest.raises(InvalidOptionError, match="limit=-1"):
        store.list(limit=-1)
    with pytest.raises(InvalidOptionError, match="not a cursor a listing gave"):
        store.list(cursor="not-a-cursor")


def test_listings_in_several_threads_while_executions_are_made(tmp_path: Path) -> None:
    """A server lists from worker threads while its runs make journals: no listing fails, each
    is in order, and the last one has every execution."""
    import threading

    store = FileStore(str(tmp_path))
    problems: list[str] = []
    done = threading.Event()

    def keep_listing() -> None:
        while not done.is_set():
            try:
                created = [s.created for s in store.list(limit=200).items]
                if created != sorted(created, reverse=True):
                    problems.append("out of order")
            except Exception as err:  # noqa: BLE001 - any failure is the finding
                problems.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=keep_listing) for _ in range(4)]
    for t in threads:
        t.start()

    async def make() -> None:
        client = Client(store)
        for n in range(60):
            await (await client.start(other, n, execution_id=f"t{n:03d}", durability="os")).result()

    try:
        asyncio.run(make())
    finally:
        done.set()
        for t in threads:
            t.join()
    assert problems == []
    assert sorted(_ids(store.list())) == [f"t{n:03d}" for n in range(60)]
