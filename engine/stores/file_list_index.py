"""The file store's listing index (SPEC.md 1): `<home>/executions/.list`, one line per execution
made, holding what its journal's header says and never changes (created, workflow, parent,
schedule), so that a listing orders and filters executions without opening one file each; and,
once a listing has seen an execution settle (completed, failed, cancelled, paused), one more
line with its status as of its journal file's size and modification time, so that a listing
shows it without opening a file either. Only this module reads or writes it; it is never the
truth.

Every listing checks the index against the directory: a line counts only while a journal of its
execution id is listed with the inode the line names (a journal deleted, replaced or copied in
is not the one described). An execution without such a line is read from its journal's header,
as without an index, and its line is added. Lines are appended with `O_APPEND`, each whole in
one `write` of at most 4,096 bytes, so processes appending at once never interleave bytes; a
torn, garbage or foreign line fails its checksum and is skipped. Nothing here is fsynced, and
no failure to read or write the index is ever an error: the listing reads headers instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import operator
import os
import stat
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from flux._engine.journal import FILE_MODE, encode_line, write_all

__all__ = [
    "Head", "Index", "NAME", "SETTLED", "State", "append", "compact", "dead_line", "live_line", "read",
    "state_of", "worth_compacting",
]

NAME = ".list"  # an execution id starts with a letter or digit: never the name of one of its files
_LOCK = ".list.lock"
_NEW = ".list.new"
_SEED = zlib.crc32(NAME.encode("ascii"))
MAX_LINE = 4096  # one write of at most this many bytes is never interleaved with another's
_COMPACT_MIN = 64  # dead lines before the index is worth writing again

# (created, workflow, parent id, schedule name): what orders and filters a listing
Head = tuple[str, str, str | None, str | None]
# (journal size, journal mtime_ns, records, status): what a listing shows of a settled execution
# while its journal file is of that size and modification time
State = tuple[int, int, int, str]
# Statuses the journal alone decides and that stay until it grows: the ones an index line keeps.
SETTLED = frozenset({"completed", "failed", "cancelled", "paused"})


@dataclass(frozen=True)
class Index:
    """The index as read: for each execution id its last line's inode, head (None for a
    deletion) and, for a state line, the line's object (checked by `state_of` only when a
    listing looks at that execution), how many lines the file holds and how many of them check
    out, and the file's inode and the size read."""

    entries: dict[str, tuple[int, Head | None, dict[str, Any] | None]]
    lines: int
    good: int
    ino: int
    size: int


def live_line(execution_id: str, ino: int, head: Head, state: State | None = None) -> bytes:
    """The line saying that the journal `ino` of `execution_id` has this head, and with
    `state`, that while it is of that size and time its execution is as `state` says."""
    created, workflow, parent, schedule = head
    line: dict[str, Any] = {
        "id": execution_id, "ino": ino, "created": created, "workflow": workflow, "parent": parent,
        "schedule": schedule,
    }
    if state is not None:
        line["size"], line["mtime_ns"], line["records"], line["status"] = state
    return encode_line(line, _SEED)


def dead_line(execution_id: str, ino: int) -> bytes:
    """The line saying that the journal `ino` of `execution_id` was deleted: an earlier line
    about it no longer counts, even if a new journal of that id is given the same inode."""
    return encode_line({"id": execution_id, "ino": ino, "deleted": True}, _SEED)


def _path(folder: str, name: str = NAME) -> str:
    return os.path.join(folder, name)


def read(folder: str) -> Index:
    """The index of the executions in `folder`; an empty one when there is none or it cannot
    be read. Lines that do not check out (torn, garbage, of the wrong shape) are skipped but
    counted; for an id named by several lines, the last one counts."""
    try:
        fd = os.open(_path(folder), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return Index({}, 0, 0, 0, 0)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Index({}, 0, 0, 0, 0)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError:
        return Index({}, 0, 0, 0, 0)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    end = data.rfind(b"\n") + 1
    pieces = [p for p in data[: end - 1].split(b"\n") if p] if end else []  # an empty line is nothing
    lines = len(pieces) + (1 if end < len(data) else 0)  # an unfinished last line counts as dead
    entries, good = _entries(pieces)
    return Index(entries, lines, good, st.st_ino, end)


def _entries(pieces: list[bytes]) -> tuple[dict[str, tuple[int, Head | None, dict[str, Any] | None]], int]:
    """The entries the lines give (the last line of an id counts), and how many lines check out."""
    good = [p for p in pieces if _checks_out(p)]
    try:
        found = orjson.loads(b"[" + b",".join(good) + b"]") if good else []
    except orjson.JSONDecodeError:  # a line whose checksum holds but is not JSON: each alone
        found = []
        for piece in good:
            with contextlib.suppress(orjson.JSONDecodeError):
                found.append(orjson.loads(piece))
    entries: dict[str, tuple[int, Head | None, dict[str, Any] | None]] = {}
    count = 0
    for item in found:
        # The common lines (a head, with or without a state) checked inline; any other through
        # `_entry`, which says the same of these.
        try:
            execution_id, ino, created, workflow, parent, schedule = _HEAD_FIELDS(item)
        except (KeyError, TypeError):
            execution_id = None
        if (
            type(execution_id) is str
            and type(ino) is int
            and type(created) is str
            and type(workflow) is str
            and (parent is None or type(parent) is str)
            and (schedule is None or type(schedule) is str)
            and "deleted" not in item
        ):
            entries[execution_id] = (ino, (created, workflow, parent, schedule), item if "status" in item else None)
            count += 1
            continue
        entry = _entry(item)
        if entry is not None:
            entries[entry[0]] = entry[1]
            count += 1
    return entries, count


_HEAD_FIELDS = operator.itemgetter("id", "ino", "created", "workflow", "parent", "schedule")


def _checks_out(line: bytes, crc32: Any = zlib.crc32) -> bool:
    """Whether a line (without its newline) ends with the checksum member of its own bytes: the
    journal's check, made lighter for the thousands of lines of one listing."""
    if line[-18:-10] != b',"crc":"' or line[-2:] != b'"}':
        return False
    try:
        return bool(crc32(line[:-18], _SEED) == int(line[-10:-2], 16))
    except ValueError:
        return False


def _entry(item: Any) -> tuple[str, tuple[int, Head | None, dict[str, Any] | None]] | None:
    """(id, (inode, head, the object of a state line)) from a line's object, or None when it is
    not of the index's shape."""
    try:
        execution_id, ino = item["id"], item["ino"]
        if type(execution_id) is not str or type(ino) is not int:
            return None
        if "deleted" in item:
            return (execution_id, (ino, None, None)) if item["deleted"] is True else None
        created, workflow, parent, schedule = item["created"], item["workflow"], item["parent"], item["schedule"]
    except (KeyError, TypeError):
        return None
    if type(created) is not str or type(workflow) is not str:
        return None
    if not (parent is None or type(parent) is str) or not (schedule is None or type(schedule) is str):
        return None
    return execution_id, (ino, (created, workflow, parent, schedule), item if "status" in item else None)


def state_of(item: dict[str, Any]) -> State | None:
    """The state a state line's object gives, or None when it is not of a state's shape (its
    status not one the journal settles, a number that is not an integer): then the line's
    head still counts, its state does not."""
    size, mtime_ns, records, status = item.get("size"), item.get("mtime_ns"), item.get("records"), item.get("status")
    if type(size) is not int or type(mtime_ns) is not int or type(records) is not int:
        return None
    if type(status) is not str or status not in SETTLED:
        return None
    return size, mtime_ns, records, status


def worth_compacting(index: Index, dead: int) -> bool:
    """Whether so many lines are dead (a third of them, and at least 64) that the index is
    better written again."""
    return dead >= _COMPACT_MIN and dead * 3 >= index.lines


def append(folder: str, lines: Iterable[bytes]) -> None:
    """Appends whole lines to the index, in writes of at most `MAX_LINE` bytes that each hold
    whole lines (a longer line is left out: its execution is read from its header). Never
    raises: an index not written is read from headers."""
    batch: list[bytes] = []
    size = 0
    chunks: list[bytes] = []
    for line in lines:
        if len(line) > MAX_LINE:
            continue
        if size + len(line) > MAX_LINE:
            chunks.append(b"".join(batch))
            batch, size = [], 0
        batch.append(line)
        size += len(line)
    if batch:
        chunks.append(b"".join(batch))
    if not chunks:
        return
    try:
        fd = os.open(_path(folder), os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
            # A line torn by a power loss (or still being written by another process: then this
            # only adds an empty line) would swallow the first line written after it.
            chunks[0] = b"\n" + chunks[0]
        for chunk in chunks:
            if os.write(fd, chunk) != len(chunk):
                return  # a full disk: the rest is read from headers
    except OSError:
        return
    finally:
        os.close(fd)


def compact(folder: str, index: Index, live: dict[str, tuple[int, Head, State | None]]) -> bool:
    """Writes the index again holding only `live` (execution id -> (inode, head, state)) and the
    lines appended since `index` was read, to `.list.new` renamed over it, while holding
    `.list.lock`. Leaves it to another process compacting at the same moment, or that already
    did. Returns whether it wrote it; never raises."""
    try:
        lock = os.open(_path(folder, _LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # another process compacts it now
        return _compact_locked(folder, index, live)
    finally:
        os.close(lock)  # releases the flock


def _compact_locked(folder: str, index: Index, live: dict[str, tuple[int, Head, State | None]]) -> bool:
    try:
        fd = os.open(_path(folder), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        fd = -1
    except OSError:
        return False
    try:
        later = b""
        if fd >= 0:
            st = os.fstat(fd)
            if st.st_ino != index.ino or st.st_size < index.size:
                return False  # written again by another process since it was read
            later = os.pread(fd, st.st_size - index.size, index.size)
        elif index.ino:
            return False
    except OSError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
    # Lines appended meanwhile (executions made since the directory was listed) are kept.
    kept = [p + b"\n" for p in later[: later.rfind(b"\n") + 1].split(b"\n")[:-1] if _checks_out(p)]
    ordered = sorted(live.items(), key=lambda item: (item[1][1][0], item[0]))
    data = b"".join([*(live_line(i, *entry) for i, entry in ordered), *kept])
    tmp = _path(folder, _NEW)
    try:
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
        try:
            write_all(out, data)
        finally:
            os.close(out)
        os.replace(tmp, _path(folder))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True
