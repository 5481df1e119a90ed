"""The store port: what the engine and `flux` need from a place that keeps journals.

Every store (engine/stores/: files, memory; PostgreSQL behind the same protocols) passes the
contract suite in tests/stores/. The protocols speak of executions, records and owners, never
of file descriptors, offsets or lock files: a store reports damage and trouble with the errors
of flux._engine.errors, and maps its own failures (OSError, a driver's errors) to them at its
boundary.

    Store                       journals: create, acquire (take ownership), read, list, cancel
    ├── Lease                   ownership of one execution: what was read, and its Writer
    │   └── Writer              append (buffer), sync or await flush (group commit), position
    ├── .snapshots  Snapshots   replay snapshots (SPEC.md 2.3), or None
    ├── .blobs      Blobs       output storage (SPEC.md 4.8), or None
    ├── .cache      Cache       the task cache (SPEC.md 4.9), or None
    └── .schedules  Book        schedules (SPEC.md "Schedules"; engine/schedules.py), or None

Optional capabilities are attributes that are None when the store has none; nobody looks for
them with getattr.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

import orjson

from flux._engine.errors import InvalidExecutionIdError, InvalidOptionError, StoreError
from flux._engine.journal import JournalRead, Known, Visit
from flux._engine.records import Status

if TYPE_CHECKING:
    from flux._engine.history import History

_R = TypeVar("_R")

__all__ = [
    "Blobs",
    "Cache",
    "ExecutionSummary",
    "Lease",
    "Page",
    "Snapshots",
    "Store",
    "Writer",
    "decode_cursor",
    "encode_cursor",
    "import_journal",
    "open_store",
    "schedule_of",
    "store_spec",
    "this_host",
    "validate_execution_id",
]

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@functools.cache
def this_host() -> str:
    """The name of this machine, as an owner's record says where it runs (asked once: it is a
    system call, and a store asks on every lease)."""
    return socket.gethostname()


def schedule_of(header: dict[str, Any]) -> str | None:
    """The name of the schedule whose fire started an execution, from its header (SPEC.md
    14.1), or None."""
    fired = header.get("schedule")
    name = fired.get("name") if isinstance(fired, dict) else None
    return name if isinstance(name, str) else None


def validate_execution_id(execution_id: str) -> str:
    """Returns the id unchanged, or raises InvalidExecutionIdError when it could name another path."""
    if not isinstance(execution_id, str) or _ID_RE.fullmatch(execution_id) is None:
        raise InvalidExecutionIdError(str(execution_id))
    return execution_id


def is_execution_id(text: str) -> bool:
    return _ID_RE.fullmatch(text) is not None


@runtime_checkable
class Writer(Protocol):
    """Appends to one journal; its lease must be held. `append` only buffers; `sync()` (or
    `await flush()` when `is_async`) writes every buffered record, durably in `fsync`
    durability. After a failed write the writer refuses all further work."""

    is_async: bool
    next_seq: int  # seq the next appended record gets
    synced_seq: int  # seq of the last record known to be written (and synced)
    durability: str

    @property
    def dirty(self) -> bool: ...

    def append(self, record: dict[str, Any]) -> int: ...

    def sync(self) -> None: ...

    async def flush(self) -> None: ...

    def discard(self) -> None: ...

    def position(self) -> tuple[int, int, int]: ...

    def close(self) -> None: ...


@runtime_checkable
class Lease(Protocol):
    """Ownership of one execution, taken by `Store.create` or `Store.acquire`: what was read
    (every record of the previous owners), the writer, and who owns it. Close it when done."""

    read: JournalRead
    owner: dict[str, Any]  # pid, host (and whatever else names the owner to others)

    @property
    def writer(self) -> Writer: ...

    def close(self) -> None: ...


class Snapshots(Protocol):
    """Replay snapshots (SPEC.md 2.3): an accelerator only, never the truth."""

    def load(self, execution_id: str) -> bytes | None: ...

    def save(self, execution_id: str, data: bytes) -> None: ...

    def drop(self, execution_id: str) -> None: ...


class Blobs(Protocol):
    """Output storage (SPEC.md 4.8): content-addressed bytes."""

    def put(self, data: bytes) -> str: ...

    def get(self, digest: str) -> bytes: ...

    def sweep_unreferenced(self) -> int:
        """Deletes the stored outputs that no journal, replay snapshot or cache entry names,
        except those written or reused lately (a run may be about to record one); returns how
        many went."""
        ...


class Cache(Protocol):
    """The task cache (SPEC.md 4.9): entries by key; anything unreadable is a miss."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def clear(self) -> int: ...


@dataclass(frozen=True)
class ExecutionSummary:
    """One execution as a list shows it."""

    execution_id: str
    workflow: str
    status: str  # a Status value, or "damaged" (then `problem` says what is wrong)
    created: str
    records: int
    parent: str | None = None
    problem: str = ""
    schedule: str | None = None  # the schedule whose fire started it (SPEC.md 14.1)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "execution_id": self.execution_id,
            "workflow": self.workflow,
            "status": str(self.status),
            "created": self.created,
            "records": self.records,
            "parent": self.parent,
            "schedule": self.schedule,
        }
        if self.problem:
            out["problem"] = self.problem
        return out


@dataclass(frozen=True)
class Page:
    """A page of a listing, newest first; `cursor` gives the next page (None: this is the last)."""

    items: Sequence[ExecutionSummary] = field(default_factory=tuple)
    cursor: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"items": [item.to_json() for item in self.items], "cursor": self.cursor}


def encode_cursor(created: str, execution_id: str) -> str:
    """An opaque cursor: the listing goes on after (created, execution_id), newest first."""
    return base64.urlsafe_b64encode(orjson.dumps([created, execution_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Raises InvalidOptionError for a cursor no listing gave."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, execution_id = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(created, str) or not isinstance(execution_id, str):
            raise ValueError
        return created, execution_id
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidOptionError(f"cursor={cursor!r} is not a cursor a listing gave; start again without one") from None


def page_of(summaries: list[ExecutionSummary], *, status: str | Sequence[str] | None, workflow: str | None,
            limit: int | None, cursor: str | None, prefix: str | None = None,
            created_after: str | None = None, created_before: str | None = None,
            schedule: str | None = None) -> Page:
    """Filters, orders (newest first) and cuts a list of summaries: the listing rule every store
    that lists in memory shares."""
    wanted = {status} if isinstance(status, str) else set(status) if status else None
    rows = [
        s for s in summaries
        if (wanted is None or str(s.status) in wanted)
        and (workflow is None or s.workflow == workflow)
        and (prefix is None or s.execution_id.startswith(prefix))
        and (created_after is None or s.created >= created_after)
        and (created_before is None or s.created < created_before)
        and (schedule is None or s.schedule == schedule)
    ]
    rows.sort(key=lambda s: (s.created, s.execution_id), reverse=True)
    if cursor is not None:
        after = decode_cursor(cursor)
        rows = [s for s in rows if (s.created, s.execution_id) < after]
    if limit is not None and limit < 0:
        raise InvalidOptionError(f"limit={limit} must be >= 0")
    if limit is None or len(rows) <= limit:
        return Page(tuple(rows), None)
    kept = rows[:limit]
    last = kept[-1] if kept else None
    return Page(tuple(kept), encode_cursor(last.created, last.execution_id) if last else None)


class Store(Protocol):
    """A place that keeps journals. See the module docstring for the shape."""

    # Read-only to the engine, so a store may declare its own classes for them.
    @property
    def snapshots(self) -> Snapshots | None: ...

    @property
    def blobs(self) -> Blobs | None: ...

    @property
    def cache(self) -> Cache | None: ...

    @property
    def schedules(self) -> Any: ...  # an engine.schedules.Book, or None

    @property
    def url(self) -> str:
        """How to name this store to `open_store` (a directory path, a URL)."""
        ...

    def describe(self, execution_id: str) -> str:
        """Where an execution's journal is, for messages (`path`, `url#id`)."""
        ...

    def create(self, execution_id: str, header: dict[str, Any], durability: str) -> Lease:
        """Creates a journal holding only `header`, durable before this returns, owned by the
        caller. Raises ExecutionExistsError when the execution exists (nothing is replaced)."""
        ...

    def acquire(
        self, execution_id: str, durability: str, visit: Visit | None = None, known: Known | None = None
    ) -> Lease:
        """Takes ownership and reads the journal (every record of previous owners included).
        Raises ExecutionNotFoundError, ExecutionLockedError, JournalCorruptError."""
        ...

    def read(self, execution_id: str, visit: Visit | None = None, known: Known | None = None) -> JournalRead:
        """Reads a journal without taking ownership or changing anything; `visit` and `known` as
        for `check_journal`."""
        ...

    def header(self, execution_id: str) -> dict[str, Any]:
        """The journal's header (its first record, checked), without reading the rest."""
        ...

    def export(self, execution_id: str) -> bytes:
        """The journal's complete records as a journal file holds them, byte for byte (checked:
        JournalCorruptError on damage; a torn tail is left out)."""
        ...

    def exists(self, execution_id: str) -> bool: ...

    def list_ids(self) -> list[str]: ...

    def list(
        self, *, status: str | Sequence[str] | None = None, workflow: str | None = None, limit: int | None = None,
        cursor: str | None = None, prefix: str | None = None, created_after: str | None = None,
        created_before: str | None = None, schedule: str | None = None,
    ) -> Page: ...

    def summary(self, execution_id: str) -> ExecutionSummary: ...

    def owner(self, execution_id: str) -> dict[str, Any] | None:
        """Who owns the execution right now (pid, host), or None when nobody does."""
        ...

    def delete(self, execution_id: str) -> None:
        """Removes the execution: its journal and everything kept beside it (snapshot, torn
        tails, cancel request), under its lock, so never one a process runs.

        Raises:
            ExecutionNotFoundError, ExecutionLockedError.
        """
        ...

    async def wait_for_change(self, execution_id: str, timeout: float) -> None:
        """Returns once the execution's journal changes (a record appended), or after
        `timeout` seconds."""
        ...

    def mark_diverged(self, execution_id: str, divergence: dict[str, Any]) -> None:
        """Keeps a divergence found by a worker (SPEC.md 13.7): the execution lists as
        `diverged` and is not run again by workers until someone takes it over by hand."""
        ...

    def divergence(self, execution_id: str) -> dict[str, Any] | None:
        """What `mark_diverged` kept, while the execution is diverged."""
        ...

    def request_cancel(self, execution_id: str) -> None: ...

    def cancel_requested(self, execution_id: str) -> bool: ...

    def clear_cancel(self, execution_id: str) -> None: ...

    def secrets_file(self) -> str | None:
        """The store's secrets file (SPEC.md 4.7), or None when it keeps none."""
        ...


def status_now(store: Store, execution_id: str, status: Status) -> Status:
    """The status of an execution whose journal says `status`, as of now: a run nobody holds is
    interrupted, or whatever the store knows beyond its journal (parked: sleeping; found
    diverged by a worker, SPEC.md 13.4)."""
    if status in (Status.RUNNING, Status.CREATED) and store.owner(execution_id) is None:
        try:
            return Status(store.summary(execution_id).status)
        except ValueError:  # damaged meanwhile
            return Status.INTERRUPTED if status == Status.RUNNING else status
    return status


_JOURNAL_DECIDES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.PAUSED})


def read_settled(
    store: Store, execution_id: str, read: Callable[[], tuple[_R, History]]
) -> tuple[_R, History, Status]:
    """`read()` (a journal read and its fold) and the status as of now, agreeing with each other.

    A run that ends between its journal being read and its owner being asked looks unowned with
    a stale journal; the store's summary then says how it ended. Such a read is made again, so
    a status the journal decides (completed, failed, cancelled, paused) never comes without the
    records that decide it.
    """
    for _ in range(8):
        got, history = read()
        status = status_now(store, execution_id, history.status)
        if status == history.status or status not in _JOURNAL_DECIDES:
            break
    return got, history, status


def import_journal(store: Store, data: bytes, where: str = "journal") -> ExecutionSummary:
    """Adds the journal `data` (a journal file's bytes, `Store.export` of another store) to
    `store` under its own execution id, byte for byte, and returns its summary.

    Every line is checked first (section 2 of SPEC.md); records are appended in one sync and
    written as the journal holds them: a checked line is in the canonical form that writing its
    record gives back.

    Raises:
        JournalCorruptError: damage, or a torn last line (nothing is imported).
        ExecutionExistsError: the store has an execution of that id (nothing is changed).
    """
    from flux._engine.errors import JournalCorruptError
    from flux._engine.journal import check_journal

    first = data[: data.find(b"\n") + 1]
    try:
        execution_id = orjson.loads(first).get("execution_id") if first else None
    except orjson.JSONDecodeError:
        execution_id = None
    if not isinstance(execution_id, str):
        raise JournalCorruptError(where, 1, 0, "the first line is not a journal header naming its execution_id")
    validate_execution_id(execution_id)
    read = check_journal(data, where, execution_id)
    if read.torn:
        raise JournalCorruptError(
            where,
            len(read.records) + 1,
            read.valid_size,
            "the last line is incomplete (a torn tail); cut it or import the journal after its owner repaired it",
        )
    records = list(read.records)
    lease = store.create(execution_id, dict(records[0]), "fsync")
    try:
        writer = lease.writer
        for record in records[1:]:
            writer.append(dict(record))
        writer.sync()
    finally:
        lease.close()
    return store.summary(execution_id)


# -- finding a store --------------------------------------------------------------------------


def store_spec(spec: Any = None) -> Any:
    """What `open_store` opens when given `spec`: the spec itself, else $FLUX_STORE, else
    $FLUX_HOME, else the `.flux` folder of the current directory or of the nearest parent that
    has one (as git finds `.git`), else `.flux` in the current directory."""
    if spec is not None and spec != "":
        return spec
    return os.environ.get("FLUX_STORE") or os.environ.get("FLUX_HOME") or find_store_folder()


def find_store_folder(start: str | None = None) -> str:
    """The `.flux` folder of `start` (default: the current directory) or of its nearest parent
    that has one, without leaving the file system `start` is on; `.flux` (relative, in the
    current directory) when there is none."""
    here = os.path.abspath(start or os.getcwd())
    try:
        device = os.stat(here).st_dev
    except OSError:
        return ".flux"
    while True:
        candidate = os.path.join(here, ".flux")
        if os.path.isdir(candidate):
            return candidate if here != os.path.abspath(os.getcwd()) else ".flux"
        parent = os.path.dirname(here)
        try:
            if parent == here or os.stat(parent).st_dev != device:
                return ".flux"
        except OSError:
            return ".flux"
        here = parent


def open_store(spec: Any = None) -> Store:
    """The store `spec` names: a Store object as it is; `memory:` or `memory:NAME` an in-memory
    store of this process (one per name); `postgresql://...` a PostgreSQL store; any other
    string or path-like a directory of files. None: $FLUX_STORE, else $FLUX_HOME, else the
    nearest `.flux` folder (`find_store_folder`).

    Raises:
        StoreError: for a spec that names no store this installation can open.
    """
    spec = store_spec(spec)
    if not isinstance(spec, (str, os.PathLike)):
        if all(hasattr(spec, a) for a in ("create", "acquire", "read", "list")):
            return cast(Store, spec)  # it has the methods of one
        raise StoreError(f"store={spec!r} is neither a path, a store URL nor a store object")
    text = os.fspath(spec)
    if text.startswith("memory:"):
        from flux._engine.stores.memory import MemoryStore

        return MemoryStore.named(text[len("memory:"):])
    if text.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError:
            raise StoreError(
                f"{redact_url(text)}: this installation has no PostgreSQL driver; "
                "install the postgresql extra (pip install 'flux-replay[postgresql]')"
            ) from None
        from flux._engine.stores.postgres import PostgresStore

        return PostgresStore.named(text)
    if "://" in text:
        raise StoreError(f"{redact_url(text)}: no store of that kind; give a directory, memory: or postgresql://...")
    from flux._engine.stores.files import FileStore

    return FileStore(text)


def redact_url(url: str) -> str:
    """A URL with its password left out, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
