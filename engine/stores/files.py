"""The file store: journals as plain files under one directory (SPEC.md 1, 2.2, 5).

    <home>/executions/<execution_id>.jsonl   the journal
    <home>/executions/<execution_id>.lock    flock'ed by the one process that runs the execution
    <home>/executions/<execution_id>.torn    torn tails cut from the journal, kept for inspection
    <home>/executions/<execution_id>.cancel  a cancellation asked by another process
    <home>/executions/<execution_id>.index   replay snapshot written when a run pauses (optional)
    <home>/executions/<execution_id>.summary what a listing shows (engine/stores/file_summaries.py)
    <home>/executions/.list                  the listing index (engine/stores/file_list_index.py)
    <home>/blobs/<sha256>.json               output storage
    <home>/cache/<key>.json                  the task cache
    <home>/secrets.json                      secrets (unless FLUX_SECRETS_FILE)

Only this module touches those files (summaries: file_summaries.py; the index:
file_list_index.py). Every OSError is turned into an error of the tree here: `DurabilityError`
when writing a journal fails, `StoreError` when the store cannot be used (no such directory, no
permission, a FIFO or a directory where a file should be).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import logging
import os
import re
import stat
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from flux._engine import faults as _faults
from flux._engine.errors import (
    BlobError,
    DurabilityError,
    ExecutionExistsError,
    ExecutionLockedError,
    ExecutionNotFoundError,
    InvalidOptionError,
    JournalCorruptError,
    StoreError,
    UnsafePathError,
)
from flux._engine.history import History
from flux._engine.isolate import register_inherited_fd, unregister_inherited_fd
from flux._engine.journal import (
    FILE_MODE,
    BufferedWriter,
    JournalRead,
    Known,
    Records,
    Visit,
    check_journal,
    encode_record_line,
    read_journal,
    read_regular_file,
    seed_for,
    write_all,
)
from flux._engine.records import LIFECYCLE, Status
from flux._engine.schedules import FileBook
from flux._engine.store import (
    ExecutionSummary,
    Page,
    decode_cursor,
    encode_cursor,
    is_execution_id,
    schedule_of,
    this_host,
    validate_execution_id,
)
from flux._engine.stores import file_list_index
from flux._engine.stores.file_list_index import Head
from flux._engine.stores.file_summaries import TAIL_BYTES, Summary, tail_of, unfold
from flux._engine.stores.file_summaries import from_header as summary_of
from flux._engine.stores.file_summaries import load as load_summary
from flux._engine.stores.file_summaries import save as save_summary
from flux._engine.stores.mounts import network_filesystem

__all__ = ["FileStore", "FileWriter", "fsync_dir"]

log = logging.getLogger("flux")

DIR_MODE = 0o700
_HOLDER_BYTES = 256  # a lock file's size: the holder's pid, host and start time, space-padded
_FEW_ADDED = 16  # journals new to a listing that are read one by one rather than through the index
_HOMES_CHECKED: set[str] = set()  # store homes whose file system was looked at in this process

# Test-only fault hooks (engine/faults.py), decided once at import so that normal runs pay for
# one global lookup at each hooked place and nothing else.
_FAULTS = _faults.ACTIVE
_WRITE = _faults.write if _FAULTS else os.write


def fsync_dir(path: str) -> None:
    """Makes a directory entry (a new or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _store_errors(path: str, doing: str) -> Iterator[None]:
    """Turns an OSError met while `doing` something at `path` into a StoreError that says what
    to do. Errors of the tree pass through."""
    try:
        yield
    except (StoreError, DurabilityError):
        raise
    except FileNotFoundError:
        raise
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePathError(
                errno.ELOOP, f"{err.filename or path}: is a symbolic link; the store never follows links, remove it"
            ) from err
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = "check its permissions (the store must be writable by this user)"
        elif err.errno in (errno.ENOTDIR, errno.EEXIST):
            hint = "a file is in the way of the store's directory; give a directory as the store"
        elif err.errno == errno.ENOSPC:
            hint = "free space on the disk, then try again"
        else:
            hint = "check the store's path"
        raise StoreError(f"{path}: cannot {doing} ({err.strerror or err}); {hint}") from err


class FileWriter(BufferedWriter):
    """Appends to one journal file. `sync` writes the buffer in one `write` and, in `fsync`
    durability, one `fsync`.

    Before each write the writer checks that the file is still the size it left it at: if
    another process appended or cut meanwhile, ownership was lost (SPEC.md 5) and nothing is
    written.
    """

    def __init__(
        self, path: str, execution_id: str, fd: int, next_seq: int, durability: str, end: int,
        header: dict[str, Any] | None = None, tail: bytes = b"",
    ) -> None:
        super().__init__(path, execution_id, next_seq, durability)
        self.path = path
        self.fd = fd
        self.end = end  # the journal's size as this writer left it
        # What the summary kept at close needs (engine/stores/file_summaries.py) besides the
        # last lifecycle record appended: the header and the journal's last bytes.
        self._header = header or {}
        self._tail = tail[-TAIL_BYTES:]

    @classmethod
    def open(cls, read: JournalRead, execution_id: str, durability: str, side_file: str) -> FileWriter:
        """Opens a journal for appending, cutting a torn last line into `side_file` first."""
        fd = os.open(read.path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW)
        try:
            if read.torn:
                side = os.open(side_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, FILE_MODE)
                try:
                    kept = os.fstat(side).st_size
                    entry = b"%d " % read.valid_size + read.torn + b"\n"
                    try:
                        write_all(side, entry, _faults.writer("torn_write") if _FAULTS else os.write)
                        os.fsync(side)
                    except BaseException:
                        # Half an entry would run into the next one: take it back.
                        with contextlib.suppress(OSError):
                            os.ftruncate(side, kept)
                        raise
                finally:
                    os.close(side)
                if _FAULTS:
                    _faults.reach("torn_truncate")
                os.ftruncate(fd, read.valid_size)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        records = read.records
        last = records.tail(TAIL_BYTES) if isinstance(records, Records) else b""
        header = records[0] if len(records) else None
        return cls(read.path, execution_id, fd, len(records), durability, read.valid_size, header, last)

    def _write(self, data: bytes, first_seq: int) -> None:
        try:
            size = os.fstat(self.fd).st_size
            if size != self.end:
                # Someone else appended (or cut) since this writer last wrote: ownership was lost
                # (SPEC.md 5). Writing now would interleave two histories, so nothing is written.
                self._broken = DurabilityError(
                    f"{self.path}: the journal is {size} bytes, this writer left it at {self.end}: another "
                    "process wrote to it (was its lock file removed, or is the store on a network file "
                    "system?); stopped without writing"
                )
                raise self._broken
            if _FAULTS:
                _faults.reach("before_write", self)
            write_all(self.fd, data, _WRITE)
            if _FAULTS:
                _faults.reach("after_write", self)
            if self.durability == "fsync":
                os.fsync(self.fd)
        except OSError as err:
            # After a failed fsync the page cache may claim data the disk lost: never retry.
            self._broken = err
            raise DurabilityError(f"{self.path}: writing the journal failed ({err.strerror or err}); stopped") from err
        self.end += len(data)
        self.synced_seq = self.next_seq - 1
        self._tail = data[-TAIL_BYTES:]  # whole lines: the last write ends with the journal's tail
        if _FAULTS:
            _faults.reach("after_fsync", self)

    def position(self) -> tuple[int, int, int]:
        data = os.pread(self.fd, self.end, 0)
        if len(data) != self.end:
            raise OSError(errno.EIO, "the journal is shorter than this writer left it")
        return self.end, self.synced_seq + 1, zlib.crc32(data)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                self._keep_summary()
            os.close(self.fd)
            self.fd = -1

    def _keep_summary(self) -> None:
        """Keeps the execution's summary beside the journal when this writer wrote a status
        (a lifecycle record) and everything it wrote is in the file: what a listing then shows
        without reading the journal (SPEC.md 1)."""
        lifecycle = self.lifecycle
        if lifecycle is None or self._broken is not None or lifecycle[0] > self.synced_seq:
            return
        st = os.fstat(self.fd)
        tail = tail_of(self._tail)
        if st.st_size != self.end or tail is None:
            return
        kept = summary_of(self._header, st, self.end, tail, self.synced_seq + 1, str(LIFECYCLE[lifecycle[1]]))
        save_summary(self.path[:-6] + ".summary", self.execution_id, kept)


class FileLease:
    """Ownership of one execution: its two flocks and its open writer."""

    def __init__(
        self, read: JournalRead, writer: FileWriter, lock_fd: int, journal_lock_fd: int, owner: dict[str, Any]
    ) -> None:
        self.read = read
        self.writer = writer
        self.owner = owner
        self._lock_fd = lock_fd
        self._journal_lock_fd = journal_lock_fd

    def close(self) -> None:
        self.writer.close()
        if self._journal_lock_fd >= 0:
            _release_lock(self._journal_lock_fd)
            self._journal_lock_fd = -1
        if self._lock_fd >= 0:
            _release_lock(self._lock_fd)
            self._lock_fd = -1


# The capabilities hold the store's paths, not the store: no reference cycle keeps a store (and
# what a run hangs on it) alive until the cycle collector comes by.


class _Snapshots:
    """`<id>.index` beside each journal (SPEC.md 2.3). Not synced: a snapshot lost or torn by a
    crash is ignored, and the journal is read whole."""

    def __init__(self, directory: str) -> None:
        self._dir = directory

    def _path(self, execution_id: str) -> str:
        return os.path.join(self._dir, validate_execution_id(execution_id) + ".index")

    def load(self, execution_id: str) -> bytes | None:
        try:
            return read_regular_file(self._path(execution_id))
        except OSError:
            return None  # missing, a link, not a file: either way there is no snapshot to use

    def save(self, execution_id: str, data: bytes) -> None:
        path = self._path(execution_id)
        try:
            _write_file(path + ".new", data, sync=False, point="snapshot")  # one writer at a time
            if _FAULTS:
                _faults.reach("snapshot_rename")
            os.replace(path + ".new", path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path + ".new")
            raise

    def drop(self, execution_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(execution_id))


_BLOB_REF = re.compile(rb'"\$blob":\s*"([0-9a-f]{64})"')


class _Blobs:
    """`<home>/blobs/<sha256>.json`, written atomically and fsynced before the record that
    names them (SPEC.md 4.8)."""

    def __init__(self, home: str) -> None:
        self._home = home

    def path(self, digest: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BlobError(f"invalid blob digest {digest!r}")
        return os.path.join(self._home, "blobs", digest + ".json")

    def put(self, data: bytes) -> str:
        """Stores `data` under its SHA-256, durable before this returns.

        Raises:
            DurabilityError: when it cannot be written (nothing is left behind).
        """
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(self._home, "blobs", digest + ".json")
        try:
            folder = _private_dir(self._home, "blobs")
            try:
                # Already there: its time is renewed, so that a sweep running now keeps it.
                os.utime(path)
            except FileNotFoundError:
                _write_atomically(folder, digest + ".json", data, point="blob")
        except (OSError, StoreError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise DurabilityError(f"{path}: writing the stored output failed ({reason}); stopped") from err
        return digest

    def sweep_unreferenced(self) -> int:
        started = time.time() - 1.0  # file times may lag the clock by a tick
        return self.sweep(self.references(), started)

    def references(self) -> set[str]:
        """The digests of stored outputs that journals, replay snapshots and cache entries name."""
        found: set[str] = set()
        for folder in (os.path.join(self._home, "executions"), os.path.join(self._home, "cache")):
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                if not name.endswith((".jsonl", ".index", ".json", ".torn")):
                    continue
                try:
                    data = read_regular_file(os.path.join(folder, name))
                except OSError:
                    continue
                found.update(m.decode() for m in _BLOB_REF.findall(data))
        return found

    def sweep(self, referenced: set[str], started: float) -> int:
        """Deletes the blobs no journal, snapshot or cache entry names (`referenced`, gathered
        after `started`), except those written or reused since `started` (a run may be about
        to record one); returns how many went.

        Each is renamed aside first, then its time is read again: a `put` that renewed it
        just before is seen and the blob is put back; one after the rename writes it anew."""
        folder = os.path.join(self._home, "blobs")
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        gone = 0
        for name in names:
            digest, _, ext = name.partition(".")
            if ext != "json" or not re.fullmatch(r"[0-9a-f]{64}", digest) or digest in referenced:
                continue
            path = os.path.join(folder, name)
            aside = f"{path}.gone-{os.getpid()}"
            try:
                if os.stat(path, follow_symlinks=False).st_mtime >= started:
                    continue
                os.rename(path, aside)
                if os.stat(aside).st_mtime >= started and not os.path.exists(path):
                    os.rename(aside, path)  # renewed by a put just now: it stays
                    continue
                os.unlink(aside)
                gone += 1
            except FileNotFoundError:
                continue
        if gone:
            fsync_dir(folder)
        return gone

    def get(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            data = read_regular_file(path)
        except OSError as err:
            raise BlobError(f"{path}: the stored output is missing ({err.strerror or err}); restore the file") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise BlobError(f"{path}: the stored output was altered (its SHA-256 no longer matches); restore the file")
        return data


class _Cache:
    """`<home>/cache/<key>.json` (SPEC.md 4.9)."""

    def __init__(self, home: str) -> None:
        self._home = home

    def get(self, key: str) -> bytes | None:
        try:
            return read_regular_file(os.path.join(self._home, "cache", key + ".json"))
        except OSError:
            return None

    def put(self, key: str, data: bytes) -> None:
        _write_atomically(_private_dir(self._home, "cache"), key + ".json", data, point="cache")

    def clear(self) -> int:
        """Deletes every cache entry (`<sha256>.json`) and nothing else; a `cache/` that is a
        symbolic link is refused, never followed."""
        folder = os.path.join(self._home, "cache")
        try:
            if stat.S_ISLNK(os.lstat(folder).st_mode):
                raise UnsafePathError(
                    errno.ELOOP, f"{folder}: is a symbolic link; the store never follows links, remove it"
                )
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        entries = [n for n in names if _CACHE_ENTRY.fullmatch(n)]
        for name in entries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
        return len(entries)


_CACHE_ENTRY = re.compile(r"[0-9a-f]{64}\.json")


class FileStore:
    """Journals as files under one directory (`.flux/` by default)."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = os.fspath(home)
        self.dir = os.path.join(self.home, "executions")
        self.snapshots = _Snapshots(self.dir)
        self.blobs = _Blobs(self.home)
        self.cache = _Cache(self.home)
        self.schedules = FileBook(self.home)
        # What listing learnt, kept for the next listing (SPEC.md 1): each journal's header (its
        # created time, workflow, parent and schedule never change), and its summary as of the
        # journal file's (inode, size, mtime). Only an accelerator: a changed file is read again.
        self._heads: dict[str, Head] = {}
        # The settled states the listing index gave (execution id -> (inode, size, mtime_ns,
        # records, status)), and whether this object has read the index (only then does a
        # listing append the states it learns: it knows which ones the index lacks).
        self._states: dict[str, tuple[int, int, int, int, str]] = {}
        self._unchecked: dict[str, tuple[int, dict[str, Any]]] = {}  # state lines not yet looked at
        self._indexed = False
        self._compact: file_list_index.Index | None = None  # an index read that is due a rewrite
        self._summaries: dict[str, tuple[tuple[int, int, int], ExecutionSummary]] = {}
        self._loaded: dict[str, Summary] = {}  # summary files read for a head, not yet used
        self._order: list[tuple[str, str]] = []  # (created, execution id), oldest first
        self._keys: dict[str, tuple[str, str]] = {}  # execution id -> its place in that order
        self._inos: dict[str, int] = {}  # execution id -> its journal's inode when listed
        # the directory's (inode, mtime, size) when listed, and when
        self._listed: tuple[tuple[int, int, int], float] | None = None
        self._list_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.home

    def __repr__(self) -> str:
        return f"FileStore({self.home!r})"

    def _ensure_dirs(self) -> None:
        _ensure_dirs(self.home, self.dir)

    def journal_path(self, execution_id: str) -> str:
        return os.path.join(self.dir, validate_execution_id(execution_id) + ".jsonl")

    def describe(self, execution_id: str) -> str:
        return self.journal_path(execution_id)

    def secrets_file(self) -> str | None:
        return os.path.join(self.home, "secrets.json")

    # -- ownership (SPEC.md 5) -----------------------------------------------------------------

    def _lock(self, execution_id: str) -> tuple[int, dict[str, Any]]:
        # Looked at once a process for each home, on its first lock: every `wf.run(store=path)`
        # makes a store, and reading the mount table costs a tenth of a millisecond.
        if self.home not in _HOMES_CHECKED:
            _HOMES_CHECKED.add(self.home)
            fstype = network_filesystem(self.home)
            if fstype is not None:
                log.warning(
                    "%s: the store is on a network file system (%s), where file locks may not hold: two processes "
                    "could both take an execution; keep stores on a local disk", self.home, fstype,
                )
        path = os.path.join(self.dir, execution_id + ".lock")
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise UnsafePathError(errno.EINVAL, f"{path}: is not a regular file; remove it")
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise ExecutionLockedError(execution_id, holder) from None
            except BaseException:
                os.close(fd)
                raise
            # A lock file deleted and recreated under us would let two processes hold "the"
            # lock on two inodes; only the lock on the file that is at the path counts.
            held = os.fstat(fd)
            try:
                same = held.st_ino == os.stat(path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        register_inherited_fd(fd)
        # Who holds the lock, padded to a fixed size and written over the last holder's: JSON
        # allows the trailing spaces, and no truncation (a journalled metadata change) is needed.
        owner = {"pid": os.getpid(), "host": this_host(), "since": time.time()}
        info = orjson.dumps(owner).ljust(_HOLDER_BYTES)
        try:
            if _FAULTS:
                _faults.reach("lock_write")
            os.pwrite(fd, info, 0)
            if held.st_size > len(info):
                os.ftruncate(fd, len(info))
        except BaseException:
            _release_lock(fd)  # a lock kept by a failed acquire would lock this very process out
            raise
        return fd, owner

    def _lock_journal(self, execution_id: str, path: str) -> int:
        """Flocks the journal itself too: a lock file deleted or replaced while held (`rm *.lock`)
        would otherwise let a second process in beside the first (SPEC.md 5)."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ExecutionLockedError(execution_id, self._holder(execution_id)) from None
        except BaseException:
            os.close(fd)
            raise
        register_inherited_fd(fd)
        return fd

    def _holder(self, execution_id: str) -> dict[str, Any]:
        try:
            fd = os.open(os.path.join(self.dir, execution_id + ".lock"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return {}
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)

    def owner(self, execution_id: str) -> dict[str, Any] | None:
        path = os.path.join(self.dir, validate_execution_id(execution_id) + ".lock")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or {"pid": "?", "host": "?"}
        except OSError:
            return None
        finally:
            os.close(fd)
        return None

    # -- journals ------------------------------------------------------------------------------

    def create(self, execution_id: str, header: dict[str, Any], durability: str) -> FileLease:
        """Creates a new journal holding only `header` (durable before this returns with
        durability "fsync").

        A new journal is written to `<id>.jsonl.new-<pid>`, fsynced, linked to `<id>.jsonl` (a
        link never replaces an existing file) and the directory is fsynced (SPEC.md 2.2). With
        durability "os" neither fsync is made, as no later write is fsynced either.

        Raises:
            ExecutionExistsError: when the execution already exists.
            DurabilityError: when the journal cannot be written.
        """
        path = self.journal_path(execution_id)
        header["seq"] = 0
        data = encode_record_line(header, seed_for(execution_id))  # too large: refused before anything is made
        if os.path.lexists(path):
            raise ExecutionExistsError(execution_id, self.dir)
        self._ensure_dirs()
        with _store_errors(self.dir, "lock a new execution"):
            lock_fd, owner = self._lock(execution_id)
        try:
            if os.path.lexists(path):
                raise ExecutionExistsError(execution_id, self.dir)
            tmp = f"{path}.new-{os.getpid()}"
            # We hold the lock, so a temp file of this name was left by a process that died.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
            try:
                ino = os.fstat(fd).st_ino  # the journal's, once linked
                write = _faults.writer("create_write") if _FAULTS else os.write
                if write(fd, data) != len(data):
                    # A journal must never appear with half a header (SPEC.md 2.2).
                    raise OSError(errno.ENOSPC, "short write of the journal header")
                if _FAULTS:
                    _faults.reach("create_fsync")
                if durability == "fsync":
                    os.fsync(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            finally:
                os.close(fd)
            try:
                if _FAULTS:
                    _faults.reach("create_link")
                os.link(tmp, path)  # unlike rename, link never replaces an existing journal
            finally:
                os.unlink(tmp)
            if _FAULTS:
                _faults.reach("create_dirsync")
            if durability == "fsync":
                fsync_dir(self.dir)
            file_list_index.append(self.dir, [file_list_index.live_line(execution_id, ino, _head_of(header))])
            journal_lock_fd = self._lock_journal(execution_id, path)
            read = JournalRead(path, Records.of([header]), [0], len(data))
            try:
                writer = FileWriter.open(read, execution_id, durability, path[:-6] + ".torn")
            except BaseException:
                _release_lock(journal_lock_fd)
                raise
        except OSError as err:
            _release_lock(lock_fd)
            raise DurabilityError(f"{path}: cannot create the journal ({err.strerror or err})") from err
        except BaseException:
            _release_lock(lock_fd)
            raise
        return FileLease(read, writer, lock_fd, journal_lock_fd, owner)

    def acquire(
        self, execution_id: str, durability: str, visit: Visit | None = None, known: Known | None = None
    ) -> FileLease:
        """Locks an execution, reads its journal and opens it for appending. `visit` and `known`
        are as for `check_journal`.

        Raises:
            ExecutionNotFoundError, ExecutionLockedError, JournalCorruptError, UnsafePathError.
        """
        path = self.journal_path(execution_id)
        self._check_journal_file(execution_id, path)
        with _store_errors(path, "open the journal"):
            journal_lock_fd = self._lock_journal(execution_id, path)
            try:
                lock_fd, owner = self._lock(execution_id)
            except BaseException:
                _release_lock(journal_lock_fd)
                raise
            try:
                read = read_journal(path, execution_id, visit=visit, known=known)
                writer = FileWriter.open(read, execution_id, durability, path[:-6] + ".torn")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._diverged_path(execution_id))  # a new owner takes it from here
            except BaseException:
                _release_lock(lock_fd)
                _release_lock(journal_lock_fd)
                raise
        return FileLease(read, writer, lock_fd, journal_lock_fd, owner)

    def _check_journal_file(self, execution_id: str, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise ExecutionNotFoundError(execution_id, self.home) from None
        except OSError as err:
            raise StoreError(
                f"{path}: cannot read the journal ({err.strerror or err}); check the store's path"
            ) from err
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(
                errno.ELOOP, f"{path}: is a symbolic link; journals are never read through links, remove it"
            )
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(errno.EINVAL, f"{path}: is not a regular file; remove it or restore the journal")

    def read(self, execution_id: str, visit: Visit | None = None, known: Known | None = None) -> JournalRead:
        """Reads a journal without locking or changing it; `visit` and `known` as for `check_journal`."""
        path = self.journal_path(execution_id)
        with _store_errors(path, "read the journal"):
            try:
                return read_journal(path, execution_id, visit=visit, known=known)
            except FileNotFoundError:
                raise ExecutionNotFoundError(execution_id, self.home) from None

    def header(self, execution_id: str) -> dict[str, Any]:
        """The journal's first record, checked, without reading the rest of the journal."""
        path = self.journal_path(execution_id)
        self._check_journal_file(execution_id, path)
        with _store_errors(path, "read the journal"):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                data = b""
                while b"\n" not in data:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    data += chunk
            finally:
                os.close(fd)
        first = data[: data.find(b"\n") + 1] if b"\n" in data else data
        return check_journal(first, path, execution_id).records[0]

    def export(self, execution_id: str) -> bytes:
        path = self.journal_path(execution_id)
        with _store_errors(path, "read the journal"):
            try:
                data = read_regular_file(path)
            except FileNotFoundError:
                raise ExecutionNotFoundError(execution_id, self.home) from None
        read = check_journal(data, path, execution_id)
        return data[: read.valid_size]

    def exists(self, execution_id: str) -> bool:
        return os.path.lexists(self.journal_path(execution_id))

    def list_ids(self) -> list[str]:
        return sorted(self._journal_ids())

    def _journal_ids(self) -> set[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return set()
        except OSError as err:
            raise StoreError(
                f"{self.dir}: cannot list the store ({err.strerror or err}); give a directory as the store"
            ) from err
        return {n[:-6] for n in names if n.endswith(".jsonl") and is_execution_id(n[:-6])}

    def summary(self, execution_id: str) -> ExecutionSummary:
        """What `list` shows of one execution; a damaged journal is summarized as damaged. The
        journal is read only when neither the listing index nor its summary file describes it
        (SPEC.md 1), and then only past what the summary describes when it can be; in this
        process, only when the journal's file changed since the last summary of it."""
        return self._summary(execution_id)[0]

    def _summary(
        self, execution_id: str, listed: bool = False
    ) -> tuple[ExecutionSummary, tuple[int, int, int] | None, bool]:
        """The summary, the journal file's (inode, size, mtime_ns) it was made for (None: the
        file could not be looked at) and whether the listing index gave it. `listed`: the id
        comes from listing the directory, so it is a valid one."""
        path = f"{self.dir}/{execution_id}.jsonl" if listed else self.journal_path(execution_id)
        try:
            st = os.lstat(path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        cached = self._summaries.get(execution_id)
        fresh: Summary | None = None
        if key is not None and cached is not None and cached[0] == key:
            found = cached[1]
        elif (
            key is not None
            and (state := self._states.get(execution_id) or self._check_state(execution_id)) is not None
            and state[:3] == key
            and (head := self._heads.get(execution_id)) is not None
        ):
            # Settled as of this very file, size and time (SPEC.md 1): no file opened.
            found = ExecutionSummary(
                execution_id, head[1], _STATUSES[state[4]], head[0], state[3], head[2], schedule=head[3]
            )
            self._summaries[execution_id] = (key, found)
            return found, key, True
        else:
            found, fresh = self._read_summary(execution_id, path)
            if key is not None:
                self._summaries[execution_id] = (key, found)
        unowned = True
        if found.status in (Status.RUNNING, Status.CREATED):
            unowned = self.owner(execution_id) is None
            if unowned and os.path.lexists(self._diverged_path(execution_id)):  # beside the journal (SPEC.md 13.7)
                found = dataclasses.replace(found, status=Status.DIVERGED)
            elif unowned and found.status == Status.RUNNING:
                found = dataclasses.replace(found, status=Status.INTERRUPTED)
        if fresh is not None and unowned:
            # Learnt by reading the journal: kept for the next listing, unless a run is writing
            # it (its writer keeps one when it ends).
            save_summary(path[:-6] + ".summary", execution_id, fresh)
        return found, key, False

    def _check_state(self, execution_id: str) -> tuple[int, int, int, int, str] | None:
        """The state the index's line gave the execution, checked now that a listing looks at
        it (a line's state is checked only when used: a page of 50 checks 50)."""
        unchecked = self._unchecked.pop(execution_id, None)
        if unchecked is None:
            return None
        state = file_list_index.state_of(unchecked[1])
        if state is None:
            return None
        checked = self._states[execution_id] = (unchecked[0], *state)
        return checked

    def _settle(self, learnt: list[tuple[ExecutionSummary, tuple[int, int, int]]]) -> None:
        """Adds to the listing index the settled states a listing learnt without it (SPEC.md 1),
        when this object has read the index (so it knows the index lacks them); or writes the
        index again when a third of it was found dead."""
        lines = []
        for found, key in learnt:
            execution_id = found.execution_id
            head = self._heads.get(execution_id)
            if head is None or self._inos.get(execution_id) != key[0]:
                continue
            state = (*key, found.records, str(found.status))
            if self._states.get(execution_id) != state:
                self._states[execution_id] = state
                lines.append(file_list_index.live_line(execution_id, key[0], head, state[1:]))
        index, self._compact = self._compact, None
        if index is not None:
            live: dict[str, tuple[int, Head, file_list_index.State | None]] = {}
            for i, ino in self._inos.items():
                head = self._heads.get(i)
                if head is not None and head[1] != "?":
                    got = self._states.get(i) or self._check_state(i)
                    live[i] = (ino, head, got[1:] if got is not None and got[0] == ino else None)
            file_list_index.compact(self.dir, index, live)
        elif lines:
            file_list_index.append(self.dir, lines)

    def _read_summary(self, execution_id: str, path: str) -> tuple[ExecutionSummary, Summary | None]:
        """The summary of the journal as it is now, and a Summary to keep when it was learnt by
        reading the journal (None when the kept one described it, or it cannot be kept)."""
        kept = self._loaded.pop(execution_id, None) or load_summary(path[:-6] + ".summary", execution_id)
        if kept is not None:
            known = self._from_kept(execution_id, path, kept)
            if known is not None:
                return known
        try:
            read = self.read(execution_id)
            history = History(read.path, read.offsets, read.records)
            history.apply_all(read.records, read.offsets)
        except (JournalCorruptError, StoreError) as err:
            return ExecutionSummary(execution_id, "?", "damaged", "", 0, None, str(err)), None
        header = history.header or {}
        parent = header.get("parent") or {}
        found = ExecutionSummary(
            execution_id, str(header.get("workflow", "")), history.status, str(header.get("created", "")),
            len(read.records), parent.get("execution_id") if isinstance(parent, dict) else None,
            schedule=schedule_of(header),
        )
        records = read.records
        tail = tail_of(records.raw(len(records) - 1)) if isinstance(records, Records) and not read.torn else None
        try:
            st = os.lstat(path)
        except OSError:
            return found, None
        if tail is None or st.st_size != read.valid_size:
            return found, None  # a torn tail (cut by the next owner), or written meanwhile
        return found, summary_of(header, st, read.valid_size, tail, len(records), str(history.status))

    def _from_kept(
        self, execution_id: str, path: str, kept: Summary
    ) -> tuple[ExecutionSummary, Summary | None] | None:
        """The summary from the kept one, when it describes the journal (same file, and the
        line it ends at still there) exactly or as a prefix (then the lines after it are read
        and checked); None when it does not, or the lines after it do not check out."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_ino != kept.ino or not TAIL_BYTES <= kept.size <= st.st_size:
                return None
            want = st.st_size - kept.size + TAIL_BYTES
            data = os.pread(fd, want, kept.size - TAIL_BYTES)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) != want or tail_of(data[:TAIL_BYTES]) != kept.tail:
            return None
        if st.st_size == kept.size:
            # Same size but touched since (an editor, a copy): read whole, to be sure.
            return (_listed(execution_id, kept), None) if st.st_mtime_ns == kept.mtime_ns else None
        try:
            grown, used = unfold(kept, data[TAIL_BYTES:], path, execution_id)
        except JournalCorruptError:
            return None  # read whole: the error names the line, a hole is a torn tail
        whole = kept.size + used == st.st_size
        return _listed(execution_id, grown), dataclasses.replace(grown, mtime_ns=st.st_mtime_ns) if whole else None

    def _head(self, execution_id: str) -> Head:
        """(created, workflow, parent id, schedule) from the execution's summary file, else the
        journal's header: what orders and filters a listing when the index does not say. A
        journal whose header cannot be read sorts last, as its summary does."""
        head = self._heads.get(execution_id)
        if head is None:
            path = self.journal_path(execution_id)
            kept = load_summary(path[:-6] + ".summary", execution_id)
            try:
                same = kept is not None and os.lstat(path).st_ino == kept.ino
            except OSError:
                same = False
            if kept is not None and same:
                head = (kept.created, kept.workflow, kept.parent, kept.schedule)
                self._loaded[execution_id] = kept  # the page's summary starts from it
            else:
                try:
                    head = _head_of(self.header(execution_id))
                except (JournalCorruptError, StoreError, ExecutionNotFoundError):
                    return ("", "?", None, None)
            self._heads[execution_id] = head
        return head

    def _journals(self) -> dict[str, int]:
        """Every journal in the store: execution id -> the inode its directory entry names (no
        file is opened or looked at)."""
        found: dict[str, int] = {}
        try:
            with os.scandir(self.dir) as entries:
                for entry in entries:
                    name = entry.name
                    if name.endswith(".jsonl") and is_execution_id(name[:-6]):
                        found[name[:-6]] = entry.inode()
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise StoreError(
                f"{self.dir}: cannot list the store ({err.strerror or err}); give a directory as the store"
            ) from err
        return found

    def _learn_heads(self, journals: dict[str, int], added: list[str]) -> None:
        """Learns the heads of the journals `added` from the listing index (SPEC.md 1), each it
        does not describe from its summary or header; then adds those to the index, or writes
        it again when a third of it is dead."""
        index = file_list_index.read(self.dir)
        self._indexed = True
        entries = index.entries
        heads, unchecked = self._heads, self._unchecked
        learnt: dict[str, tuple[int, Head]] = {}
        only = set(added) if len(added) != len(journals) else None
        live = 0  # lines that name a journal listed; the others are dead
        for i, ino in journals.items():
            entry = entries.get(i)
            named = entry[1] if entry is not None and entry[0] == ino else None
            if named is not None:
                live += 1
            if only is not None and i not in only:
                continue
            if named is not None:
                head = named
                line = entry[2] if entry is not None else None
                if line is not None:
                    unchecked[i] = (ino, line)
            else:
                head = self._head(i)
                if head[1] != "?":  # a header that cannot be read is read again at every listing
                    learnt[i] = (ino, head)
            heads[i] = head
        dead = index.lines - live
        if file_list_index.worth_compacting(index, dead):
            self._compact = index  # once the listing has learnt the states of its page
        elif learnt:
            file_list_index.append(self.dir, [file_list_index.live_line(i, *entry) for i, entry in learnt.items()])

    def _ordered(self) -> list[tuple[str, str]]:
        """Every execution as (created, execution id), oldest first. The directory is listed
        again only when it changed (a journal made or removed); the order is then patched."""
        try:
            st = os.stat(self.dir)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StoreError(
                f"{self.dir}: cannot list the store ({err.strerror or err}); give a directory as the store"
            ) from err
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._list_lock:  # listings may run in several threads (a server's)
            listed = self._listed
            # A directory's mtime may not move for two changes within one clock tick: a listing
            # made less than a second after the last change is not trusted the next time.
            if listed is not None and listed[0] == key and listed[1] - st.st_mtime_ns / 1e9 > 1.0:
                return self._order
            listed_at = time.time()
            journals = self._journals()
            keys, inos = self._keys, self._inos
            # A journal of another inode under a known id was deleted and made again: new facts.
            removed = [i for i, ino in inos.items() if journals.get(i) != ino]
            added = [i for i, ino in journals.items() if inos.get(i) != ino]
            # A new list, never one changed in place: a listing going on in another thread keeps
            # reading the one it was given.
            order = list(self._order) if len(added) + len(removed) <= 1000 else None
            for i in removed:
                order_key = keys.pop(i)
                del inos[i]
                if order is not None:
                    del order[bisect.bisect_left(order, order_key)]
                self._heads.pop(i, None)
                self._states.pop(i, None)
                self._unchecked.pop(i, None)
                self._summaries.pop(i, None)
                self._loaded.pop(i, None)
            if len(added) > _FEW_ADDED:
                self._learn_heads(journals, added)  # one read of the index instead of a file each
            for i in added:
                keys[i] = order_key = (self._head(i)[0], i)
                inos[i] = journals[i]
                if order is not None:
                    bisect.insort(order, order_key)
            self._order = order if order is not None else sorted(keys.values())
            self._listed = (key, listed_at)
            return self._order

    def list(
        self, *, status: str | Sequence[str] | None = None, workflow: str | None = None, limit: int | None = None,
        cursor: str | None = None, prefix: str | None = None, created_after: str | None = None,
        created_before: str | None = None, schedule: str | None = None,
    ) -> Page:
        """A page of executions, newest first (SPEC.md 1). Headers order the listing; only the
        executions a page shows (and, with a status filter, those looked at to fill it) are
        summarized, each read again only if its file changed."""
        if limit is not None and limit < 0:
            raise InvalidOptionError(f"limit={limit} must be >= 0")
        after = decode_cursor(cursor) if cursor is not None else None
        order = self._ordered()
        end = len(order)
        if after is not None:
            end = bisect.bisect_left(order, after, 0, end)
        if created_before is not None:
            end = bisect.bisect_left(order, (created_before, ""), 0, end)
        wanted = {status} if isinstance(status, str) else set(status) if status else None
        rows: list[tuple[tuple[str, str], ExecutionSummary]] = []
        learnt: list[tuple[ExecutionSummary, tuple[int, int, int]]] = []
        settled = file_list_index.SETTLED
        for n in range(end - 1, -1, -1):
            if limit is not None and len(rows) > limit:
                break
            created, i = order[n]
            if created_after is not None and created < created_after:
                break
            if prefix is not None and not i.startswith(prefix):
                continue
            if workflow is not None and self._head(i)[1] != workflow:
                continue
            if schedule is not None and self._head(i)[3] != schedule:
                continue
            found, key, from_index = self._summary(i, listed=True)
            if self._indexed and not from_index and key is not None and str(found.status) in settled:
                learnt.append((found, key))
            if wanted is None or str(found.status) in wanted:
                rows.append(((created, i), found))
        if learnt or self._compact is not None:
            self._settle(learnt)
        if limit is None or len(rows) <= limit:
            return Page(tuple(found for _, found in rows), None)
        kept = rows[:limit]
        return Page(tuple(found for _, found in kept), encode_cursor(*kept[-1][0]) if kept else None)

    async def wait_for_change(self, execution_id: str, timeout: float) -> None:
        """Returns once the journal's size changes, or after `timeout` seconds (the size is
        looked at every 5 ms at first, then every 100 ms)."""
        path = self.journal_path(execution_id)
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1
        deadline = time.monotonic() + timeout
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.1)
            try:
                if os.stat(path).st_size != size:
                    return
            except OSError:
                return

    def delete(self, execution_id: str) -> None:
        path = self.journal_path(execution_id)
        self._check_journal_file(execution_id, path)
        with _store_errors(path, "delete the execution"):
            journal_lock_fd = self._lock_journal(execution_id, path)
            try:
                lock_fd, _ = self._lock(execution_id)
            except BaseException:
                _release_lock(journal_lock_fd)
                raise
            try:
                # The index learns it first: should the id be made again with the same inode,
                # its old line no longer counts (SPEC.md 1).
                file_list_index.append(self.dir, [file_list_index.dead_line(execution_id, os.lstat(path).st_ino)])
                # The journal next: from here on the execution does not exist, and a process
                # that opened it meanwhile finds it gone when it holds the locks.
                os.unlink(path)
                base = path[:-6]
                sides = (".summary", ".summary.new", ".index", ".index.new", ".torn", ".cancel", ".diverged", ".lock")
                for side in sides:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(base + side)
                fsync_dir(self.dir)
            finally:
                _release_lock(lock_fd)
                _release_lock(journal_lock_fd)

    # -- divergence found by a worker (SPEC.md 13.7) --------------------------------------------

    def _diverged_path(self, execution_id: str) -> str:
        return os.path.join(self.dir, validate_execution_id(execution_id) + ".diverged")

    def mark_diverged(self, execution_id: str, divergence: dict[str, Any]) -> None:
        if not self.exists(execution_id):
            raise ExecutionNotFoundError(execution_id, self.home)
        with _store_errors(self.dir, "keep the divergence"):
            _write_atomically(
                self.dir, execution_id + ".diverged", orjson.dumps(divergence, default=str), point="diverged"
            )

    def divergence(self, execution_id: str) -> dict[str, Any] | None:
        try:
            found = orjson.loads(read_regular_file(self._diverged_path(execution_id)))
        except (OSError, orjson.JSONDecodeError):
            return None
        return found if isinstance(found, dict) else None

    def sweep_leftovers(self, started: float) -> int:
        """Deletes the temporary files a process killed while writing left behind (a file
        written whole, then renamed: `NAME.tmp-PID-N`; a blob set aside by a sweep:
        `NAME.gone-PID`), when that process is gone and the file is older than `started`.
        Returns how many went."""
        gone = 0
        for folder in (self.dir, os.path.join(self.home, "blobs"), os.path.join(self.home, "cache")):
            try:
                names = os.listdir(folder)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                found = _LEFTOVER.fullmatch(name)
                if found is None or _alive(int(found.group(1) or found.group(2))):
                    continue
                path = os.path.join(folder, name)
                try:
                    if os.stat(path, follow_symlinks=False).st_mtime >= started:
                        continue
                    os.unlink(path)
                    gone += 1
                except FileNotFoundError:
                    continue
        return gone

    # -- cancellation requests (SPEC.md 4.6) ---------------------------------------------------

    def _cancel_path(self, execution_id: str) -> str:
        return os.path.join(self.dir, validate_execution_id(execution_id) + ".cancel")

    def request_cancel(self, execution_id: str) -> None:
        """Asks the process that runs the execution to cancel it (it checks a few times a second)."""
        if not self.exists(execution_id):
            raise ExecutionNotFoundError(execution_id, self.home)
        with _store_errors(self.dir, "ask for the cancellation"):
            if _FAULTS:
                _faults.reach("cancel_write")
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
            fd = os.open(self._cancel_path(execution_id), flags, FILE_MODE)
            os.close(fd)

    def cancel_requested(self, execution_id: str) -> bool:
        return os.path.lexists(self._cancel_path(execution_id))

    def clear_cancel(self, execution_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._cancel_path(execution_id))


_STATUSES = {str(status): status for status in Status}


def _listed(execution_id: str, kept: Summary) -> ExecutionSummary:
    """A kept summary as a listing shows it (its status as the journal has it)."""
    status: Any = kept.status
    with contextlib.suppress(ValueError):
        status = Status(kept.status)
    return ExecutionSummary(
        execution_id, kept.workflow, status, kept.created, kept.records, kept.parent, schedule=kept.schedule
    )


def _head_of(header: dict[str, Any]) -> Head:
    """What orders and filters a listing, from a journal's header."""
    parent = header.get("parent")
    return (
        str(header.get("created", "")), str(header.get("workflow", "")),
        parent.get("execution_id") if isinstance(parent, dict) else None, schedule_of(header),
    )


def _ensure_dirs(*paths: str) -> None:
    """Makes the store's directories (mode 0700), each made durable by syncing its parent; an
    existing one that others may read or write is made private again (SPEC.md 1), and one that
    is a symbolic link is refused."""
    for path in paths:
        with _store_errors(path, "create the store's directory"):
            try:
                os.mkdir(path, DIR_MODE)
            except FileNotFoundError:
                raise StoreError(
                    f"{path}: cannot create the store's directory (no such folder above it); create its parent "
                    "folder, or give a store in a folder that exists"
                ) from None
            except FileExistsError:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode) and path != paths[0]:
                    raise UnsafePathError(
                        errno.ELOOP, f"{path}: is a symbolic link; the store never follows links, remove it"
                    ) from None
                if not os.path.isdir(path):
                    raise OSError(errno.ENOTDIR, "not a directory") from None
                if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                    os.chmod(path, DIR_MODE)
                    log.warning("%s: the store's directory was open to other users (mode %o); made it 0700", path,
                                stat.S_IMODE(st.st_mode))
            else:
                fsync_dir(os.path.dirname(os.path.abspath(path)))


def _private_dir(home: str, name: str) -> str:
    path = os.path.join(home, name)
    _ensure_dirs(home, os.path.join(home, "executions"), path)
    return path


def _write_file(path: str, data: bytes, *, sync: bool, point: str) -> None:
    """Writes a whole file; `point` names its kind for the fault hooks (`blob`, `cache`, `snapshot`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    try:
        write_all(fd, data, _faults.writer(point + "_write") if _FAULTS else os.write)
        if sync:
            if _FAULTS:
                _faults.reach(point + "_fsync")
            os.fsync(fd)
    finally:
        os.close(fd)


_LEFTOVER = re.compile(r".+\.(?:tmp-(\d+)-\d+|gone-(\d+))")


def _alive(pid: int) -> bool:
    """Whether a process `pid` runs (as far as this process can tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's: it exists
    return True


def _write_atomically(folder: str, name: str, data: bytes, *, point: str) -> str:
    """Writes a file whole or not at all: a temporary file, fsynced, renamed over the name, the
    folder fsynced. A failure leaves no temporary file behind."""
    path = os.path.join(folder, name)
    tmp = f"{path}.tmp-{os.getpid()}-{id(data)}"
    try:
        _write_file(tmp, data, sync=True, point=point)
        if _FAULTS:
            _faults.reach(point + "_rename")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)
    return path


def _release_lock(fd: int) -> None:
    unregister_inherited_fd(fd)
    os.close(fd)  # closing the descriptor releases the flock


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = orjson.loads(data) if data else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, orjson.JSONDecodeError):
        return {}
