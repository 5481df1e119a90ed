"""The PostgreSQL store's schema and its migrations (`flux db migrate`).

Migrations are numbered and applied in order, each in its own transaction, under one
transaction-scoped advisory lock: any number of processes may migrate at once, and each
migration runs exactly once. `flux.migrations` records what was applied.

Why the tables look as they do (SPEC.md 13):
- `records.line` is the journal line's exact bytes (CRC and newline included): export
  gives the file store's journal byte for byte; a jsonb column would reorder keys.
- `records` is keyed by the execution's compact identity `pk`, not its text id: new executions
  insert at the right edge of the index.
- An append updates only `next_seq` (not indexed) of its `executions` row: a HOT update, hence
  the fillfactor. `status`, `ready_at` and the lease change on lifecycle transitions only.
- Every time that decides ownership or readiness is the database's `now()`, so a worker's
  clock skew never hands a lease out early.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "applied_version"]

_LOCK_KEY = 0x666C7578  # "flux": the advisory lock that serialises migrations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "executions, records, snapshots, blobs, cache, workers",
        """
        CREATE TABLE flux.executions (
            pk               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            execution_id     text PRIMARY KEY CHECK (execution_id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
            workflow         text NOT NULL,
            queue            text NOT NULL DEFAULT 'default',
            status           text NOT NULL DEFAULT 'created',
            created          text NOT NULL,
            parent_id        text,
            epoch            bigint NOT NULL DEFAULT 0,
            holder           text,
            owner            jsonb,
            lease_until      timestamptz,
            next_seq         integer NOT NULL DEFAULT 1,
            ready_at         timestamptz,
            cancel_requested boolean NOT NULL DEFAULT false,
            finished_at      timestamptz,
            divergence       jsonb
        ) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02);
        CREATE INDEX executions_ready ON flux.executions (queue, ready_at) WHERE ready_at IS NOT NULL;
        CREATE INDEX executions_leased ON flux.executions (lease_until) WHERE holder IS NOT NULL;
        CREATE INDEX executions_cancel ON flux.executions (holder) WHERE cancel_requested;
        CREATE INDEX executions_newest ON flux.executions (created DESC, execution_id DESC);
        CREATE INDEX executions_status ON flux.executions (status, created DESC, execution_id DESC);
        CREATE INDEX executions_workflow ON flux.executions (workflow, created DESC, execution_id DESC);
        CREATE INDEX executions_finished ON flux.executions (finished_at) WHERE finished_at IS NOT NULL;
        CREATE INDEX executions_parent ON flux.executions (parent_id) WHERE parent_id IS NOT NULL;

        CREATE TABLE flux.records (
            exec_pk bigint  NOT NULL,
            seq     integer NOT NULL,
            epoch   bigint  NOT NULL,
            line    bytea   NOT NULL,
            PRIMARY KEY (exec_pk, seq)
        );
        CREATE TABLE flux.snapshots (execution_id text PRIMARY KEY, data bytea NOT NULL);
        CREATE TABLE flux.blobs (digest text PRIMARY KEY, data bytea NOT NULL);
        CREATE TABLE flux.cache (key text PRIMARY KEY, data bytea NOT NULL);
        CREATE TABLE flux.workers (
            worker_id text PRIMARY KEY,
            host      text NOT NULL,
            pid       integer NOT NULL,
            started   timestamptz NOT NULL DEFAULT now(),
            heartbeat timestamptz NOT NULL DEFAULT now(),
            queues    text[] NOT NULL,
            workflows text[] NOT NULL,
            slots     integer NOT NULL,
            running   integer NOT NULL DEFAULT 0
        );
        """,
    ),
    (
        2,
        "schedules",
        """
        CREATE TABLE flux.schedules (
            name      text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$'),
            state     jsonb NOT NULL,
            next_fire timestamptz,
            paused    boolean NOT NULL DEFAULT false,
            buffered  boolean NOT NULL DEFAULT false
        );
        CREATE INDEX schedules_due ON flux.schedules (next_fire) WHERE NOT paused;
        """,
    ),
    (
        3,
        "the schedule that started an execution",
        # Filled from the header (SPEC.md 14.1) of the executions made before this migration.
        """
        ALTER TABLE flux.executions ADD COLUMN schedule text;
        UPDATE flux.executions e
           SET schedule = convert_from(r.line, 'UTF8')::jsonb -> 'schedule' ->> 'name'
          FROM flux.records r
         WHERE r.exec_pk = e.pk AND r.seq = 0
           AND jsonb_typeof(convert_from(r.line, 'UTF8')::jsonb -> 'schedule') = 'object';
        """,
    ),
    (
        4,
        "when each stored output was last written or reused",
        # What a sweep of the outputs nothing names any more goes by (SPEC.md 13.8): one written
        # or reused lately may be about to be recorded. Those stored before count as written now.
        """
        ALTER TABLE flux.blobs ADD COLUMN touched_at timestamptz NOT NULL DEFAULT now();
        """,
    ),
    (
        5,
        "executions listed by the schedule that started them",
        # `flux list --schedule NAME` (SPEC.md 12), newest first, without reading the others.
        """
        CREATE INDEX executions_schedule ON flux.executions (schedule, created DESC, execution_id DESC)
            WHERE schedule IS NOT NULL;
        """,
    ),
    (
        6,
        "a limit on the executions of a queue held at once, across the fleet",
        # SPEC.md 13.5: a claim from a limited queue counts the queue's held executions (the
        # partial index keeps that to the few held ones) under the queue's advisory lock.
        """
        CREATE TABLE flux.queues (
            name text PRIMARY KEY,
            concurrency integer CHECK (concurrency IS NULL OR concurrency > 0)
        );
        CREATE INDEX executions_queue_held ON flux.executions (queue) WHERE holder IS NOT NULL;
        """,
    ),
    (
        7,
        "a limit on the executions a queue starts in a window of time, across the fleet",
        # SPEC.md 13.5: a claim from a rate-limited queue counts the queue's starts in the window
        # (kept in queue_starts, pruned as it goes) under the queue's advisory lock.
        """
        ALTER TABLE flux.queues
            ADD COLUMN rate integer CHECK (rate IS NULL OR rate > 0),
            ADD COLUMN per double precision CHECK (per IS NULL OR per > 0),
            ADD CHECK ((rate IS NULL) = (per IS NULL));
        CREATE TABLE flux.queue_starts (queue text NOT NULL, at timestamptz NOT NULL);
        CREATE INDEX queue_starts_window ON flux.queue_starts (queue, at);
        """,
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]


def applied_version(conn: Any) -> int:
    """The newest migration applied to the database, 0 for none."""
    row = conn.execute("SELECT to_regclass('flux.migrations') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM flux.migrations").fetchone()
    return int(row[0])


def migrate(conn: Any, upto: int = SCHEMA_VERSION) -> list[int]:
    """Applies the migrations the database lacks, up to version `upto`; returns their numbers.
    `conn` is a psycopg connection in autocommit mode."""
    done: list[int] = []
    for version, _title, sql in MIGRATIONS:
        if version > upto:
            break
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute("CREATE SCHEMA IF NOT EXISTS flux")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS flux.migrations (version integer PRIMARY KEY, "
                "applied timestamptz NOT NULL DEFAULT now())"
            )
            if conn.execute("SELECT 1 FROM flux.migrations WHERE version = %s", (version,)).fetchone():
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO flux.migrations (version) VALUES (%s)", (version,))
            done.append(version)
    return done
