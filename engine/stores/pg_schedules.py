"""The PostgreSQL store's schedules: one row of `flux.schedules` each (SPEC.md "Schedules").

A worker holds a schedule while it fires it with `SELECT ... FOR UPDATE SKIP LOCKED` in one
transaction: the other workers pass it by at once, and the state is written in the same
transaction. `next_fire` is a column so that due schedules are found by an index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import orjson

from flux._engine.errors import ScheduleExistsError, ScheduleNotFoundError

__all__ = ["PgBook"]


def _row(state: dict[str, Any]) -> tuple[Any, ...]:
    return (
        state["name"],
        orjson.dumps(state, option=orjson.OPT_SORT_KEYS).decode(),
        state.get("next_fire"),
        bool(state.get("paused")),
        state.get("buffered") is not None,
    )


class PgBook:
    """Schedules kept in `flux.schedules` of a PostgreSQL store."""

    def __init__(self, store: Any) -> None:
        self._store = store

    @property
    def _where(self) -> str:
        from flux._engine.stores.postgres import redact_url

        return f"{redact_url(self._store.url)}#schedules"

    def create(self, state: dict[str, Any]) -> None:
        row = self._store._one(
            "INSERT INTO flux.schedules (name, state, next_fire, paused, buffered) "
            "VALUES (%s, %s::jsonb, to_timestamp(%s), %s, %s) ON CONFLICT (name) DO NOTHING RETURNING 1",
            _row(state),
            "create a schedule",
        )
        if row is None:
            raise ScheduleExistsError(state["name"], self._where)

    def get(self, name: str) -> dict[str, Any]:
        row = self._store._one("SELECT state FROM flux.schedules WHERE name = %s", (name,), "read a schedule")
        if row is None:
            raise ScheduleNotFoundError(name, self._where)
        found: dict[str, Any] = row[0]
        return found

    def all(self) -> list[dict[str, Any]]:
        with self._store._conn("list the schedules") as conn:
            return [r[0] for r in conn.execute("SELECT state FROM flux.schedules ORDER BY name").fetchall()]

    def delete(self, name: str) -> None:
        row = self._store._one("DELETE FROM flux.schedules WHERE name = %s RETURNING 1", (name,), "delete a schedule")
        if row is None:
            raise ScheduleNotFoundError(name, self._where)

    @contextlib.contextmanager
    def update(self, name: str, *, skip_locked: bool = False) -> Iterator[dict[str, Any] | None]:
        lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
        with self._store._conn("change a schedule") as conn, conn.transaction():
            row = conn.execute(f"SELECT state FROM flux.schedules WHERE name = %s {lock}", (name,)).fetchone()
            if row is None:
                if skip_locked and conn.execute("SELECT 1 FROM flux.schedules WHERE name = %s", (name,)).fetchone():
                    yield None  # another worker holds it
                    return
                raise ScheduleNotFoundError(name, self._where)
            state: dict[str, Any] = row[0]
            yield state
            conn.execute(
                "UPDATE flux.schedules SET state = %s::jsonb, next_fire = to_timestamp(%s), paused = %s, "
                "buffered = %s WHERE name = %s",
                (*_row(state)[1:], name),
            )

    def due(self, now: float) -> list[str]:
        with self._store._conn("find due schedules") as conn:
            rows = conn.execute(
                "SELECT name FROM flux.schedules WHERE NOT paused AND (next_fire <= to_timestamp(%s) OR buffered) "
                "ORDER BY next_fire",
                (now,),
            ).fetchall()
        return [r[0] for r in rows]

    def next_due(self) -> float | None:
        row = self._store._one(
            "SELECT extract(epoch FROM min(next_fire))::float8 FROM flux.schedules WHERE NOT paused",
            (),
            "read schedules",
        )
        return None if row is None or row[0] is None else float(row[0])
