"""The PostgreSQL store beyond the contract suite: opening it, migrations, fencing under races,
the write path's group commit, and the file store never loading the driver."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flux._engine.errors import DurabilityError, ExecutionLockedError, OwnershipLostError, StoreError
from flux._engine.store import open_store
from flux._engine.stores.postgres import PostgresStore
from tests.conftest import ROOT, empty_pg, flux_cmd
from tests.pg import PgServer
from tests.stores.test_contract import header, started, task_started


@pytest.fixture
def store(pg_url: str) -> Any:
    empty_pg(pg_url)
    made = PostgresStore(pg_url, lease=2.0)
    yield made
    made.close()


def test_exec_on_the_file_store_never_imports_the_driver(tmp_path: Path) -> None:
    code = (
        "import sys; from flux._cli.main import app\n"
        "try:\n    app(['exec', 'examples/hello.py', 'hello_world', '--input', '\"x\"', '--home', sys.argv[1]])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool') or "
        "m.endswith('stores.postgres')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "status: completed" in done.stdout
    assert done.stdout.strip().endswith("[]")


def test_one_store_per_url_in_a_process(pg_url: str) -> None:
    a = open_store(pg_url)
    assert isinstance(a, PostgresStore) and open_store(pg_url) is a
    assert "postgresql://" in a.describe("e1") and a.describe("e1").endswith("#e1")


def test_every_connection_notices_a_vanished_server_unless_the_url_says_otherwise(pg_url: str) -> None:
    """TCP keepalives and a user timeout on the pool's and the writers' connections (SPEC.md 13):
    a partition fails a statement instead of holding it (and the loop of a lone execution)."""
    expected = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3"}
    if psycopg.pq.version() >= 120000:
        expected["tcp_user_timeout"] = "15000"
    for url, idle in ((pg_url, "10"), (pg_url + ("&" if "?" in pg_url else "?") + "keepalives_idle=60", "60")):
        made = PostgresStore(url)
        try:
            with made._conn("look") as pooled:
                pool_params = pooled.info.get_parameters()
            writer = made._connect()
            try:
                writer_params = writer.info.get_parameters()
            finally:
                writer.close()
        finally:
            made.close()
        for params in (pool_params, writer_params):
            assert {k: params.get(k) for k in expected} == {**expected, "keepalives_idle": idle}


def test_a_database_without_the_schema_says_to_migrate(pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.create_database("bare")
    fresh = PostgresStore(url)
    try:
        with pytest.raises(StoreError, match="flux db migrate"):
            fresh.list()
    finally:
        fresh.close()
    done = flux_cmd("list", "--store", url, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "StoreError" in done.stderr
    # Four processes migrate at once: each migration runs once, all of them succeed.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "flux", "db", "migrate", "--store", url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    applied_by = [out.split("applied migrations: ", 1)[1].split(";", 1)[0] for out, _ in outputs]
    numbers = [n for each in applied_by if each != "none" for n in each.split(", ")]
    # Each by one process (not always the same).
    assert sorted(numbers) == ["1", "2", "3", "4", "5", "6", "7"], applied_by
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT version, count(*) FROM flux.migrations GROUP BY version ORDER BY version")
        assert applied.fetchall() == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1)]
    status = flux_cmd("db", "status", "--store", url, cwd=tmp_path)
    assert status.returncode == 0 and "schema version 7" in status.stdout
    assert flux_cmd("list", "--store", url, cwd=tmp_path).stdout.startswith("no executions in store postgresql://")


def test_a_bad_store_url_is_one_line(tmp_path: Path) -> None:
    done = flux_cmd("list", "--store", "postgresql://nobody@/nowhere?host=/nonexistent-dir", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("StoreError")


def test_queue_commands_on_a_file_store_say_they_are_for_postgresql(tmp_path: Path) -> None:
    for args in (("queue", "set", "q", "--concurrency", "2"), ("queue", "list"), ("db", "status")):
        done = flux_cmd(*args, "--store", str(tmp_path / "files"), cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args, done.stderr)
        assert done.stderr.startswith("StoreError") and "are for postgresql://... stores" in done.stderr
    both = flux_cmd("queue", "set", "q", "--concurrency", "2", "--unlimited", "--store", str(tmp_path), cwd=tmp_path)
    assert both.returncode == 2 and "give --concurrency N, --rate N --per SECONDS, or --unlimited" in both.stderr
    rate = flux_cmd("queue", "set", "q", "--rate", "2", "--per", "1", "--store", str(tmp_path), cwd=tmp_path)
    assert rate.returncode == 2 and "are for postgresql://... stores" in rate.stderr, rate.stderr


def test_racing_owners_never_interleave_their_records(store: PostgresStore, pg_url: str) -> None:
    """Writers keep taking the execution from each other (an expired lease, forced by hand) and
    appending: every refused append raised OwnershipLostError, the journal stays dense, and
    epochs never go down along it."""
    lease = store.create("race", header("race"), "fsync")
    lease.writer.append(started())
    lease.writer.sync()
    lease.close()
    refused = [0]
    written = [0]

    def racer(n: int) -> None:
        own = PostgresStore(pg_url, lease=30.0)
        try:
            for i in range(25):
                with psycopg.connect(pg_url, autocommit=True) as conn:  # expire whatever lease is held
                    conn.execute(
                        "UPDATE flux.executions SET lease_until = now() - interval '1 s' WHERE execution_id = 'race'"
                    )
                try:
                    taken = own.acquire("race", "fsync")
                except ExecutionLockedError:
                    continue
                try:
                    for j in range(3):
                        taken.writer.append(task_started(f"{n}.{i}.{j}"))
                        taken.writer.sync()
                        written[0] += 1
                except OwnershipLostError:
                    refused[0] += 1
                finally:
                    taken.close()
        finally:
            own.close()

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = store.read("race").records
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert len(records) == 2 + written[0]
    with psycopg.connect(pg_url) as conn:
        epochs = [
            e
            for (e,) in conn.execute(
                "SELECT r.epoch FROM flux.records r JOIN flux.executions e ON e.pk = r.exec_pk WHERE e.execution_id = "
                "'race' ORDER BY r.seq"
            )
        ]
    assert epochs == sorted(epochs)
    assert refused[0] > 0  # the race really happened


def test_a_lease_not_renewed_is_taken_over_and_the_old_writer_refused(store: PostgresStore, pg_url: str) -> None:
    lease = store.create("slow", header("slow"), "fsync")
    lease.writer.append(started())
    lease.writer.sync()
    store._stop.set()  # this process stops renewing (as if stopped or cut off)
    other = PostgresStore(pg_url, lease=2.0)
    try:
        with pytest.raises(ExecutionLockedError):
            other.acquire("slow", "fsync")
        deadline = asyncio.run(_wait_acquire(other, "slow", 6.0))
        assert deadline is not None
        lease.writer.append(task_started("1"))
        with pytest.raises(OwnershipLostError):
            lease.writer.sync()
        with pytest.raises(DurabilityError):
            lease.writer.append(task_started("2"))
        deadline.writer.append(task_started("9"))
        deadline.writer.sync()
        deadline.close()
    finally:
        other.close()
    assert [r.get("call_id") for r in store.read("slow").records] == [None, None, "9"]


async def _wait_acquire(store: PostgresStore, execution_id: str, within: float) -> Any:
    for _ in range(int(within / 0.1)):
        try:
            return store.acquire(execution_id, "fsync")
        except ExecutionLockedError:
            await asyncio.sleep(0.1)
    return None


def test_syncs_of_many_executions_share_statements(store: PostgresStore) -> None:
    """Group commit across executions: 200 executions each flushing at once take far fewer
    statements than syncs, and every record lands."""
    leases = [store.create(f"g{i}", header(f"g{i}"), "fsync") for i in range(200)]

    async def all_flush() -> None:
        async def one(lease: Any) -> None:
            for k in range(3):
                lease.writer.append(task_started(str(k)))
                await lease.writer.flush()

        await asyncio.gather(*(one(lease) for lease in leases))

    before = store.flush_statistics()
    asyncio.run(all_flush())
    statements, syncs = (a - b for a, b in zip(store.flush_statistics(), before, strict=True))
    for lease in leases:
        lease.close()
    assert syncs == 600
    assert statements <= 60, statements
    assert all(len(store.read(f"g{i}").records) == 4 for i in range(200))


def test_one_statement_with_mixed_syncs_lands_each_as_sent(store: PostgresStore) -> None:
    """One statement carrying syncs of one, two and many lines, with and without a lifecycle
    status, beside a sync under a stale epoch: the others land with their exact lines, the
    finished one gives its lease up, and only the stale one is refused."""
    from flux._engine.journal import encode_line, seed_for
    from flux._engine.stores.pg_flush import Flusher, Sync

    ids = ["m0", "m1", "m2", "m3"]
    leases = {eid: store.create(eid, header(eid), "fsync") for eid in ids}
    counts = {"m0": 1, "m1": 2, "m2": 40, "m3": 1}
    lines = {
        eid: [encode_line({**task_started(str(k)), "seq": 1 + k}, seed_for(eid)) for k in range(counts[eid])]
        for eid in ids
    }
    lines["m1"][-1] = encode_line({"seq": 2, "kind": "workflow_completed", "at": "x", "output": "é"}, seed_for("m1"))
    outcomes: dict[str, BaseException | None] = {}
    syncs = [
        Sync(
            eid,
            leases[eid].epoch + (1 if eid == "m3" else 0),  # m3: an epoch nobody holds
            1,
            lines[eid],
            "completed" if eid == "m1" else None,
            lambda error, cancel, eid=eid: outcomes.__setitem__(eid, error),
            eid,
        )
        for eid in ids
    ]
    flusher = Flusher(lambda: store._connect("fsync"), threads=1)
    conn = flusher._flush(None, syncs)  # one statement for the four syncs
    assert conn is not None
    conn.close()
    assert flusher.statements == 1 and flusher.syncs == 4
    assert outcomes["m0"] is None and outcomes["m1"] is None and outcomes["m2"] is None
    assert isinstance(outcomes["m3"], OwnershipLostError)
    for eid in ("m0", "m1", "m2"):
        data = store.journal_bytes(eid)
        assert data.endswith(b"".join(lines[eid])) and len(store.read(eid).records) == 1 + counts[eid]
    assert len(store.read("m3").records) == 1
    assert store.summary("m1").status == "completed" and store.summary("m0").status == "created"
    with store._conn("look") as conn:
        row = conn.execute("SELECT holder, next_seq FROM flux.executions WHERE execution_id = 'm1'").fetchone()
    assert row == (None, 3)  # the finishing statement gave the lease up
    for lease in leases.values():
        lease.released = True  # written behind the writers' backs: nothing more to release
        lease.close()


# -- durability ordering through the shared flusher ---------------------------------------------

_SEEN: dict[str, bool] = {}
_URL: list[str] = []


@__import__("flux").task
def _look_for_my_start() -> str:
    """Runs in a worker thread: is this call's task_started committed in the database?"""
    from flux.tasks import idempotency_key

    execution_id, call_id = idempotency_key().split(":", 1)
    with psycopg.connect(_URL[0]) as conn:
        found = conn.execute(
            "SELECT count(*) FROM flux.records r JOIN flux.executions e ON e.pk = r.exec_pk "
            "WHERE e.execution_id = %s AND r.line LIKE %s",
            (execution_id, f'%"kind":"task_started"%"call_id":"{call_id}"%'.encode()),
        ).fetchone()[0]
    _SEEN[f"{execution_id}:{call_id}"] = found == 1
    return call_id


@__import__("flux").workflow
async def fan_out(ctx: Any) -> int:
    results = await asyncio.gather(*(_look_for_my_start() for _ in range(ctx.input)))
    return len(results)


@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_no_body_starts_before_its_task_started_is_committed(
    store: PostgresStore, pg_url: str, durability: str
) -> None:
    from flux.client import Client

    _URL[:] = [pg_url]
    _SEEN.clear()

    async def scenario() -> list[str]:
        async with Client(store, durability=durability) as client:
            handles = [
                await client.start(fan_out, 15, execution_id=f"fan-{durability}-{i}", run_here=True) for i in range(8)
            ]
            return [str((await h.result()).status) for h in handles]

    before = store.flush_statistics()
    assert asyncio.run(scenario()) == ["completed"] * 8
    statements, syncs = (a - b for a, b in zip(store.flush_statistics(), before, strict=True))
    assert len(_SEEN) == 8 * 15 and all(_SEEN.values())
    assert statements < syncs  # executions that became ready together shared commits
    with store._connect(durability) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off" if durability == "os" else "on",)


def test_a_flush_waits_for_its_records_even_when_another_flush_sent_them(store: PostgresStore) -> None:
    """Two flushes of one writer: the second must not return before the records appended
    before it are committed, though the first flush (woken first) sends them."""
    lease = store.create("two", header("two"), "fsync")

    async def scenario() -> int:
        writer = lease.writer
        writer.append(started())
        first = asyncio.create_task(writer.flush())
        await asyncio.sleep(0)  # the first flush has sent seq 1
        writer.append(task_started("1"))  # seq 2, buffered while seq 1 is in flight
        await writer.flush()
        committed = writer.synced_seq  # what this flush's return vouches for, looked at at once
        await first
        return committed

    assert asyncio.run(scenario()) == 2 and len(store.read("two").records) == 3
    lease.close()


def test_a_lone_execution_commits_from_its_own_thread_and_two_share_the_flusher(store: PostgresStore) -> None:
    """One execution held by the process has nothing to share a commit with: each of its syncs
    is sent from the thread that runs it (no hand-over to a flusher thread and back). Two held
    at once go through the flusher threads (which group syncs that wait together: see
    test_syncs_of_many_executions_share_statements)."""
    lone = store.create("lone", header("lone"), "fsync")

    async def one(lease: Any, calls: int) -> None:
        lease.writer.append(started())
        for k in range(calls):
            lease.writer.append(task_started(str(k)))
            await lease.writer.flush()

    flusher = store._flusher("fsync")
    here, before = flusher.sent_here, store.flush_statistics()
    asyncio.run(one(lone, 20))
    statements, syncs = (a - b for a, b in zip(store.flush_statistics(), before, strict=True))
    assert (statements, syncs, flusher.sent_here - here) == (20, 20, 20)
    lone.close()
    assert len(store.read("lone").records) == 22

    pair = [store.create(eid, header(eid), "fsync") for eid in ("pair-a", "pair-b")]

    async def both() -> None:
        await asyncio.gather(*(one(lease, 20) for lease in pair))

    here, before = flusher.sent_here, store.flush_statistics()
    asyncio.run(both())
    statements, syncs = (a - b for a, b in zip(store.flush_statistics(), before, strict=True))
    assert syncs == 40 and statements <= 40 and flusher.sent_here == here
    for lease in pair:
        lease.close()
    assert [len(store.read(eid).records) for eid in ("pair-a", "pair-b")] == [22, 22]


def test_a_journal_read_in_parts_joined_by_the_server_is_its_lines_in_seq_order(store: PostgresStore) -> None:
    """The server joins each run of records' lines (engine/stores/postgres.py, `_LINES_PER_PART`):
    across several parts, and cut at a seq inside one, the bytes are the lines one by one."""
    from flux._engine.stores import postgres

    lease = store.create("parts", header("parts"), "os")
    count = 3 * postgres._LINES_PER_PART + 17
    for k in range(count):
        lease.writer.append(task_started(str(k), name="t" * (k % 300)))  # lines of many lengths
        if k % 100 == 99:
            lease.writer.sync()
    lease.writer.sync()
    lease.close()
    with store._conn("look") as conn:
        (pk,) = conn.execute("SELECT pk FROM flux.executions WHERE execution_id = 'parts'").fetchone()
        rows = conn.execute("SELECT line FROM flux.records WHERE exec_pk = %s ORDER BY seq", (pk,)).fetchall()
    lines = [bytes(r[0]) for r in rows]
    assert len(lines) == count + 1
    assert store.journal_bytes("parts") == b"".join(lines)
    cut = postgres._LINES_PER_PART + 5
    assert store._journal_bytes(pk, cut) == b"".join(lines[:cut])
    assert len(store.read("parts").records) == count + 1


class _CutAfterCommit:
    """A real connection that fails right after its next statement committed, before its
    answer is read: the writer cannot tell whether the records landed."""

    def __init__(self, real: psycopg.Connection[Any]) -> None:
        self.real = real

    @property
    def closed(self) -> bool:
        return self.real.closed

    def close(self) -> None:
        self.real.close()

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self.real.execute(*args, **kwargs).fetchall()
        self.real.close()
        raise psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.mark.parametrize("cut", ["before the statement", "after its commit"])
def test_a_commit_sent_from_the_running_thread_whose_connection_fails_lands_once(
    store: PostgresStore, pg_url: str, cut: str
) -> None:
    """The connection of a lone execution's commit fails: before the statement reached the
    server (its backend terminated), or after the statement committed (its answer lost). The
    flusher threads find out which, send again only what did not land, and the run goes on with
    every record exactly once."""
    from flux._engine.stores.pg_flush import Flusher

    lease = store.create("cut", header("cut"), "fsync")
    connects = [0]

    def connect() -> Any:
        connects[0] += 1
        conn = store._connect("fsync")
        if connects[0] == 1 and cut == "after its commit":
            return _CutAfterCommit(conn)
        return conn

    flusher = Flusher(connect)
    store._flusher("fsync").close()
    store._flushers["fsync"] = flusher  # this store's writers use it from now on

    async def scenario() -> None:
        writer = lease.writer
        writer.append(started())
        await writer.flush()  # sent from this thread, on the first connection
        if cut == "before the statement":
            with psycopg.connect(pg_url, autocommit=True) as other:
                pid = flusher._here.info.backend_pid  # type: ignore[union-attr]
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            writer.append(task_started("1"))
            await writer.flush()  # the connection is gone: the flusher resolves and resends
        writer.append(task_started("2"))
        await writer.flush()

    asyncio.run(scenario())
    kinds = [r["kind"] for r in store.read("cut").records]
    assert kinds == ["header", "workflow_started", "task_started", "task_started"][
        : 4 if cut == "before the statement" else 3
    ]
    calls = [r.get("call_id") for r in store.read("cut").records if r["kind"] == "task_started"]
    assert calls == (["1", "2"] if cut == "before the statement" else ["2"])
    assert lease.writer.synced_seq == len(kinds) - 1
    assert connects[0] >= 2  # the flusher looked the outcome up on a connection of its own
    lease.close()


def test_flux_serve_runs_what_it_starts_on_a_postgresql_store(pg_url: str, tmp_path: Path) -> None:
    """No worker runs: the server runs the execution it starts itself, and serves it back."""
    from tests.serve_helpers import Server

    empty_pg(pg_url)
    server = Server(pg_url, tmp_path)
    try:
        with server.client() as api:
            started = api.post("/api/v1/workflows/echo/executions?execution_id=served-1&wait=20", content=b"41")
            assert started.status_code == 201, started.text
            body = started.json()
            assert body["status"] == "completed" and body["output"]["plus_one"] == 42, body
            assert body["divergence"] is None
            listed = api.get("/api/v1/executions").json()
            assert [row["execution_id"] for row in listed["items"]] == ["served-1"]
    finally:
        server.stop()
    shown = flux_cmd("show", "served-1", "--store", pg_url, cwd=tmp_path)
    assert "status: completed" in shown.stdout, shown.stderr


def test_stored_outputs_nothing_names_any_more_are_swept_from_the_database(store: PostgresStore, pg_url: str) -> None:
    """Output storage on PostgreSQL (one table, outputs shared by content): deleting or purging
    the last execution naming an output deletes it; one still named (by a journal or a cache
    entry) stays, and so does one written or reused in the last minute."""
    import time

    from flux.retention import delete_execution, prune_store, sweep_blobs
    from tests.test_retention import stores

    def run(tags: list[str]) -> str:
        return str(stores.run(tags, store=store, durability="os").execution_id)

    def blobs() -> dict[str, bytes]:
        with psycopg.connect(pg_url) as conn:
            return {d: bytes(v) for d, v in conn.execute("SELECT digest, data FROM flux.blobs").fetchall()}

    def age_them() -> None:  # as if each had been written an hour ago
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE flux.blobs SET touched_at = now() - interval '1 hour'")

    shared_bytes = b'"' + b"shared" * 1000 + b'"'
    first = run(["shared", "only-first"])
    second = run(["shared"])
    assert len(blobs()) == 2
    # Its last journal deleted, but written a moment ago (a run may be about to record it): kept.
    assert delete_execution(first, store) == [first]
    assert len(blobs()) == 2
    age_them()
    assert sweep_blobs(store) == 1
    assert list(blobs().values()) == [shared_bytes]  # still named by the second execution
    # Reused just before a sweep: its time is renewed, so it stays until it is old again.
    lone = store.blobs.put(b'"lone"')
    age_them()
    assert store.blobs.put(b'"lone"') == lone
    assert sweep_blobs(store) == 0 and lone in blobs()
    age_them()
    assert sweep_blobs(store) == 1 and lone not in blobs()
    # A cache entry naming it keeps it when the last journal naming it is purged.
    (shared,) = blobs()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO flux.cache (key, data) VALUES ('k', %s)", (b'{"$blob":"' + shared.encode() + b'"}',))
    pruned = prune_store(store, finished_before="0s", now=time.time() + 5)
    assert pruned.deleted == [second] and pruned.blobs == 0 and list(blobs()) == [shared]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM flux.cache")
    assert sweep_blobs(store) == 1 and blobs() == {}
