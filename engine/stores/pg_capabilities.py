"""The PostgreSQL store's optional capabilities: replay snapshots, output storage and the task
cache, each a table of bytes by key (SPEC.md 13.1)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from flux._engine.errors import BlobError
from flux._engine.store import validate_execution_id

__all__ = ["Blobs", "Cache", "Snapshots"]


def _where(url: str) -> str:
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


class Snapshots:
    """Replay snapshots (SPEC.md 2.3) by execution id; those of claimed executions come with the claim."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def load(self, execution_id: str) -> bytes | None:
        claimed = self._store._claimed_snapshots
        if execution_id in claimed:
            found: bytes | None = claimed.pop(execution_id)
            return found
        row = self._store._one(
            "SELECT data FROM flux.snapshots WHERE execution_id = %s",
            (validate_execution_id(execution_id),),
            "read a snapshot",
        )
        return bytes(row[0]) if row else None

    def save(self, execution_id: str, data: bytes) -> None:
        self._store._one(
            "INSERT INTO flux.snapshots (execution_id, data) VALUES (%s, %s) "
            "ON CONFLICT (execution_id) DO UPDATE SET data = excluded.data RETURNING 1",
            (validate_execution_id(execution_id), data),
            "save a snapshot",
        )

    def drop(self, execution_id: str) -> None:
        self._store._one(
            "DELETE FROM flux.snapshots WHERE execution_id = %s RETURNING 1",
            (validate_execution_id(execution_id),),
            "drop a snapshot",
        )


SWEEP_GRACE = 60.0  # seconds: outputs written or reused this lately stay

# `encode(..., 'escape')` turns any bytes into text (a snapshot need not be UTF-8); the digests
# named are plain ASCII in it.
_SWEEP_SQL = r"""
WITH named AS (
    SELECT m[1] AS digest
      FROM flux.records r, regexp_matches(encode(r.line, 'escape'), '"\$blob":"([0-9a-f]{64})"', 'g') AS m
     WHERE position('"$blob"'::bytea IN r.line) > 0
    UNION
    SELECT m[1] FROM flux.snapshots s, regexp_matches(encode(s.data, 'escape'), '"\$blob":"([0-9a-f]{64})"', 'g') AS m
    UNION
    SELECT m[1] FROM flux.cache c, regexp_matches(encode(c.data, 'escape'), '"\$blob":"([0-9a-f]{64})"', 'g') AS m
), gone AS (
    DELETE FROM flux.blobs b
     WHERE b.touched_at < now() - make_interval(secs => %s)
       AND NOT EXISTS (SELECT 1 FROM named WHERE named.digest = b.digest)
    RETURNING 1
)
SELECT count(*) FROM gone
"""


class Blobs:
    """Output storage (SPEC.md 4.8): content-addressed bytes, checked on the way out."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        # Reusing one renews its time: a sweep that began before leaves it (SPEC.md 13.8).
        self._store._one(
            "INSERT INTO flux.blobs (digest, data) VALUES (%s, %s) "
            "ON CONFLICT (digest) DO UPDATE SET touched_at = now() RETURNING 1",
            (digest, bytes(data)),
            "store an output",
        )
        return digest

    def sweep_unreferenced(self, grace: float = SWEEP_GRACE) -> int:
        """Deletes the stored outputs that no journal record, replay snapshot or cache entry
        names, except those written or reused in the last `grace` seconds (by the database's
        clock: a run may be about to record one); returns how many went. One statement: it
        reads every record that holds `"$blob"`, so it costs a scan of the records table."""
        row = self._store._one(_SWEEP_SQL, (float(grace),), "sweep the stored outputs")
        return int(row[0]) if row else 0

    def get(self, digest: str) -> bytes:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BlobError(f"invalid blob digest {digest!r}")
        row = self._store._one("SELECT data FROM flux.blobs WHERE digest = %s", (digest,), "read an output")
        where = f"{_where(self._store.url)}#blob/{digest}"
        if row is None:
            raise BlobError(f"{where}: the stored output is missing; restore it")
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != digest:
            raise BlobError(f"{where}: the stored output was altered (its SHA-256 no longer matches)")
        return data


class Cache:
    """The task cache (SPEC.md 4.9)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def get(self, key: str) -> bytes | None:
        row = self._store._one("SELECT data FROM flux.cache WHERE key = %s", (key,), "read the task cache")
        return bytes(row[0]) if row else None

    def put(self, key: str, data: bytes) -> None:
        self._store._one(
            "INSERT INTO flux.cache (key, data) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET data = excluded.data "
            "RETURNING 1",
            (key, bytes(data)),
            "write the task cache",
        )

    def clear(self) -> int:
        with self._store._conn("clear the task cache") as conn:
            return int(conn.execute("DELETE FROM flux.cache").rowcount)
