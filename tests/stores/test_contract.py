"""What every store promises (engine/store.py), written once and run against every store kind of
tests/stores/conftest.py: journals, ownership, listing, cancellation requests and the optional
capabilities, then whole runs through the engine and the client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from flux import ExecutionContext, task, workflow
from flux._engine.errors import (
    BlobError,
    DurabilityError,
    ExecutionExistsError,
    ExecutionLockedError,
    ExecutionNotFoundError,
    InvalidExecutionIdError,
    InvalidOptionError,
    RecordTooLargeError,
)
from flux._engine.history import fold
from flux._engine.journal import MAX_RECORD_BYTES, Known
from flux._engine.records import Status
from flux._engine.store import Store
from flux.client import Client
from flux.tasks import pause
from tests.stores.conftest import KINDS, StoreKind

AT = "2026-01-01T00:00:00.000000+00:00"


def header(execution_id: str, workflow: str = "wf", created: str = AT) -> dict[str, Any]:
    return {
        "seq": 0,
        "kind": "header",
        "format": 1,
        "execution_id": execution_id,
        "workflow": workflow,
        "code": {},
        "input": None,
        "created": created,
    }


def started() -> dict[str, Any]:
    return {"seq": 0, "kind": "workflow_started", "at": AT}


def task_started(call_id: str, name: str = "t") -> dict[str, Any]:
    return {"seq": 0, "kind": "task_started", "at": AT, "call_id": call_id, "name": name, "src": "x.py:1"}


def task_completed(call_id: str, value: Any) -> dict[str, Any]:
    return {"seq": 0, "kind": "task_completed", "at": AT, "call_id": call_id, "value": value}


def completed(value: Any) -> dict[str, Any]:
    return {"seq": 0, "kind": "workflow_completed", "at": AT, "value": value}


def without_seq(records: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seq"} for r in records]


def make(store: Store, execution_id: str, *records: dict[str, Any], workflow: str = "wf", created: str = AT) -> None:
    lease = store.create(execution_id, header(execution_id, workflow, created), "fsync")
    try:
        for record in records:
            lease.writer.append(dict(record))
        lease.writer.sync()
    finally:
        lease.close()


# -- journals ------------------------------------------------------------------------------------


def test_a_created_journal_holds_its_header_and_is_owned_until_closed(store: Store) -> None:
    lease = store.create("e1", header("e1"), "fsync")
    assert store.exists("e1") and not store.exists("e2")
    assert without_seq(lease.read.records) == without_seq([header("e1")])
    assert store.owner("e1") is not None and "pid" in store.owner("e1")  # type: ignore[operator]
    with pytest.raises(ExecutionLockedError):
        store.acquire("e1", "fsync")
    lease.close()
    assert store.owner("e1") is None
    assert store.header("e1")["execution_id"] == "e1"
    assert without_seq(store.read("e1").records) == without_seq([header("e1")])
    assert "e1" in store.describe("e1")


def test_an_execution_is_never_created_twice(store: Store, kind: StoreKind) -> None:
    make(store, "e1", started())
    before = kind.raw(store, "e1")
    with pytest.raises(ExecutionExistsError):
        store.create("e1", header("e1", "other"), "fsync")
    assert kind.raw(store, "e1") == before
    assert store.owner("e1") is None  # the failed create holds nothing


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "x" * 65, "é", "a b"])
def test_an_invalid_id_is_refused_before_anything_is_touched(store: Store, bad: str) -> None:
    for call in (
        lambda: store.create(bad, header(bad), "fsync"),
        lambda: store.acquire(bad, "fsync"),
        lambda: store.read(bad),
        lambda: store.exists(bad),
        lambda: store.owner(bad),
        lambda: store.request_cancel(bad),
    ):
        with pytest.raises(InvalidExecutionIdError):
            call()


def test_a_missing_execution_is_not_found(store: Store) -> None:
    for call in (lambda: store.acquire("nope", "fsync"), lambda: store.read("nope"), lambda: store.header("nope")):
        with pytest.raises(ExecutionNotFoundError):
            call()


def test_synced_records_are_read_back_exactly_and_the_next_owner_goes_on(store: Store) -> None:
    lease = store.create("e1", header("e1"), "fsync")
    writer = lease.writer
    assert writer.append(started()) == 1 and writer.append(task_started("1")) == 2
    assert writer.dirty and writer.synced_seq == 0
    writer.sync() if not writer.is_async else asyncio.run(writer.flush())
    assert writer.synced_seq == 2 and not writer.dirty
    lease.close()
    again = store.acquire("e1", "os")
    assert without_seq(again.read.records) == without_seq([header("e1"), started(), task_started("1")])
    assert again.writer.next_seq == 3
    again.writer.append(task_completed("1", {"deep": [1, 2.5, None, "é"]}))
    again.writer.sync()
    again.close()
    records = store.read("e1").records
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert records[3]["value"] == {"deep": [1, 2.5, None, "é"]}


def test_what_was_never_synced_is_not_in_the_journal(store: Store) -> None:
    lease = store.create("e1", header("e1"), "fsync")
    lease.writer.append(started())
    lease.writer.sync()
    lease.writer.append(task_started("1"))
    lease.writer.discard()  # engine trouble: nothing more is written
    assert lease.writer.next_seq == 2
    lease.writer.append(task_started("2"))
    lease.writer.sync()
    lease.close()
    assert [r.get("call_id") for r in store.read("e1").records] == [None, None, "2"]


def test_a_record_over_the_limit_is_refused_and_nothing_is_buffered(store: Store) -> None:
    lease = store.create("e1", header("e1"), "fsync")
    try:
        with pytest.raises(RecordTooLargeError):
            lease.writer.append(task_completed("1", "x" * MAX_RECORD_BYTES))
        assert not lease.writer.dirty and lease.writer.next_seq == 1
    finally:
        lease.close()


def test_a_writer_whose_journal_another_wrote_to_stops_without_writing(store: Store, kind: StoreKind) -> None:
    lease = store.create("e1", header("e1"), "fsync")
    lease.writer.append(started())
    lease.writer.sync()
    kind.intrude(
        store, "e1", {"seq": 2, "kind": "task_started", "at": AT, "call_id": "9", "name": "other", "src": "y:1"}
    )
    lease.writer.append(task_started("1"))
    with pytest.raises(DurabilityError):
        lease.writer.sync()
    with pytest.raises(DurabilityError):
        lease.writer.append(task_started("2"))  # a broken writer refuses all further work
    lease.close()
    records = store.read("e1").records
    assert [r.get("call_id") for r in records] == [None, None, "9"]  # the other writer's record stands, alone


# Only stores that can be left holding part of a record: a PostgreSQL transaction commits whole
# records, so a torn tail cannot happen there.
_TEARABLE = [k for k in KINDS if k.tear is not None]


@pytest.mark.parametrize("kind", _TEARABLE, ids=[k.name for k in _TEARABLE], indirect=True)
def test_a_torn_tail_is_ignored_by_readers_and_cut_by_the_next_owner(store: Store, kind: StoreKind) -> None:
    assert kind.tear is not None
    make(store, "e1", started())
    kind.tear(store, "e1", b'{"seq":2,"kind":"task_sta')
    assert len(store.read("e1").records) == 2
    assert store.read("e1").torn == b'{"seq":2,"kind":"task_sta'
    lease = store.acquire("e1", "fsync")
    assert lease.writer.next_seq == 2
    lease.writer.append(task_started("1"))
    lease.writer.sync()
    lease.close()
    assert [r["kind"] for r in store.read("e1").records] == ["header", "workflow_started", "task_started"]


def test_visit_is_handed_every_record_in_order(store: Store) -> None:
    make(store, "e1", started(), *[task_started(str(i)) for i in range(1, 50)])
    seen: list[int] = []
    read = store.read("e1", visit=lambda records, offsets: seen.extend(r["seq"] for r in records))
    assert seen == list(range(51)) and len(read.records) == 51
    history = fold(list(read.records))
    lease = store.acquire("e1", "fsync", visit=lambda records, offsets: None)
    lease.close()
    assert len(history.calls) == 49


def test_a_known_prefix_is_taken_as_it_is_only_while_the_journal_starts_with_it(store: Store) -> None:
    make(store, "e1", started(), task_started("1"))
    lease = store.acquire("e1", "fsync")
    size, records, crc = lease.writer.position()
    lease.close()
    taken: list[bool] = []
    seen: list[int] = []

    def take() -> bool:
        taken.append(True)
        return True

    lease = store.acquire(
        "e1",
        "fsync",
        visit=lambda r, o: seen.extend(x["seq"] for x in r),
        known=Known(size, records, crc, take),
    )
    lease.writer.append(task_completed("1", 5))
    lease.writer.sync()
    lease.close()
    assert taken == [True] and seen == []  # nothing after the prefix: nothing visited
    stale: list[bool] = []
    lease = store.acquire("e1", "fsync", known=Known(size, records, crc ^ 1, lambda: stale.append(True) or True))
    lease.close()
    assert stale == []  # a prefix that no longer matches is ignored: the whole journal is read
    # A prefix that matches, vouched for by something found unusable as it is taken (a snapshot
    # whose rows are not of the shape written): the whole journal is read and visited.
    unusable = Known(size, records, crc, lambda: False)
    lease = store.acquire("e1", "fsync", visit=lambda r, o: seen.extend(x["seq"] for x in r), known=unusable)
    lease.close()
    assert seen == [0, 1, 2, 3]
    # A read without ownership takes a known prefix the same way (a `flux replay --summary`).
    seen.clear()
    read = store.read("e1", visit=lambda r, o: seen.extend(x["seq"] for x in r), known=Known(size, records, crc, take))
    assert taken == [True, True] and seen == [3] and len(read.records) == 4
    assert read.records[2]["kind"] == "task_started"  # a record of the prefix, parsed when asked for
    read = store.read("e1", visit=lambda r, o: seen.extend(x["seq"] for x in r), known=unusable)
    assert seen == [3, 0, 1, 2, 3]


# -- listing ---------------------------------------------------------------------------------------


def test_summaries_say_where_each_execution_stands(store: Store) -> None:
    make(store, "created1")
    make(store, "done1", started(), completed(3))
    make(store, "gone1", started())  # its owner went away while it ran
    paused = {"seq": 0, "kind": "workflow_paused", "at": AT, "call_id": "1", "name": "p", "src": "x:1"}
    make(store, "paused1", started(), paused)
    running = store.create("run1", header("run1"), "fsync")
    running.writer.append(started())
    running.writer.sync()
    try:
        statuses = {eid: store.summary(eid).status for eid in ("created1", "done1", "gone1", "paused1", "run1")}
    finally:
        running.close()
    assert statuses == {
        "created1": Status.CREATED,
        "done1": Status.COMPLETED,
        "gone1": Status.INTERRUPTED,
        "paused1": Status.PAUSED,
        "run1": Status.RUNNING,
    }
    assert store.summary("done1").records == 3 and store.summary("done1").workflow == "wf"


def test_listing_filters_orders_newest_first_and_pages_with_a_cursor(store: Store) -> None:
    for i in range(12):
        created = f"2026-01-01T00:00:{i:02d}.000000+00:00"
        make(
            store,
            f"a{i:02d}",
            started(),
            *([completed(i)] if i % 3 == 0 else []),
            workflow="odd" if i % 2 else "even",
            created=created,
        )
    assert store.list_ids() == [f"a{i:02d}" for i in range(12)]
    everything = store.list(limit=None)
    assert [s.execution_id for s in everything.items] == [f"a{i:02d}" for i in reversed(range(12))]
    assert everything.cursor is None
    pages, cursor = [], None
    while True:
        page = store.list(limit=5, cursor=cursor)
        pages.append([s.execution_id for s in page.items])
        cursor = page.cursor
        if cursor is None:
            break
    assert [len(p) for p in pages] == [5, 5, 2]
    assert sum(pages, []) == [s.execution_id for s in everything.items]
    assert {s.execution_id for s in store.list(workflow="odd").items} == {f"a{i:02d}" for i in range(1, 12, 2)}
    assert {s.execution_id for s in store.list(status="completed").items} == {"a00", "a03", "a06", "a09"}
    assert [s.execution_id for s in store.list(prefix="a1").items] == ["a11", "a10"]
    window = store.list(created_after="2026-01-01T00:00:03", created_before="2026-01-01T00:00:05")
    assert [s.execution_id for s in window.items] == ["a04", "a03"]
    with pytest.raises(InvalidOptionError):
        store.list(cursor="not a cursor")


def test_listing_by_schedule_keeps_only_what_that_schedule_started(store: Store) -> None:
    # The name is the header's, never guessed from the id: "daily-2" is another schedule.
    fired = {"daily-x": "daily", "daily-2-x": "daily-2", "nightly-x": "nightly", "daily-by-hand": None}
    for n, (execution_id, name) in enumerate(fired.items()):
        first = header(execution_id, created=f"2026-01-01T00:00:{n:02d}.000000+00:00")
        if name is not None:
            first["schedule"] = {"name": name, "at": first["created"]}
        store.create(execution_id, first, "fsync").close()
    daily = store.list(schedule="daily")
    assert [(s.execution_id, s.schedule) for s in daily.items] == [("daily-x", "daily")]
    assert [s.execution_id for s in store.list(schedule="daily-2", workflow="wf").items] == ["daily-2-x"]
    assert store.list(schedule="daily", workflow="other").items == ()
    assert store.list(schedule="weekly").items == ()
    both = store.list(limit=1, schedule="nightly")
    assert [s.execution_id for s in both.items] == ["nightly-x"] and both.cursor is None


# -- cancellation requests and capabilities ----------------------------------------------------------


def test_a_cancellation_request_is_seen_until_cleared(store: Store) -> None:
    make(store, "e1", started())
    assert not store.cancel_requested("e1")
    store.request_cancel("e1")
    assert store.cancel_requested("e1")
    store.clear_cancel("e1")
    assert not store.cancel_requested("e1")


def test_delete_removes_an_execution_but_never_one_that_is_owned(store: Store) -> None:
    lease = store.create("e1", header("e1"), "fsync")
    with pytest.raises(ExecutionLockedError):
        store.delete("e1")
    assert store.exists("e1")
    lease.close()
    make(store, "e2", started(), completed(1))
    store.request_cancel("e1")
    if store.snapshots is not None:
        store.snapshots.save("e1", b"snapshot")
    store.delete("e1")
    assert not store.exists("e1") and store.exists("e2")
    assert [s.execution_id for s in store.list().items] == ["e2"]
    assert not store.cancel_requested("e1")
    if store.snapshots is not None:
        assert store.snapshots.load("e1") is None
    with pytest.raises(ExecutionNotFoundError):
        store.delete("e1")
    with pytest.raises(ExecutionNotFoundError):
        store.read("e1")
    make(store, "e1", started())  # the id can be used again
    assert store.summary("e1").status == Status.INTERRUPTED


def test_snapshots_blobs_and_cache_keep_what_they_are_given(store: Store) -> None:
    assert store.snapshots is not None and store.blobs is not None and store.cache is not None
    make(store, "e1", started())
    assert store.snapshots.load("e1") is None
    store.snapshots.save("e1", b"snapshot bytes")
    assert store.snapshots.load("e1") == b"snapshot bytes"
    store.snapshots.drop("e1")
    assert store.snapshots.load("e1") is None
    digest = store.blobs.put(b'{"big":1}')
    assert len(digest) == 64 and store.blobs.get(digest) == b'{"big":1}'
    assert store.blobs.put(b'{"big":1}') == digest
    with pytest.raises(BlobError):
        store.blobs.get("0" * 64)
    with pytest.raises(BlobError):
        store.blobs.get("../../etc/passwd")
    key = "ab" * 32  # keys are SHA-256 digests
    assert store.cache.get(key) is None
    store.cache.put(key, b"entry")
    assert store.cache.get(key) == b"entry"
    assert store.cache.clear() == 1 and store.cache.get(key) is None


def test_waiting_for_a_change_returns_when_a_record_is_written(store: Store) -> None:
    make(store, "e1", started())

    async def scenario() -> tuple[float, float]:
        lease = store.acquire("e1", "fsync")

        async def write_soon() -> None:
            await asyncio.sleep(0.05)
            lease.writer.append(task_started("1"))
            lease.writer.sync()

        writer = asyncio.create_task(write_soon())
        began = time.monotonic()
        await store.wait_for_change("e1", timeout=5.0)
        woke = time.monotonic() - began
        await writer
        lease.close()
        began = time.monotonic()
        await store.wait_for_change("e1", timeout=0.2)
        return woke, time.monotonic() - began

    woke, timed_out = asyncio.run(scenario())
    assert woke < 2.0  # woken by the write, not by the timeout
    assert 0.15 <= timed_out < 2.0


# -- whole runs through the engine ------------------------------------------------------------------


@task
async def double(x: int) -> int:
    return 2 * x


@workflow
async def contract_flow(ctx: ExecutionContext[int]) -> int:
    first = await double(ctx.input)
    more = await pause("more")
    return first + await double(more)


def test_a_workflow_runs_pauses_resumes_and_lists_the_same_on_every_store(store: Store) -> None:
    async def scenario() -> None:
        async with Client(store) as client:
            handle = await client.start(contract_flow, 5, execution_id="order-1", run_here=True)
            paused = await handle.result()
            assert paused.status == "paused"
            again = await client.start(contract_flow, 99, execution_id="order-1", run_here=True)  # idempotent start
            assert again.execution_id == "order-1" and (await again.result()).status == "paused"
            view = await client.get("order-1")
            assert [w.name for w in view.waiting] == ["more"] and view.input == 5
            done = await (await client.resume("order-1", 7)).result()
            assert done.status == "completed" and done.output == 24
            page = await client.list(status="completed")
            assert [s.execution_id for s in page.items] == ["order-1"]

    asyncio.run(scenario())
    kinds = [r["kind"] for r in store.read("order-1").records]
    assert kinds == [
        "header",
        "workflow_started",
        "task_started",
        "task_completed",
        "workflow_paused",
        "workflow_resumed",
        "task_started",
        "task_completed",
        "workflow_completed",
    ]


def test_a_journal_moves_between_stores_byte_for_byte(store: Store, kind: StoreKind, tmp_path: Any) -> None:
    from flux._engine.errors import JournalCorruptError
    from flux._engine.store import import_journal
    from flux._engine.stores.files import FileStore

    source = FileStore(str(tmp_path / "source"))

    async def paused_there() -> None:
        async with Client(source) as client:
            assert (await (await client.start(contract_flow, 5, execution_id="moved")).result()).status == "paused"

    asyncio.run(paused_there())
    data = source.export("moved")
    assert data == (tmp_path / "source" / "executions" / "moved.jsonl").read_bytes()
    broken = data[:40] + bytes([data[40] ^ 1]) + data[41:]
    with pytest.raises(JournalCorruptError):
        import_journal(store, broken)
    assert not store.exists("moved")  # nothing half imported
    summary = import_journal(store, data)
    assert summary.status == Status.PAUSED and summary.records == len(data.splitlines())
    assert store.export("moved") == data and kind.raw(store, "moved") == data
    with pytest.raises(ExecutionExistsError):
        import_journal(store, data)

    async def finished_here() -> int:
        async with Client(store) as client:
            done = await (await client.resume("moved", 7)).result()
            assert done.status == "completed"
            return done.output  # type: ignore[no-any-return]

    assert asyncio.run(finished_here()) == 24
    moved_on = store.export("moved")
    assert moved_on.startswith(data) and moved_on.count(b"\n") == data.count(b"\n") + 4
    back = FileStore(str(tmp_path / "back"))
    import_journal(back, moved_on)
    assert (tmp_path / "back" / "executions" / "moved.jsonl").read_bytes() == moved_on


def test_a_divergence_kept_by_a_worker_is_listed_until_someone_takes_the_execution(store: Store) -> None:
    make(store, "e1", started(), task_started("1"))
    make(store, "e2", started())
    assert store.divergence("e1") is None and store.summary("e1").status == Status.INTERRUPTED
    store.mark_diverged("e1", {"message": "the code asked for 'b' at call 1", "recorded": {"name": "a"}})
    assert store.summary("e1").status == Status.DIVERGED
    assert store.divergence("e1") == {"message": "the code asked for 'b' at call 1", "recorded": {"name": "a"}}
    assert [s.execution_id for s in store.list(status="diverged").items] == ["e1"]
    assert [s.execution_id for s in store.list(status="interrupted").items] == ["e2"]
    with pytest.raises(ExecutionNotFoundError):
        store.mark_diverged("nope", {})
    lease = store.acquire("e1", "fsync")  # taken over by hand: the mark goes
    lease.close()
    assert store.divergence("e1") is None and store.summary("e1").status != Status.DIVERGED
