"""The PostgreSQL store: journals as rows of one database, shared by any number of processes on
any number of machines (SPEC.md 13).

Each record is kept as its exact journal line (`flux.records`), so a journal read from here is
byte for byte the file store's. Ownership is a lease with a fencing token: taking an execution
bumps its `epoch`, and every append is one statement that lands only while the writer's epoch
is current and the seq it expects is next (engine/stores/pg_flush.py). A process renews the
leases it holds in one statement every lease/3 (a thread of the store, so a busy event loop
does not lose them); one that stops renewing (killed, stopped, cut off) loses them after the
lease, and its next write is refused.

Only this module and pg_flush.py speak SQL; psycopg's errors become the errors of the tree here.
The module is imported only for `postgresql://` stores (the `postgresql` extra).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import orjson

try:
    import psycopg
    from psycopg_pool import ConnectionPool
except ImportError as err:  # pragma: no cover - the extra is missing
    from flux._engine.errors import StoreError

    raise StoreError(
        "this installation has no PostgreSQL driver; install the postgresql extra (pip install "
        "'flux-replay[postgresql]')"
    ) from err

from flux._engine.errors import (
    DurabilityError,
    ExecutionExistsError,
    ExecutionLockedError,
    ExecutionNotFoundError,
    InvalidOptionError,
    OwnershipLostError,
    StoreError,
)
from flux._engine.journal import (
    MAX_RECORD_BYTES,
    BufferedWriter,
    JournalRead,
    Known,
    Records,
    Visit,
    check_journal,
    encode_line,
    seed_for,
)
from flux._engine.records import LIFECYCLE, Status
from flux._engine.store import (
    ExecutionSummary,
    Page,
    decode_cursor,
    encode_cursor,
    schedule_of,
    this_host,
    validate_execution_id,
)
from flux._engine.stores import pg_schema
from flux._engine.stores.pg_capabilities import Blobs, Cache, Snapshots
from flux._engine.stores.pg_fleet import LIVE, FleetMixin
from flux._engine.stores.pg_flush import Flusher, Sync, loop_waker, register_arrays
from flux._engine.stores.pg_schedules import PgBook

__all__ = ["PostgresStore", "PgLease", "PgWriter", "redact_url"]

DEFAULT_LEASE = 15.0

# The pool reports connection trouble through logging; without a handler of the application's,
# Python would print each report to stderr beside the one error line the caller gets.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())
log = logging.getLogger("flux")
_FINISHED = ("completed", "failed", "cancelled")

# TCP liveness for every connection the store opens, unless the URL sets its own (SPEC.md 13):
# a server that vanished without closing the connection (a partition, a host powered off) is
# noticed within about 25 s on an idle connection, and a statement whose bytes the server does
# not acknowledge fails after 15 s, instead of hanging until the kernel's own limits (hours).
_LIVENESS: dict[str, Any] = {
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
    "tcp_user_timeout": 15000,
}


def liveness_options(url: str) -> dict[str, Any]:
    """The connection options of `_LIVENESS` that `url` does not set itself."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return {}  # a malformed URL: connecting says so, once
    options = {k: v for k, v in _LIVENESS.items() if k not in given}
    if psycopg.pq.version() < 120000:  # libpq before 12 does not know the option
        options.pop("tcp_user_timeout", None)
    return options
_LIVE = LIVE


def redact_url(url: str) -> str:
    """A URL with its password left out, for messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


@contextlib.contextmanager
def db_errors(url: str, doing: str) -> Iterator[None]:
    """Turns a driver error met while `doing` something into a StoreError that says what to do."""
    try:
        yield
    except psycopg.errors.UndefinedTable as err:
        raise StoreError(
            f"{redact_url(url)}: the database has no Flux schema; run `flux db migrate --store URL` first"
        ) from err
    except psycopg.errors.UndefinedColumn as err:
        raise StoreError(
            f"{redact_url(url)}: the database's Flux schema is older than this Flux; run `flux db migrate --store URL`"
        ) from err
    except psycopg.OperationalError as err:
        raise StoreError(
            f"{redact_url(url)}: cannot {doing} ({str(err).strip() or type(err).__name__}); is the database up?"
        ) from err
    except psycopg.Error as err:
        raise StoreError(f"{redact_url(url)}: cannot {doing} ({str(err).strip() or type(err).__name__})") from err


# Reading a journal: the lines of each part are joined by the server, in seq order. A part holds
# at most 256 MiB of lines at the record size limit (the default: 256 lines of 1 MiB), far below
# PostgreSQL's 1 GB for one value.
_LINES_PER_PART = max(1, min(4096, (256 << 20) // max(1, MAX_RECORD_BYTES)))
_NO_SEQ = 2**31 - 1  # above every seq (an integer column)
_READ_SQL = (
    "SELECT seq / %(rows)s AS part, string_agg(line, ''::bytea ORDER BY seq) FROM flux.records "
    "WHERE exec_pk = %(pk)s AND seq < %(upto)s GROUP BY part ORDER BY part"
)


class PgWriter(BufferedWriter):
    """Appends to one execution under its lease's epoch. `flush()` hands the buffer to the
    store's flusher and waits with the other executions of the process (group commit), or, when
    the process holds this execution alone, sends it from the running thread; `sync()` does the
    same and blocks."""

    is_async = True

    def __init__(
        self,
        store: PostgresStore,
        lease: PgLease,
        execution_id: str,
        next_seq: int,
        durability: str,
        size: int,
        crc: int,
    ) -> None:
        super().__init__(store.describe(execution_id), execution_id, next_seq, durability)
        self._store = store
        self._lease = lease
        self._status: str | None = None  # the lifecycle status the buffered records leave
        self._size = size
        self._crc = crc
        self._inflight: asyncio.Future[None] | None = None

    def append(self, record: dict[str, Any]) -> int:
        seq = super().append(record)
        status = LIFECYCLE.get(record.get("kind", ""))
        if status is not None:
            self._status = str(status)
        return seq

    def discard(self) -> None:
        super().discard()
        self._status = None

    def _sync_of(self, done: Any) -> Sync:
        if self._broken is not None:
            raise DurabilityError(f"{self.where}: an earlier write failed; the run cannot go on") from self._broken
        if self._lease.lost:
            self._broken = OwnershipLostError(
                f"{self.where}: the lease was lost (not renewed in time, or taken over); stopped without writing"
            )
            raise self._broken
        lines = self._pending
        self._pending = []
        status, self._status = self._status, None
        first = self.next_seq - len(lines)
        return Sync(self.execution_id, self._lease.epoch, first, lines, status, done, self.where)

    def _applied(self, sync: Sync, error: BaseException | None, cancel: bool) -> None:
        if error is not None:
            self._broken = error
            return
        for line in sync.lines:
            self._crc = zlib.crc32(line, self._crc)
            self._size += len(line)
        last = sync.from_seq + len(sync.lines) - 1
        if last > self.synced_seq:
            self.synced_seq = last
        if sync.status in _FINISHED:
            self._lease.released = True  # the statement gave the lease up with the last records
        self._lease.cancel_seen = self._lease.cancel_seen or cancel

    def sync(self) -> None:
        if not self._pending:
            if self._broken is not None:
                raise DurabilityError(f"{self.where}: an earlier write failed; the run cannot go on") from self._broken
            return
        finished = threading.Event()
        outcome: list[BaseException | None] = []

        def done(error: BaseException | None, cancel: bool) -> None:
            outcome.append(error)
            finished.set()

        sync = self._sync_of(done)
        self._send(sync)
        finished.wait()
        self._applied(sync, outcome[0], False)
        if outcome[0] is not None:
            raise outcome[0]

    async def flush(self) -> None:
        """Returns once every record appended before the call is committed. One sync of this
        writer is in flight at a time (the next one's first seq depends on it); whoever finds
        records buffered and nothing in flight sends them, and every caller waits until the
        records it needs are committed, whoever sent them."""
        target = self.next_seq - 1
        while self.synced_seq < target:
            if self._broken is not None:
                self._raise_broken()
            inflight = self._inflight
            if inflight is None or inflight.done():
                if not self._pending:
                    break  # discarded meanwhile (engine trouble): nothing more to wait for
                loop = asyncio.get_running_loop()
                inflight = loop.create_future()
                holder: list[Sync] = []

                def apply(error: BaseException | None, cancel: bool, held: list[Sync] = holder) -> None:
                    self._applied(held[0], error, cancel)

                sync = self._sync_of(loop_waker(loop, inflight, apply))
                holder.append(sync)
                self._inflight = inflight
                self._send(sync)
            if not inflight.done():
                # wait() neither raises the write's error (the writer keeps it) nor cancels the
                # write when this caller is cancelled.
                await asyncio.wait([inflight])
        if self._broken is not None and self.synced_seq < target:
            self._raise_broken()

    def _send(self, sync: Sync) -> None:
        """Sends a sync from this thread when this is the only execution the process holds
        (nothing to share a commit with), else hands it to the flusher threads."""
        flusher = self._store._flusher(self.durability)
        if not (len(self._store._held) == 1 and flusher.send_here(sync)):
            flusher.submit([sync])

    def _raise_broken(self) -> None:
        if isinstance(self._broken, DurabilityError):
            raise self._broken  # OwnershipLostError stays itself for whoever handles it
        raise DurabilityError(f"{self.where}: an earlier write failed; the run cannot go on") from self._broken

    def position(self) -> tuple[int, int, int]:
        return self._size, self.synced_seq + 1, self._crc


class PgLease:
    """An execution held by this process under one epoch."""

    def __init__(self, store: PostgresStore, execution_id: str, epoch: int, owner: dict[str, Any]) -> None:
        self._store = store
        self.execution_id = execution_id
        self.epoch = epoch
        self.owner = owner
        self.lost = False  # set when a renewal found the lease gone
        self.cancel_seen = False  # a cancellation was asked (seen by a flush or the keeper)
        self.released = False  # the run finished: its last flush gave the lease up
        self.read: JournalRead = JournalRead("", [], [], 0)
        self.writer: PgWriter = None  # type: ignore[assignment]
        self._closed = False
        self._parking: tuple[str | None, float | None] | None = None

    def close(self) -> None:
        """Gives the execution up: a run left unfinished is runnable again at once, unless it
        was parked (`park`)."""
        if self._parking is not None:
            self.release(status=self._parking[0], ready_at=self._parking[1], wake_on_resume=True)
        else:
            self.release()

    def park(self, status: str | None, ready_at: float | None) -> None:
        """When closed, hand the execution back as `status` (e.g. `sleeping`), runnable at
        `ready_at` (epoch seconds; None: only after an outside event)."""
        self._parking = (status, ready_at)

    def release(
        self, *, status: str | None = None, ready_at: float | None = None, wake_on_resume: bool = False
    ) -> None:
        """Gives the execution up. `status` and `ready_at` (epoch seconds, None: not before an
        outside event) park it; without them an unfinished run is runnable at once."""
        if self._closed:
            return
        self._closed = True
        self.writer.close()
        self._store._forget(self)
        if not self.released:
            self._store._release(self, status, ready_at, parked=status is not None or wake_on_resume)


class PostgresStore(FleetMixin):
    """Journals in a PostgreSQL database (schema `flux`, made by `flux db migrate`).

    Args:
        url: `postgresql://user:password@host:port/database?...` (libpq's URL form).
        lease: seconds a lease lasts without renewal ($FLUX_LEASE, else 15).
        queue: the queue new executions are submitted to ($FLUX_QUEUE, else "default").
    """

    _named: ClassVar[dict[str, PostgresStore]] = {}
    _named_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str, *, lease: float | None = None, queue: str | None = None, pool_size: int = 4) -> None:
        self._url = url
        self.lease = float(lease if lease is not None else os.environ.get("FLUX_LEASE") or DEFAULT_LEASE)
        if not self.lease > 0:
            raise InvalidOptionError(f"lease={self.lease:g} must be > 0 seconds")
        self.queue = queue or os.environ.get("FLUX_QUEUE") or "default"
        self._options = liveness_options(url)
        self.holder = f"{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.snapshots = Snapshots(self)
        self.blobs = Blobs(self)
        self.cache = Cache(self)
        self.schedules = PgBook(self)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, **self._options},
            open=False,
            name="flux",
            timeout=30.0,
            reconnect_timeout=60.0,
        )
        self._opened = False
        self._lock = threading.Lock()
        self._flushers: dict[str, Flusher] = {}
        self._held: dict[str, PgLease] = {}
        # Claims made by this process (a worker's), not yet acquired: id -> (epoch, journal, lease),
        # their leases renewed from the moment of the claim.
        self._claimed: dict[str, tuple[int, bytes | None, PgLease | None]] = {}
        self._claimed_snapshots: dict[str, bytes | None] = {}  # read with the claim
        self._keeper: threading.Thread | None = None
        self._notifier: threading.Thread | None = None
        self._hinted = False
        self._hint_wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False

    @classmethod
    def named(cls, url: str) -> PostgresStore:
        """The process's store for this URL: one pool, one flusher and one lease keeper per process."""
        with cls._named_lock:
            store = cls._named.get(url)
            if store is None or store._closed:
                store = cls._named[url] = cls(url)
            return store

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self._url)!r})"

    def describe(self, execution_id: str) -> str:
        return f"{redact_url(self._url)}#{validate_execution_id(execution_id)}"

    def secrets_file(self) -> str | None:
        return None

    # -- connections ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _conn(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise StoreError(f"{redact_url(self._url)}: the store was closed")
        if not self._opened:
            with self._lock:
                if not self._opened:
                    with db_errors(self._url, "connect to the database"):
                        # One direct connection first: a wrong URL or a server that is down is
                        # one clear error now, not a pool retrying in the background.
                        psycopg.connect(self._url, autocommit=True, connect_timeout=10, **self._options).close()
                    self._pool.open(wait=False)
                    self._opened = True
                    _open_stores.add(self)
        with db_errors(self._url, doing):
            with self._pool.connection() as conn:
                yield conn

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any], doing: str) -> Any:
        with self._conn(doing) as conn:
            return conn.execute(sql, params).fetchone()

    def _connect(self, durability: str = "fsync") -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self._url, autocommit=True, application_name=f"flux-flusher-{durability}", **self._options
        )
        # The append statement is prepared and planned once: a custom plan per sync costs more
        # than the commit (engine/stores/pg_flush.py).
        conn.execute("SET plan_cache_mode = force_generic_plan")
        register_arrays(conn)
        if durability == "os":
            # An asynchronous commit: a crash of the server may lose the last few hundred
            # milliseconds of commits, as whole transactions (SPEC.md 13.3).
            conn.execute("SET synchronous_commit = off")
        return conn

    def _flusher(self, durability: str) -> Flusher:
        flusher = self._flushers.get(durability)
        if flusher is None:
            with self._lock:
                flusher = self._flushers.get(durability)
                if flusher is None:
                    flusher = self._flushers[durability] = Flusher(lambda: self._connect(durability))
                    _open_stores.add(self)
        return flusher

    def flush_statistics(self) -> tuple[int, int]:
        """(statements, syncs) sent by this process's flushers: syncs per statement is the group
        commit's gain."""
        return (sum(f.statements for f in self._flushers.values()), sum(f.syncs for f in self._flushers.values()))

    def close(self) -> None:
        """Gives up every lease this process holds and closes the connections."""
        if self._closed:
            return
        for lease in list(self._held.values()):
            with contextlib.suppress(Exception):
                lease.close()
        self._closed = True
        self._stop.set()
        self._hint_wake.set()
        for thread in (self._keeper, self._notifier):
            if thread is not None:
                thread.join(timeout=5)
        for flusher in self._flushers.values():
            flusher.close()
        if self._opened:
            self._pool.close()
        _open_stores.discard(self)

    def migrate(self) -> list[int]:
        """Applies the schema migrations the database lacks (safe beside other processes)."""
        with self._conn("migrate the schema") as conn:
            return pg_schema.migrate(conn)

    def schema_version(self) -> int:
        with self._conn("read the schema version") as conn:
            return pg_schema.applied_version(conn)

    # -- ownership (SPEC.md 13.4) ---------------------------------------------------------------

    def _owner(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": this_host(), "since": time.time(), "worker": self.holder}

    def _hold(self, lease: PgLease) -> None:
        with self._lock:
            self._held[lease.execution_id] = lease
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(target=self._keep, name="flux-pg-leases", daemon=True)
                self._keeper.start()

    def _forget(self, lease: PgLease) -> None:
        with self._lock:
            if self._held.get(lease.execution_id) is lease:
                del self._held[lease.execution_id]

    def held(self) -> list[PgLease]:
        with self._lock:
            return list(self._held.values())

    def _keep(self) -> None:
        """Renews every lease of the process in one statement every lease/3, and looks for
        cancellations of the executions it holds a few times a second."""
        conn: psycopg.Connection[Any] | None = None
        next_renew = time.monotonic() + self.lease / 3
        while not self._stop.wait(0.2):
            leases = self.held()
            if not leases:
                next_renew = time.monotonic()  # the first lease taken is renewed on time
                continue
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                if time.monotonic() >= next_renew:
                    late = time.monotonic() - next_renew
                    if late > self.lease / 3 and next_renew > 0:
                        log.warning("leases renewed %.2f s late (the process or the database is overloaded)", late)
                    next_renew = time.monotonic() + self.lease / 3
                    began = time.monotonic()
                    self._renew(conn, leases)
                    if time.monotonic() - began > self.lease / 3:
                        log.warning("renewing %d leases took %.2f s", len(leases), time.monotonic() - began)
                else:
                    rows = conn.execute(
                        "SELECT execution_id FROM flux.executions WHERE holder = %s AND cancel_requested",
                        (self.holder,),
                    ).fetchall()
                    wanted = {r[0] for r in rows}
                    for lease in leases:
                        if lease.execution_id in wanted:
                            lease.cancel_seen = True
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None  # the database is away: try again; writes are fenced anyway
        if conn is not None:
            conn.close()

    def _renew(self, conn: psycopg.Connection[Any], leases: list[PgLease]) -> None:
        rows = conn.execute(
            "UPDATE flux.executions e SET lease_until = now() + make_interval(secs => %s) "
            "FROM unnest(%s::text[], %s::bigint[]) AS o(execution_id, epoch) "
            "WHERE e.execution_id = o.execution_id AND e.epoch = o.epoch AND e.holder = %s "
            "RETURNING e.execution_id, e.cancel_requested",
            (self.lease, [lease.execution_id for lease in leases], [lease.epoch for lease in leases], self.holder),
        ).fetchall()
        kept = dict(rows)
        for lease in leases:
            if lease.execution_id in kept:
                lease.cancel_seen = lease.cancel_seen or bool(kept[lease.execution_id])
            elif not lease._closed:
                lease.lost = True

    def _release(self, lease: PgLease, status: str | None, ready_at: float | None, parked: bool) -> None:
        if self._closed:
            return
        if parked:
            sql = (
                "UPDATE flux.executions SET holder = NULL, owner = NULL, lease_until = NULL, "
                "status = coalesce(%s, status), ready_at = to_timestamp(%s) "
                "WHERE execution_id = %s AND epoch = %s AND holder = %s RETURNING 1"
            )
            params: tuple[Any, ...] = (status, ready_at, lease.execution_id, lease.epoch, self.holder)
        else:
            sql = (
                "UPDATE flux.executions SET holder = NULL, owner = NULL, lease_until = NULL, "
                "ready_at = CASE WHEN status IN ('created', 'running', 'sleeping') THEN now() ELSE NULL END "
                "WHERE execution_id = %s AND epoch = %s AND holder = %s RETURNING 1"
            )
            params = (lease.execution_id, lease.epoch, self.holder)
        with contextlib.suppress(StoreError):  # unreachable: the lease expires by itself
            if self._one(sql, params, "give the execution up") and not parked:
                self.hint()

    # -- wake-up hints (SPEC.md 13.5) ------------------------------------------------------------

    def hint(self) -> None:
        """Tells listening workers that something became runnable. Coalesced: at most one
        NOTIFY per 10 ms per process, each its own statement, never inside a write transaction
        (a NOTIFY serialises the commits of the whole server). Workers poll anyway: a lost hint
        costs latency, nothing else."""
        with self._lock:
            self._hinted = True
            if self._notifier is None or not self._notifier.is_alive():
                self._notifier = threading.Thread(target=self._notify, name="flux-pg-notify", daemon=True)
                self._notifier.start()
            self._hint_wake.set()

    def _notify(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            self._hint_wake.wait(1.0)
            self._hint_wake.clear()
            if not self._hinted:
                continue
            self._hinted = False
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._url, autocommit=True, **self._options)
                conn.execute("NOTIFY flux_ready")
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.01)
        if conn is not None:
            conn.close()

    def listen(self, wake: Any) -> threading.Thread:
        """Calls `wake()` (from a thread of its own) whenever a hint arrives, until the store
        is closed; reconnects when the database goes away."""

        def run() -> None:
            while not self._stop.is_set():
                try:
                    with psycopg.connect(self._url, autocommit=True, **self._options) as conn:
                        conn.execute("LISTEN flux_ready")
                        while not self._stop.is_set():
                            for _ in conn.notifies(timeout=0.5, stop_after=1):
                                try:
                                    wake()
                                except RuntimeError:  # the event loop is gone
                                    return
                except psycopg.Error:
                    self._stop.wait(0.5)

        thread = threading.Thread(target=run, name="flux-pg-listen", daemon=True)
        thread.start()
        return thread

    def owner(self, execution_id: str) -> dict[str, Any] | None:
        row = self._one(
            f"SELECT owner FROM flux.executions WHERE execution_id = %s AND {_LIVE}",
            (validate_execution_id(execution_id),),
            "read the owner",
        )
        return dict(row[0]) if row and row[0] is not None else None

    # -- journals -------------------------------------------------------------------------------

    def create(self, execution_id: str, header: dict[str, Any], durability: str) -> PgLease:
        """Inserts the execution's row (owned by the caller, epoch 1) and its header in one
        transaction. Raises ExecutionExistsError when the execution exists."""
        validate_execution_id(execution_id)
        header["seq"] = 0
        line = encode_line(header, seed_for(execution_id))
        owner = self._owner()
        parent = header.get("parent")
        parent_id = parent.get("execution_id") if isinstance(parent, dict) else None
        row = self._one(
            "WITH e AS (INSERT INTO flux.executions (execution_id, workflow, queue, status, created, parent_id, "
            "schedule, epoch, holder, owner, lease_until, next_seq) VALUES (%s, %s, %s, 'created', %s, %s, %s, 1, "
            "%s, %s, now() + make_interval(secs => %s), 1) ON CONFLICT (execution_id) DO NOTHING RETURNING pk) "
            "INSERT INTO flux.records (exec_pk, seq, epoch, line) SELECT pk, 0, 1, %s FROM e RETURNING exec_pk",
            (
                execution_id,
                str(header.get("workflow", "")),
                self.queue,
                str(header.get("created", "")),
                parent_id,
                schedule_of(header),
                self.holder,
                orjson.dumps(owner).decode(),
                self.lease,
                line,
            ),
            "create the execution",
        )
        if row is None:
            raise ExecutionExistsError(execution_id, redact_url(self._url))
        lease = PgLease(self, execution_id, 1, owner)
        lease.read = JournalRead(self.describe(execution_id), Records.of([header]), [0], len(line))
        lease.writer = PgWriter(self, lease, execution_id, 1, durability, len(line), zlib.crc32(line))
        self._hold(lease)
        return lease

    def claimed(
        self,
        execution_id: str,
        epoch: int,
        journal: bytes | None = None,
        owner: dict[str, Any] | None = None,
        snapshot: bytes | None = None,
    ) -> None:
        """Notes that this process claimed the execution (a worker's claim, with the journal
        read after it): its lease is renewed from now on, and the next `acquire` of it here is
        that claim, with no statement more."""
        lease = None
        if journal is not None:
            lease = PgLease(self, execution_id, epoch, owner or self._owner())
            self._hold(lease)
        self._claimed[execution_id] = (epoch, journal, lease)
        if journal is not None:
            self._claimed_snapshots[execution_id] = snapshot

    def is_claimed(self, execution_id: str) -> bool:
        """This process claimed the execution and no run has taken the claim yet."""
        return execution_id in self._claimed

    def _drop_claim(self, execution_id: str) -> None:
        self._claimed_snapshots.pop(execution_id, None)
        claim = self._claimed.pop(execution_id, None)
        if claim is not None and claim[2] is not None:
            self._forget(claim[2])

    def acquire(
        self, execution_id: str, durability: str, visit: Visit | None = None, known: Known | None = None
    ) -> PgLease:
        """Takes the execution (epoch + 1) if nobody holds a live lease on it, then reads its
        journal: every record of the previous owners is in what it reads."""
        validate_execution_id(execution_id)
        owner = self._owner()
        claim = self._claimed.pop(execution_id, None)
        self._claimed_snapshots.pop(execution_id, None)
        if claim is not None and claim[1] is not None and claim[2] is not None:
            data = claim[1]
            return self._adopt(claim[2], lambda: data, durability, visit, known)
        adopt = claim[0] if claim is not None else None
        row = self._one(
            "UPDATE flux.executions SET epoch = epoch + 1, holder = %s, owner = %s, "
            "lease_until = now() + make_interval(secs => %s), ready_at = NULL, divergence = NULL "
            "WHERE execution_id = %s AND (holder IS NULL OR lease_until <= now() OR (holder = %s AND epoch = %s)) "
            "RETURNING pk, epoch, next_seq",
            (
                self.holder,
                orjson.dumps(owner).decode(),
                self.lease,
                execution_id,
                self.holder,
                adopt if adopt is not None else -1,
            ),
            "take the execution",
        )
        if row is None:
            holder = self._one(
                "SELECT owner FROM flux.executions WHERE execution_id = %s", (execution_id,), "read the owner"
            )
            if holder is None:
                raise ExecutionNotFoundError(execution_id, redact_url(self._url))
            raise ExecutionLockedError(execution_id, dict(holder[0] or {}))
        pk, epoch, next_seq = row
        lease = PgLease(self, execution_id, epoch, owner)
        self._hold(lease)
        return self._adopt(lease, lambda: self._journal_bytes(pk, next_seq), durability, visit, known)

    def _adopt(
        self, lease: PgLease, journal: Callable[[], bytes], durability: str, visit: Visit | None, known: Known | None
    ) -> PgLease:
        """Reads and checks the journal of an execution `lease` now holds (its bytes from
        `journal()`) and gives the lease its writer; on any failure the lease is given up."""
        execution_id = lease.execution_id
        try:
            data = journal()
            lease.read = check_journal(data, self.describe(execution_id), execution_id, visit=visit, known=known)
        except BaseException:
            lease.writer = PgWriter(self, lease, execution_id, 0, durability, 0, 0)
            lease.close()
            raise
        lease.writer = PgWriter(
            self, lease, execution_id, len(lease.read.records), durability, len(data), zlib.crc32(data)
        )
        return lease

    def _journal_bytes(self, pk: int, next_seq: int | None = None) -> bytes:
        # The server joins the lines of each run of `_LINES_PER_PART` records, in seq order: a
        # few hundred values to fetch rather than one row per record (a 100,000-task journal,
        # 200,000 rows, cost the client about a tenth of a second more).
        with self._conn("read the journal") as conn:
            cur = conn.cursor(binary=True)
            upto = _NO_SEQ if next_seq is None else next_seq
            cur.execute(_READ_SQL, {"pk": pk, "upto": upto, "rows": _LINES_PER_PART})
            parts = [r[1] for r in cur.fetchall()]
        return b"".join(parts)

    def export(self, execution_id: str) -> bytes:
        data = self.journal_bytes(execution_id)
        check_journal(data, self.describe(execution_id), execution_id)
        return data

    def journal_bytes(self, execution_id: str) -> bytes:
        """The journal's lines as stored, unchecked."""
        row = self._one(
            "SELECT pk FROM flux.executions WHERE execution_id = %s",
            (validate_execution_id(execution_id),),
            "read the journal",
        )
        if row is None:
            raise ExecutionNotFoundError(execution_id, redact_url(self._url))
        return self._journal_bytes(row[0])

    def read(self, execution_id: str, visit: Visit | None = None, known: Known | None = None) -> JournalRead:
        data = self.journal_bytes(execution_id)
        return check_journal(data, self.describe(execution_id), execution_id, visit=visit, known=known)

    def header(self, execution_id: str) -> dict[str, Any]:
        claim = self._claimed.get(execution_id)
        if claim is not None and claim[1]:
            first = claim[1][: claim[1].find(b"\n") + 1]
            return check_journal(first, self.describe(execution_id), execution_id).records[0]
        row = self._one(
            "SELECT r.line FROM flux.executions e JOIN flux.records r ON r.exec_pk = e.pk AND r.seq = 0 WHERE "
            "e.execution_id = %s",
            (validate_execution_id(execution_id),),
            "read the header",
        )
        if row is None:
            raise ExecutionNotFoundError(execution_id, redact_url(self._url))
        return check_journal(bytes(row[0]), self.describe(execution_id), execution_id).records[0]

    def exists(self, execution_id: str) -> bool:
        return (
            self._one(
                "SELECT 1 FROM flux.executions WHERE execution_id = %s",
                (validate_execution_id(execution_id),),
                "look the execution up",
            )
            is not None
        )

    def list_ids(self) -> list[str]:
        with self._conn("list the executions") as conn:
            return [r[0] for r in conn.execute("SELECT execution_id FROM flux.executions ORDER BY execution_id")]

    _COLUMNS = (
        f"execution_id, workflow, status, created, next_seq, parent_id, {_LIVE} AS live, divergence IS NOT NULL, "
        "schedule"
    )

    @staticmethod
    def _summary_of(row: Sequence[Any]) -> ExecutionSummary:
        execution_id, workflow, status, created, next_seq, parent_id, live, diverged, schedule = row
        shown: Any = status
        if diverged and not live:
            shown = Status.DIVERGED
        elif status == "running" and not live:
            shown = Status.INTERRUPTED
        else:
            with contextlib.suppress(ValueError):
                shown = Status(status)
        return ExecutionSummary(execution_id, workflow, shown, created, next_seq, parent_id, schedule=schedule)

    def summary(self, execution_id: str) -> ExecutionSummary:
        row = self._one(
            f"SELECT {self._COLUMNS} FROM flux.executions WHERE execution_id = %s",
            (validate_execution_id(execution_id),),
            "read the execution",
        )
        if row is None:
            raise ExecutionNotFoundError(execution_id, redact_url(self._url))
        return self._summary_of(row)

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        prefix: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        schedule: str | None = None,
    ) -> Page:
        if limit is not None and limit < 0:
            raise InvalidOptionError(f"limit={limit} must be >= 0")
        where: list[str] = []
        params: list[Any] = []
        if status:
            wanted = [status] if isinstance(status, str) else list(status)
            alternatives = []
            for s in wanted:
                if s == "interrupted":
                    alternatives.append(f"(status = 'running' AND NOT {_LIVE} AND divergence IS NULL)")
                elif s == "running":
                    alternatives.append(f"(status = 'running' AND {_LIVE})")
                elif s == "diverged":
                    alternatives.append(f"(divergence IS NOT NULL AND NOT {_LIVE})")
                else:
                    alternatives.append("(status = %s AND divergence IS NULL)")
                    params.append(str(s))
            where.append("(" + " OR ".join(alternatives) + ")")
        if workflow is not None:
            where.append("workflow = %s")
            params.append(workflow)
        if schedule is not None:
            where.append("schedule = %s")
            params.append(schedule)
        if prefix is not None:
            where.append("starts_with(execution_id, %s)")
            params.append(prefix)
        if created_after is not None:
            where.append("created >= %s")
            params.append(created_after)
        if created_before is not None:
            where.append("created < %s")
            params.append(created_before)
        if cursor is not None:
            created, last = decode_cursor(cursor)
            where.append("(created, execution_id) < (%s, %s)")
            params += [created, last]
        sql = f"SELECT {self._COLUMNS} FROM flux.executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, execution_id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit + 1)
        with self._conn("list the executions") as conn:
            rows = conn.execute(sql, params).fetchall()
        items = [self._summary_of(r) for r in rows]
        if limit is None or len(items) <= limit:
            return Page(tuple(items), None)
        kept = items[:limit]
        return Page(tuple(kept), encode_cursor(kept[-1].created, kept[-1].execution_id) if kept else None)

    async def wait_for_change(self, execution_id: str, timeout: float) -> None:
        """Returns once the execution's journal grows or its row changes, or after `timeout` s."""
        sql = "SELECT next_seq, status, holder, epoch FROM flux.executions WHERE execution_id = %s"
        params = (validate_execution_id(execution_id),)
        seen = self._one(sql, params, "watch the execution")
        deadline = time.monotonic() + timeout
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.1)
            if self._one(sql, params, "watch the execution") != seen:
                return

    # -- cancellation requests (SPEC.md 4.6) ----------------------------------------------------

    def delete(self, execution_id: str) -> None:
        """Removes the execution's row, records and snapshot in one transaction, unless a live
        lease holds it; a former owner's next append then finds no row and is refused."""
        validate_execution_id(execution_id)
        with self._conn("delete the execution") as conn, conn.transaction():
            row = conn.execute(
                f"SELECT pk, CASE WHEN {_LIVE} THEN owner END FROM flux.executions WHERE execution_id = %s FOR UPDATE",
                (execution_id,),
            ).fetchone()
            if row is None:
                raise ExecutionNotFoundError(execution_id, redact_url(self._url))
            if row[1] is not None:
                raise ExecutionLockedError(execution_id, dict(row[1]))
            conn.execute("DELETE FROM flux.records WHERE exec_pk = %s", (row[0],))
            conn.execute("DELETE FROM flux.snapshots WHERE execution_id = %s", (execution_id,))
            conn.execute("DELETE FROM flux.executions WHERE pk = %s", (row[0],))

    def request_cancel(self, execution_id: str) -> None:
        """Asks whoever runs the execution to cancel it; an execution nobody holds is made
        runnable, so a worker cancels it."""
        row = self._one(
            "UPDATE flux.executions SET cancel_requested = true, "
            "ready_at = CASE WHEN holder IS NULL AND status NOT IN ('completed', 'failed', 'cancelled') THEN now() "
            "ELSE ready_at END "
            "WHERE execution_id = %s RETURNING 1",
            (validate_execution_id(execution_id),),
            "ask for the cancellation",
        )
        if row is None:
            raise ExecutionNotFoundError(execution_id, redact_url(self._url))
        self.hint()

    def cancel_requested(self, execution_id: str) -> bool:
        lease = self._held.get(execution_id)
        if lease is not None:
            return lease.cancel_seen  # kept up to date by flushes and the lease keeper
        row = self._one(
            "SELECT cancel_requested FROM flux.executions WHERE execution_id = %s",
            (validate_execution_id(execution_id),),
            "read the cancellation",
        )
        return bool(row and row[0])

    def clear_cancel(self, execution_id: str) -> None:
        self._one(
            "UPDATE flux.executions SET cancel_requested = false WHERE execution_id = %s RETURNING 1",
            (validate_execution_id(execution_id),),
            "clear the cancellation",
        )
        lease = self._held.get(execution_id)
        if lease is not None:
            lease.cancel_seen = False


_open_stores: set[PostgresStore] = set()


@atexit.register
def _close_all() -> None:
    for store in list(_open_stores):
        with contextlib.suppress(Exception):
            store.close()
