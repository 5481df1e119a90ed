"""The PostgreSQL store's write path: fenced appends, shared by every execution of the process.

One sync of one execution is a `Sync`: its records' lines, the epoch its lease holds and the
seq the first line gets. Syncs wait in the store's `Flusher`; each of its threads takes every
sync waiting and sends them as one autocommit statement (process-level group commit: one
commit, one WAL flush, one round trip for the syncs of every execution that became ready
together, SPEC.md 13.3). The statement updates each execution's row only where the epoch is
still the writer's and `next_seq` is the first line's seq, and inserts the lines of the rows
it updated: a writer whose lease was taken over appends nothing, and is told so
(`OwnershipLostError`).

The statement is prepared once per connection and planned once (`prepare=True` on a connection
with `plan_cache_mode = force_generic_plan`, set by the store's `_connect`): planning its
common table expressions again for every sync costs more than the commit it precedes. Its
arrays are sent in PostgreSQL's binary array format, built here (`_array`), rather than
adapted element by element by the driver.

A process that runs one execution alone has nothing to share a commit with: its writer sends
each sync from its own thread, on a connection kept for that (`Flusher.send_here`), and spares
the two thread wake-ups of a hand-over to a flusher thread and back, which cost about as much as
the commit on a small machine. As soon as a second execution is held, or a sync already waits,
syncs go to the flusher threads again.

When the connection fails during the statement, whether it committed is unknown. The flusher
then asks the database, once it answers again, where each execution stands: `next_seq` moved
past the sync under the writer's epoch means committed; unchanged means not committed (sent
again); anything else means another owner took over.

Only this module writes journal records to PostgreSQL.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from flux._engine.errors import DurabilityError, OwnershipLostError

__all__ = ["APPEND_SQL", "Flusher", "Sync", "register_arrays"]

APPEND_SQL = """
WITH b AS (
    SELECT * FROM unnest(%(ids)s::text[], %(epochs)s::bigint[], %(froms)s::int[], %(ns)s::int[], %(statuses)s::text[])
        AS b(execution_id, epoch, from_seq, n, status)
), f AS (
    UPDATE flux.executions e
       SET next_seq = b.from_seq + b.n,
           status = coalesce(b.status, e.status),
           finished_at = CASE WHEN b.status IN ('completed', 'failed', 'cancelled') THEN now() ELSE e.finished_at END,
           -- a run that finished gives its lease up with its last records: no statement more
           holder = CASE WHEN b.status IN ('completed', 'failed', 'cancelled') THEN NULL ELSE e.holder END,
           owner = CASE WHEN b.status IN ('completed', 'failed', 'cancelled') THEN NULL ELSE e.owner END,
           lease_until = CASE WHEN b.status IN ('completed', 'failed', 'cancelled') THEN NULL ELSE e.lease_until END,
           ready_at = CASE WHEN b.status IN ('completed', 'failed', 'cancelled') THEN NULL ELSE e.ready_at END
      FROM b
     WHERE e.execution_id = b.execution_id AND e.epoch = b.epoch AND e.next_seq = b.from_seq
    RETURNING e.execution_id, e.pk, b.epoch, b.from_seq, e.cancel_requested
), i AS (
    INSERT INTO flux.records (exec_pk, seq, epoch, line)
    SELECT f.pk, f.from_seq + r.k, f.epoch, r.line
      FROM unnest(%(rids)s::text[], %(ks)s::int[], %(lines)s::bytea[]) AS r(execution_id, k, line)
      JOIN f ON f.execution_id = r.execution_id
)
SELECT execution_id, cancel_requested FROM f
"""

_WHERE_SQL = "SELECT execution_id, epoch, next_seq, cancel_requested FROM flux.executions WHERE execution_id = ANY(%s)"


class Sync:
    """One execution's records to append together. `done(error, cancel_requested)` is called
    once, from a flusher thread."""

    __slots__ = ("execution_id", "epoch", "from_seq", "lines", "status", "done", "where")

    def __init__(
        self,
        execution_id: str,
        epoch: int,
        from_seq: int,
        lines: list[bytes],
        status: str | None,
        done: Callable[[BaseException | None, bool], None],
        where: str,
    ) -> None:
        self.execution_id = execution_id
        self.epoch = epoch
        self.from_seq = from_seq
        self.lines = lines
        self.status = status
        self.done = done
        self.where = where


class _Array(bytes):
    """A one-dimensional array already in PostgreSQL's binary format; `oid` is the array type's."""

    oid = 0


class _Int4s(_Array):
    oid = 1007  # int4[]


class _Int8s(_Array):
    oid = 1016  # int8[]


class _Texts(_Array):
    oid = 1009  # text[]


class _Byteas(_Array):
    oid = 1001  # bytea[]


_ELEMENT = {_Int4s: 23, _Int8s: 20, _Texts: 25, _Byteas: 17}
_HEAD = struct.Struct(">iiIii")  # ndim, has NULLs, element type, length, lower bound


def _array(kind: type[_Array], items: list[bytes | None]) -> _Array:
    """`items` (each already encoded, None for NULL) as a binary array of `kind`."""
    if not items:
        return kind(struct.pack(">iiI", 0, 0, _ELEMENT[kind]))
    has_null = None in items
    parts = [_HEAD.pack(1, int(has_null), _ELEMENT[kind], len(items), 1)]
    for item in items:
        if item is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(len(item).to_bytes(4, "big"))
            parts.append(item)
    return kind(b"".join(parts))


def _ints(kind: type[_Array], values: Iterable[int]) -> _Array:
    size = 4 if kind is _Int4s else 8
    return _array(kind, [v.to_bytes(size, "big", signed=True) for v in values])


class _ArrayDumper(Dumper):
    """Sends an `_Array` as it is, typed by its class."""

    format = Format.BINARY

    def __init__(self, cls: type, context: Any = None) -> None:
        super().__init__(cls, context)
        self.oid = cls.oid  # type: ignore[attr-defined]

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


def register_arrays(conn: psycopg.Connection[Any]) -> None:
    """Lets `conn` send the arrays of APPEND_SQL (call it on every flusher connection)."""
    for kind in _ELEMENT:
        conn.adapters.register_dumper(kind, _ArrayDumper)


def _params(batch: list[Sync]) -> dict[str, Any]:
    rids: list[bytes | None] = []
    ks: list[int] = []
    lines: list[bytes | None] = []
    ids = [s.execution_id.encode() for s in batch]
    for s, eid in zip(batch, ids, strict=True):
        n = len(s.lines)
        rids += [eid] * n
        ks += range(n)
        lines += s.lines
    return {
        "ids": _array(_Texts, list(ids)),
        "epochs": _ints(_Int8s, (s.epoch for s in batch)),
        "froms": _ints(_Int4s, (s.from_seq for s in batch)),
        "ns": _ints(_Int4s, (len(s.lines) for s in batch)),
        "statuses": _array(_Texts, [None if s.status is None else s.status.encode() for s in batch]),
        "rids": _array(_Texts, rids),
        "ks": _ints(_Int4s, ks),
        "lines": _array(_Byteas, lines),
    }


class Flusher:
    """Sends the syncs of one durability mode, `threads` statements in flight at most."""

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], *, threads: int = 2, outage: float = 60.0
    ) -> None:
        self._connect = connect
        self._threads_wanted = threads
        self._threads: list[threading.Thread] = []
        self._waiting: list[Sync] = []
        self._unsure: list[Sync] = []  # sent from a caller's thread by a statement that failed
        self._here: psycopg.Connection[Any] | None = None  # send_here's connection
        self._here_lock = threading.Lock()
        self._cond = threading.Condition()
        self._closed = False
        self.outage = outage  # seconds a flush keeps trying to reach the database
        self.statements = 0  # statements sent, for tests and benchmarks
        self.syncs = 0
        self.sent_here = 0  # of those statements, sent by send_here

    def submit(self, syncs: list[Sync], *, unsure: bool = False) -> None:
        """Hands `syncs` to the flusher threads. `unsure`: they were sent by a statement whose
        connection failed, so whether they committed is found out first."""
        with self._cond:
            if self._closed:
                raise DurabilityError("the store was closed; nothing more can be written")
            (self._unsure if unsure else self._waiting).extend(syncs)
            if len(self._threads) < self._threads_wanted:
                thread = threading.Thread(target=self._work, name="flux-pg-flusher", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()

    def send_here(self, sync: Sync) -> bool:
        """Sends `sync` from the calling thread when nothing else waits to be sent and no other
        thread is sending this way; False when it did not (submit it then). `sync.done` has been
        called when it returns True, unless the connection failed during the statement: the
        flusher threads then find out whether it committed, as they do for their own."""
        if self._waiting or self._closed or not self._here_lock.acquire(blocking=False):
            return False
        try:
            conn = self._here
            try:
                if conn is None or conn.closed:
                    conn = self._here = self._connect()
                rows = conn.execute(APPEND_SQL, _params([sync]), binary=True, prepare=True).fetchall()
            except psycopg.OperationalError:
                if conn is not None:
                    conn.close()
                self._here = None
                self.submit([sync], unsure=True)
                return True
            except psycopg.Error as err:
                _finish(sync, DurabilityError(f"{sync.where}: appending to the journal failed ({err}); stopped"), False)
                return True
            self.sent_here += 1
            self._landed([sync], rows)
            return True
        finally:
            self._here_lock.release()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._here_lock:
            if self._here is not None:
                self._here.close()
                self._here = None

    def _take(self) -> tuple[list[Sync], list[Sync]] | None:
        with self._cond:
            while not self._waiting and not self._unsure:
                if self._closed:
                    return None
                self._cond.wait()
            batch, self._waiting = self._waiting, []
            unsure, self._unsure = self._unsure, []
            return batch, unsure

    def _work(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while True:
                taken = self._take()
                if taken is None:
                    return
                conn = self._flush(conn, *taken)
        finally:
            if conn is not None:
                conn.close()

    def _flush(
        self, conn: psycopg.Connection[Any] | None, batch: list[Sync], unsure: list[Sync] | None = None
    ) -> psycopg.Connection[Any] | None:
        deadline = time.monotonic() + self.outage
        todo = batch
        if unsure:
            if conn is not None:
                conn.close()
            again, conn = self._resolve(unsure, deadline, DurabilityError("the connection failed during a commit"))
            todo = again + batch
        delay = 0.05
        while todo:
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                rows = conn.execute(APPEND_SQL, _params(todo), binary=True, prepare=True).fetchall()
            except psycopg.OperationalError as err:
                # The connection failed: the statement may or may not have committed.
                if conn is not None:
                    conn.close()
                conn = None
                todo, conn = self._resolve(todo, deadline, err)
                if todo:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                continue
            except psycopg.Error as err:
                for s in todo:
                    _finish(s, DurabilityError(f"{s.where}: appending to the journal failed ({err}); stopped"), False)
                return conn
            self._landed(todo, rows)
            todo = []
        return conn

    def _landed(self, todo: list[Sync], rows: list[Any]) -> None:
        """Finishes the syncs one statement sent: those it names in `rows` landed, the others
        were refused (their lease was taken over)."""
        self.statements += 1
        self.syncs += len(todo)
        landed = {eid: bool(cancel) for eid, cancel in rows}
        for s in todo:
            if s.execution_id in landed:
                _finish(s, None, landed[s.execution_id])
            else:
                _finish(s, _lost(s), False)

    def _resolve(
        self, todo: list[Sync], deadline: float, cause: BaseException
    ) -> tuple[list[Sync], psycopg.Connection[Any] | None]:
        """After a failed statement: finishes the syncs that committed or lost their lease, and
        returns those to send again (with a connection that works), once the database answers."""
        delay = 0.05
        while True:
            try:
                conn = self._connect()
                rows = conn.execute(_WHERE_SQL, ([s.execution_id for s in todo],)).fetchall()
                break
            except psycopg.OperationalError as err:
                cause = err
                if time.monotonic() >= deadline:
                    for s in todo:
                        _finish(
                            s,
                            DurabilityError(
                                f"{s.where}: the database did not answer for {self.outage:g} s ({cause}); "
                                "whether the last records were written is unknown to this run, the next owner reads "
                                "them"
                            ),
                            False,
                        )
                    return [], None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        where = {eid: (epoch, next_seq, cancel) for eid, epoch, next_seq, cancel in rows}
        again: list[Sync] = []
        for s in todo:
            epoch, next_seq, cancel = where.get(s.execution_id, (None, None, False))
            if epoch == s.epoch and next_seq == s.from_seq + len(s.lines):
                _finish(s, None, bool(cancel))  # it had committed
            elif epoch == s.epoch and next_seq == s.from_seq:
                again.append(s)  # it had not: send it again
            else:
                _finish(s, _lost(s), False)
        return again, conn


def _lost(s: Sync) -> OwnershipLostError:
    return OwnershipLostError(
        f"{s.where}: another owner took the execution over (this writer's lease, epoch {s.epoch}, "
        "is no longer current); its records were refused"
    )


def _finish(s: Sync, error: BaseException | None, cancel: bool) -> None:
    try:
        s.done(error, cancel)
    except Exception:  # noqa: BLE001 - a waiter that went away must not stop the flusher
        pass


def loop_waker(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], apply: Callable[[BaseException | None, bool], None]
) -> Callable[[BaseException | None, bool], None]:
    """A `Sync.done` that applies the outcome in the event loop's thread and wakes the waiter
    (at once when called in that thread: a sync sent from it)."""
    home = threading.get_ident()

    def in_loop(error: BaseException | None, cancel: bool) -> None:
        apply(error, cancel)
        if not fut.done():
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

    def done(error: BaseException | None, cancel: bool) -> None:
        if threading.get_ident() == home:
            in_loop(error, cancel)
            return
        try:
            loop.call_soon_threadsafe(in_loop, error, cancel)
        except RuntimeError:  # the loop is closed: nobody waits any more
            apply(error, cancel)

    return done
