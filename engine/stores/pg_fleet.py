"""The PostgreSQL store's side of a worker fleet: claiming runnable executions, reaping expired
leases, parking, heartbeats and retention (SPEC.md 13.5-13.8).

A claim takes up to `n` executions whose `ready_at` has come, of the worker's queues and
workflows, with `FOR UPDATE SKIP LOCKED` (claimers never wait for each other), and adds one to
each epoch in the same statement. A reap hands every expired lease back and
adds one to its epoch, so the owner that let it expire is fenced at once, before anyone claims it.
Any worker reaps; there is no leader.

Runs already started (a due timer, a timed pause, a retry, a run handed back) are claimed before
new submissions, each group in `ready_at` order: a backlog of submissions never makes a timer
late. What a reap or a stopping worker hands back is runnable at once and goes first (`ready_at` is
the epoch, 1970): it was claimed before whatever waits now, so it must not wait behind a backlog
of new submissions (a timer of a run handed back in the middle of its start would be late by the
whole backlog).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from flux._engine.errors import ExecutionLockedError, ExecutionNotFoundError, InvalidOptionError
from flux._engine.store import this_host, validate_execution_id

__all__ = ["LIVE", "Claim", "FleetMixin", "QueueLimit", "QueueRow"]

# A lease that is held and not expired, by the database's clock.
LIVE = "(holder IS NOT NULL AND lease_until > now())"
_LIVE = LIVE


@dataclass(frozen=True)
class Claim:
    """An execution a worker took: what to do with it follows from its row."""

    execution_id: str
    workflow: str
    status: str
    cancel_requested: bool
    epoch: int = 0


# Executions due within this many seconds are claimed already: the run waits the rest itself
# (a timer never fires early), so the claim's own latency does not make timers late.
CLAIM_AHEAD = 0.2
QUEUE_LIMITS_FOR = 1.0  # seconds a worker goes by the queue limits it read last
# Seconds before a worker asks again a queue whose limit held back executions that are due
# (were it to go by their due time, it would ask again at once, in a loop).
QUEUE_RECHECK = 0.05


def check_queue_limits(concurrency: int | None, rate: int | None, per: float | None) -> None:
    """Refuses a bad queue limit (InvalidOptionError), so that a command setting several checks
    them all before it writes any."""
    if concurrency is not None and concurrency < 1:
        raise InvalidOptionError(f"--concurrency {concurrency} must be at least 1 (or leave the queue unlimited)")
    if (rate is None) != (per is None):
        raise InvalidOptionError("give --rate N together with --per SECONDS")
    if rate is not None and rate < 1:
        raise InvalidOptionError(f"--rate {rate} must be at least 1 (or leave the queue unlimited)")
    if per is not None and not (math.isfinite(per) and per > 0):
        raise InvalidOptionError(f"--per {per} must be a number of seconds above 0")


@dataclass(frozen=True)
class QueueLimit:
    """A queue's limits across the fleet: executions held at once, executions started per
    `per` seconds (None: no such limit)."""

    concurrency: int | None
    rate: int | None
    per: float | None


class QueueRow(NamedTuple):
    """A queue as `flux queue list` shows it."""

    name: str
    concurrency: int | None
    rate: int | None
    per: float | None
    running: int
    ready: int

_HELD_SQL = """
SELECT count(*) FROM flux.executions WHERE queue = %s AND holder IS NOT NULL AND lease_until > now()
"""


def _claim_sql(only: str = "") -> str:
    return f"""
UPDATE flux.executions e
   SET epoch = e.epoch + 1, holder = %(holder)s, owner = %(owner)s,
       lease_until = now() + make_interval(secs => %(lease)s), ready_at = NULL
  FROM (SELECT pk FROM flux.executions
         WHERE queue = ANY(%(queues)s) AND workflow = ANY(%(workflows)s)
           AND ready_at <= now() + make_interval(secs => %(ahead)s)
           AND parent_id IS NULL AND (holder IS NULL OR lease_until <= now()){only}
         ORDER BY status = 'created', ready_at
         LIMIT %(n)s
           FOR UPDATE SKIP LOCKED) c
 WHERE e.pk = c.pk
RETURNING e.execution_id, e.workflow, e.status, e.cancel_requested, e.epoch, e.pk, e.next_seq
"""


_CLAIM_SQL = _claim_sql()
# Only starts (`fresh`: executions never run, what a rate limit counts) or only the others.
_CLAIM_KIND_SQL = _claim_sql("\n           AND (status = 'created') = %(fresh)s")

# A rate-limited queue's starts in its window (those older are pruned first), and in how many
# seconds the oldest of them leaves it.
_PRUNE_STARTS_SQL = """
DELETE FROM flux.queue_starts WHERE queue = %(queue)s AND at <= now() - make_interval(secs => %(per)s)
"""
_STARTS_SQL = """
SELECT count(*), extract(epoch FROM min(at) + make_interval(secs => %(per)s) - now())
  FROM flux.queue_starts WHERE queue = %(queue)s
"""
_START_SQL = "INSERT INTO flux.queue_starts (queue, at) SELECT %s, now() FROM generate_series(1, %s)"

_QUEUES_SQL = """
SELECT q.name, l.concurrency, l.rate, l.per,
       (SELECT count(*) FROM flux.executions e
         WHERE e.queue = q.name AND e.holder IS NOT NULL AND e.lease_until > now()),
       (SELECT count(*) FROM flux.executions e
         WHERE e.queue = q.name AND e.ready_at <= now() AND e.parent_id IS NULL
           AND (e.holder IS NULL OR e.lease_until <= now()))
  FROM (SELECT DISTINCT queue AS name FROM flux.executions WHERE ready_at IS NOT NULL OR holder IS NOT NULL
        UNION SELECT name FROM flux.queues) q
  LEFT JOIN flux.queues l ON l.name = q.name
 ORDER BY q.name
"""

_LINES_SQL = """
SELECT r.exec_pk, r.line FROM flux.records r JOIN unnest(%s::bigint[], %s::int[]) AS c(pk, next_seq)
    ON r.exec_pk = c.pk AND r.seq < c.next_seq
 ORDER BY r.exec_pk, r.seq
"""

_NEXT_SQL = """
SELECT extract(epoch FROM min(ready_at) - now()) - %(ahead)s FROM flux.executions
 WHERE queue = ANY(%(queues)s) AND workflow = ANY(%(workflows)s) AND ready_at IS NOT NULL AND parent_id IS NULL
"""

_REAP_SQL = """
UPDATE flux.executions e
   SET holder = NULL, owner = NULL, lease_until = NULL, epoch = e.epoch + 1,
       ready_at = CASE WHEN e.status IN ('completed', 'failed', 'cancelled') OR e.divergence IS NOT NULL
                       THEN NULL ELSE 'epoch'::timestamptz END
  FROM (SELECT pk FROM flux.executions WHERE holder IS NOT NULL AND lease_until < now()
         ORDER BY lease_until LIMIT %(n)s FOR UPDATE SKIP LOCKED) c
 WHERE e.pk = c.pk
RETURNING e.execution_id
"""


# Each top-level execution given and its sub-workflows, at any depth: (top-level id, pk, id,
# whether its lease is live).
_TREE_SQL = (
    "WITH RECURSIVE tree(root, pk, execution_id, live) AS ("
    " SELECT execution_id, pk, execution_id, " + _LIVE + " FROM flux.executions WHERE execution_id = ANY(%s)"
    " UNION ALL"
    " SELECT tree.root, c.pk, c.execution_id, (c.holder IS NOT NULL AND c.lease_until > now())"
    " FROM flux.executions c JOIN tree ON c.parent_id = tree.execution_id"
    ") SELECT root, pk, execution_id, live FROM tree"
)


class FleetMixin:
    """Methods of PostgresStore used by `flux worker` (flux/worker.py)."""

    holder: str
    lease: float

    def claim(self, queues: list[str], workflows: list[str], n: int) -> tuple[list[Claim], float | None]:
        """Takes up to `n` runnable executions; also returns in how many seconds the next one
        of these queues and workflows is due (None: none is scheduled)."""
        owner = orjson.dumps(self._owner()).decode()  # type: ignore[attr-defined]
        params = {
            "holder": self.holder,
            "owner": owner,
            "lease": self.lease,
            "queues": queues,
            "workflows": workflows,
            "n": n,
            "ahead": CLAIM_AHEAD,
        }
        lines: dict[int, list[bytes]] = {}
        held_back: dict[str, float] = {}  # limited queues that had more ready than they let go
        with self._conn("claim executions") as conn:  # type: ignore[attr-defined]
            limits = self._queue_limits(conn)
            free = [q for q in queues if q not in limits]
            rows = conn.execute(_CLAIM_SQL, {**params, "queues": free}).fetchall() if n > 0 and free else []
            for queue in queues:
                room = n - len(rows)
                if queue in limits and room > 0:
                    rows += self._claim_limited(conn, params, queue, limits[queue], room, held_back)
            if rows:
                # The journals of what was claimed, read after the claim committed: every record
                # of the previous owners is in them (SPEC.md 13.2).
                cur = conn.cursor(binary=True)
                cur.execute(_LINES_SQL, ([r[5] for r in rows], [r[6] for r in rows]))
                for pk, line in cur:
                    lines.setdefault(pk, []).append(line)
                # Their replay snapshots too (parked and paused runs have one): the run asks
                # for it before anything else, and now it costs no statement of its own.
                snaps = dict(
                    cur.execute(
                        "SELECT execution_id, data FROM flux.snapshots WHERE execution_id = ANY(%s)",
                        ([r[0] for r in rows],),
                    ).fetchall()
                )
            # A queue held back by its limit has executions due that it will not let go yet: it
            # is asked again soon (or when its window frees a start), not at once.
            waiting = [q for q in queues if q not in held_back]
            due = conn.execute(_NEXT_SQL, {**params, "queues": waiting}).fetchone()[0] if waiting else None
            if held_back:
                soonest = min(held_back.values())
                due = soonest if due is None else min(float(due), soonest)
        claims = []
        owner_of = orjson.loads(owner)
        for eid, wf, status, cancel, epoch, pk, _next_seq in rows:
            claims.append(Claim(eid, wf, status, bool(cancel), epoch))
            self.claimed(eid, epoch, b"".join(lines.get(pk, ())), owner_of, snaps.get(eid))  # type: ignore[attr-defined]
        return claims, (float(due) if due is not None else None)

    def _claim_limited(
        self, conn: Any, params: dict[str, Any], queue: str, limit: QueueLimit, room: int, held_back: dict[str, float]
    ) -> list[Any]:
        """Claims from a limited queue in a transaction of its own, under the queue's advisory
        lock, so two workers never both take its last place or its last start (SPEC.md 13.5).
        Notes in `held_back` a queue whose limit let less go than `room`, and when to ask again."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"flux.queue:{queue}",))
            take = room
            if limit.concurrency is not None:
                take = min(take, limit.concurrency - conn.execute(_HELD_SQL, (queue,)).fetchone()[0])
                if take <= 0:
                    held_back[queue] = QUEUE_RECHECK
                    return []
            one = {**params, "queues": [queue], "n": take}
            if limit.rate is None or limit.per is None:
                return list(conn.execute(_CLAIM_SQL, one).fetchall())
            # Runs already started go on whatever the rate; only starts count against it.
            window = {"queue": queue, "per": limit.per}
            conn.execute(_PRUNE_STARTS_SQL, window)
            started, frees_in = conn.execute(_STARTS_SQL, window).fetchone()
            rows = list(conn.execute(_CLAIM_KIND_SQL, {**one, "fresh": False}).fetchall())
            allowed = min(take - len(rows), limit.rate - int(started))
            if allowed > 0:
                fresh = conn.execute(_CLAIM_KIND_SQL, {**one, "n": allowed, "fresh": True}).fetchall()
                if fresh:
                    conn.execute(_START_SQL, (queue, len(fresh)))
                    rows += fresh
                    started += len(fresh)
            if started >= limit.rate:
                held_back[queue] = max(QUEUE_RECHECK, float(frees_in) if frees_in is not None else limit.per)
            return rows

    def _queue_limits(self, conn: Any) -> dict[str, QueueLimit]:
        """The queues with a limit, read at most once a second."""
        cached: tuple[float, dict[str, QueueLimit]] | None = getattr(self, "_limits_read", None)
        if cached is not None and time.monotonic() - cached[0] < QUEUE_LIMITS_FOR:
            return cached[1]
        found = conn.execute(
            "SELECT name, concurrency, rate, per FROM flux.queues WHERE concurrency IS NOT NULL OR rate IS NOT NULL"
        ).fetchall()
        limits = {name: QueueLimit(concurrency, rate, per) for name, concurrency, rate, per in found}
        self._limits_read = (time.monotonic(), limits)
        return limits

    def set_queue_limit(self, queue: str, concurrency: int | None) -> None:
        """At most `concurrency` executions of `queue` held at once by the fleet (None: no limit)."""
        check_queue_limits(concurrency, None, None)
        self._one(  # type: ignore[attr-defined]
            "INSERT INTO flux.queues (name, concurrency) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency RETURNING 1",
            (queue, concurrency),
            "set the queue's limit",
        )

    def set_queue_rate(self, queue: str, rate: int | None, per: float | None) -> None:
        """At most `rate` executions of `queue` started by the fleet in any `per` seconds (None,
        None: no such limit); its concurrency limit is kept."""
        check_queue_limits(None, rate, per)
        self._one(  # type: ignore[attr-defined]
            "INSERT INTO flux.queues (name, rate, per) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET rate = excluded.rate, per = excluded.per RETURNING 1",
            (queue, rate, per),
            "set the queue's rate",
        )

    def queues(self) -> list[QueueRow]:
        """Every queue that has executions or a limit: its limits, executions held now, executions
        runnable now."""
        with self._conn("list the queues") as conn:  # type: ignore[attr-defined]
            return [
                QueueRow(name, limit, rate, per, int(held), int(ready))
                for name, limit, rate, per, held, ready in conn.execute(_QUEUES_SQL).fetchall()
            ]

    def reap(self, n: int = 500) -> list[str]:
        """Hands back every expired lease (at most `n`), fencing its owner: the ids."""
        with self._conn("reap expired leases") as conn:  # type: ignore[attr-defined]
            return [r[0] for r in conn.execute(_REAP_SQL, {"n": n}).fetchall()]

    def unclaim(self, execution_id: str, epoch: int, wake_at: float | None = None, *, at_once: bool = True) -> None:
        """Gives back a claim this process will not run: runnable again at once, or at
        `wake_at` (epoch seconds), or only after an outside event (`at_once=False`, no time)."""
        self._drop_claim(execution_id)  # type: ignore[attr-defined]
        self._one(  # type: ignore[attr-defined]
            "UPDATE flux.executions SET holder = NULL, owner = NULL, lease_until = NULL, "
            "ready_at = CASE WHEN %s THEN now() ELSE to_timestamp(%s) END "
            "WHERE execution_id = %s AND epoch = %s AND holder = %s RETURNING 1",
            (at_once and wake_at is None, wake_at, execution_id, epoch, self.holder),
            "give the claim back",
        )

    def schedule(
        self, execution_id: str, ready_at: float | None, *, status: str | None = None, delay: float | None = None
    ) -> None:
        """When an execution nobody holds is runnable again: at `ready_at` (epoch seconds), or
        `delay` seconds from now, or only after an outside event (both None). `status` parks it
        (`sleeping`) or marks it."""
        self._one(  # type: ignore[attr-defined]
            "UPDATE flux.executions SET ready_at = CASE WHEN %(delay)s::float8 IS NOT NULL THEN now() + "
            "make_interval(secs => %(delay)s) "
            "ELSE to_timestamp(%(at)s) END, status = coalesce(%(status)s, status) "
            "WHERE execution_id = %(id)s AND holder IS NULL AND status NOT IN ('completed', 'failed', 'cancelled') "
            "RETURNING 1",
            {"id": execution_id, "at": ready_at, "delay": delay, "status": status},
            "schedule the execution",
        )

    def mark_diverged(self, execution_id: str, divergence: dict[str, Any]) -> None:
        """The code no longer replays the execution: it is never claimed again until resumed by
        hand (its next lifecycle record sets its status); the divergence is kept for `flux show`."""
        row = self._one(  # type: ignore[attr-defined]
            "UPDATE flux.executions SET ready_at = NULL, divergence = %s WHERE execution_id = %s RETURNING 1",
            (orjson.dumps(divergence, default=str).decode(), execution_id),
            "mark the execution diverged",
        )
        if row is None:
            from flux._engine.errors import ExecutionNotFoundError

            raise ExecutionNotFoundError(execution_id, self.describe(execution_id))  # type: ignore[attr-defined]

    def divergence(self, execution_id: str) -> dict[str, Any] | None:
        """What `mark_diverged` kept, while the execution is diverged."""
        row = self._one(  # type: ignore[attr-defined]
            "SELECT divergence FROM flux.executions WHERE execution_id = %s",
            (execution_id,),
            "read the divergence",
        )
        return dict(row[0]) if row and row[0] is not None else None

    def heartbeat(self, queues: list[str], workflows: list[str], slots: int, running: int) -> None:
        import os

        self._one(  # type: ignore[attr-defined]
            "INSERT INTO flux.workers (worker_id, host, pid, queues, workflows, slots, running) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (worker_id) DO UPDATE SET heartbeat = now(), "
            "running = excluded.running RETURNING 1",
            (self.holder, this_host(), os.getpid(), queues, workflows, slots, running),
            "send a heartbeat",
        )

    def retire(self) -> None:
        """This process stops working: every lease and claim it holds is handed back at once."""
        for execution_id in list(self._claimed):  # type: ignore[attr-defined]
            self._drop_claim(execution_id)  # type: ignore[attr-defined]
        self._one(  # type: ignore[attr-defined]
            "WITH r AS (UPDATE flux.executions SET holder = NULL, owner = NULL, lease_until = NULL, "
            "ready_at = CASE WHEN status IN ('completed', 'failed', 'cancelled', 'paused') OR divergence IS NOT NULL "
            "THEN ready_at ELSE 'epoch'::timestamptz END "
            "WHERE holder = %s RETURNING 1) DELETE FROM flux.workers WHERE worker_id = %s RETURNING 1",
            (self.holder, self.holder),
            "hand the leases back",
        )
        self.hint()  # type: ignore[attr-defined]

    def purge(
        self, finished_before: str, statuses: list[str] | None = None, batch: int = 1000
    ) -> list[tuple[str, int]]:
        """Deletes every top-level execution that finished (in one of `statuses`, default any
        final one) before the moment `finished_before` (ISO 8601), with its sub-workflows, their
        records and snapshots, `batch` executions per transaction; never an execution whose
        lease is live. Returns (execution id, journals deleted) of each top-level one (SPEC.md
        13.8)."""
        wanted = list(statuses or ("completed", "failed", "cancelled"))
        done: list[tuple[str, int]] = []
        while True:
            with self._conn("purge finished executions") as conn, conn.transaction():  # type: ignore[attr-defined]
                tops = conn.execute(
                    "SELECT pk, execution_id FROM flux.executions WHERE finished_at < %s::timestamptz "
                    "AND parent_id IS NULL AND status = ANY(%s) AND NOT " + _LIVE + " "
                    "ORDER BY finished_at LIMIT %s FOR UPDATE SKIP LOCKED",
                    (finished_before, wanted, batch),
                ).fetchall()
                if tops:
                    tree = conn.execute(_TREE_SQL, ([eid for _, eid in tops],)).fetchall()
                    busy = {root for root, _pk, _eid, live in tree if live}  # a sub-workflow still runs
                    gone = [(pk, eid) for root, pk, eid, _ in tree if root not in busy]
                    conn.execute("DELETE FROM flux.records WHERE exec_pk = ANY(%s)", ([pk for pk, _ in gone],))
                    conn.execute("DELETE FROM flux.snapshots WHERE execution_id = ANY(%s)", ([e for _, e in gone],))
                    conn.execute("DELETE FROM flux.executions WHERE pk = ANY(%s)", ([pk for pk, _ in gone],))
                    counts: dict[str, int] = {}
                    for root, *_ in tree:
                        counts[root] = counts.get(root, 0) + 1
                    done += [(eid, counts[eid]) for _, eid in tops if eid not in busy]
            if len(tops) < batch:
                return done

    def delete(self, execution_id: str) -> None:
        """Removes the execution, its records, snapshot and cancel request; never one whose
        lease is live (the database's lock on its row keeps a claim from racing it)."""
        validate_execution_id(execution_id)
        with self._conn("delete the execution") as conn, conn.transaction():  # type: ignore[attr-defined]
            row = conn.execute(
                "SELECT pk, " + _LIVE + ", owner FROM flux.executions WHERE execution_id = %s FOR UPDATE",
                (execution_id,),
            ).fetchone()
            if row is None:
                raise ExecutionNotFoundError(execution_id, self.url)  # type: ignore[attr-defined]
            pk, live, owner = row
            if live:
                raise ExecutionLockedError(execution_id, dict(owner or {}))
            conn.execute("DELETE FROM flux.records WHERE exec_pk = %s", (pk,))
            conn.execute("DELETE FROM flux.snapshots WHERE execution_id = %s", (execution_id,))
            conn.execute("DELETE FROM flux.executions WHERE pk = %s", (pk,))
