"""The file store's per-execution summaries (SPEC.md 1): `<id>.summary` beside each journal holds
what a listing shows of the execution as of one length of its journal. Only this module reads or
writes those files; none of them is ever the truth.

A summary is used only while it describes the journal exactly: the same file (inode), size and
modification time, and the journal's last 19 bytes there are still the checksum member of the
line the summary ends at. A journal that grew past it is summarized from the summary plus the
lines after it (each checked as section 2 says); anything else (no summary, one that does not
check out, another file, a shorter journal, a tail that is not the one described) is a miss and
the journal is read whole, as it always could be. So a crash between a journal append and a
summary write, a summary torn or lost by a power loss, or one copied from elsewhere can never
make a listing show a status the journal does not hold: summaries are written without fsync.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

import orjson

from flux._engine import records as R
from flux._engine.errors import JournalCorruptError
from flux._engine.journal import FILE_MODE, check_lines, checks_out, encode_line, seed_for, write_all

__all__ = ["Summary", "TAIL_BYTES", "from_header", "load", "save", "tail_of", "unfold"]

TAIL_BYTES = 19  # `,"crc":"xxxxxxxx"}\n`: the end of every journal line
_CRC_OPEN = b',"crc":"'


@dataclass(frozen=True)
class Summary:
    """An execution as of `size` bytes (`records` records) of its journal, which was the file
    `ino` modified at `mtime_ns`, its last line's checksum digits `tail`."""

    ino: int
    size: int
    mtime_ns: int
    tail: str
    records: int
    status: str
    workflow: str
    created: str
    parent: str | None
    schedule: str | None

    def to_record(self) -> dict[str, Any]:
        return {
            "ino": self.ino, "size": self.size, "mtime_ns": self.mtime_ns, "tail": self.tail,
            "records": self.records, "status": self.status, "workflow": self.workflow, "created": self.created,
            "parent": self.parent, "schedule": self.schedule,
        }


_TYPES: dict[str, tuple[type, ...]] = {
    "ino": (int,), "size": (int,), "mtime_ns": (int,), "tail": (str,), "records": (int,), "status": (str,),
    "workflow": (str,), "created": (str,), "parent": (str, type(None)), "schedule": (str, type(None)),
}


def tail_of(data: bytes) -> str | None:
    """The checksum digits that end `data` (the bytes before a journal position), or None when
    `data` does not end with a journal line's checksum member."""
    end = data[-TAIL_BYTES:]
    if len(end) != TAIL_BYTES or end[:8] != _CRC_OPEN or end[-3:] != b'"}\n':
        return None
    return end[8:16].decode("ascii", "replace")


def load(path: str, execution_id: str) -> Summary | None:
    """The summary kept at `path`, or None when there is none that checks out (its own
    checksum, seeded by the execution id as a journal line's is, and every field's type)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not checks_out(data, seed_for(execution_id)):
        return None
    try:
        found = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(found, dict):
        return None
    fields: dict[str, Any] = {}
    for name, types in _TYPES.items():
        value = found.get(name)
        if type(value) not in types:
            return None
        fields[name] = value
    return Summary(**fields)


def save(path: str, execution_id: str, summary: Summary) -> None:
    """Writes the summary at `path` in place: the file is made when there is none, else its bytes
    are overwritten and it is cut to the new length. Never raises for a file system trouble: a
    summary not written is a miss, not an error.

    No temporary file and no rename: each of those is a directory change, and on a busy disk they
    were most of what a small run's end cost. A reader that meets the file half written, or two
    writers at once, gets bytes that do not check out (a miss); a summary that checks out is whole.
    A symbolic link, a file that is not a regular one, or one with another name (a hard link)
    is left alone."""
    data = encode_line(summary.to_record(), seed_for(execution_id))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
    except OSError:
        return  # a store this user may read but not write: listings read journals whole
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            write_all(fd, data)
            if st.st_size > len(data):
                os.ftruncate(fd, len(data))
    except OSError:
        pass
    finally:
        os.close(fd)


def unfold(summary: Summary, data: bytes, where: str, execution_id: str) -> tuple[Summary, int]:
    """The summary of the journal that is `summary`'s bytes followed by `data`: the complete
    lines of `data` are checked (section 2, and each record's kind and fields) and their last
    lifecycle record gives the status. Returns it and the bytes of `data` it covers (a torn
    last line is left out).

    Raises:
        JournalCorruptError: for any line that does not check out.
    """
    end = data.rfind(b"\n") + 1
    lines = data[: end - 1].split(b"\n") if end else []
    found = check_lines(lines, where, execution_id, summary.records, summary.size)
    status = summary.status
    for record in found:
        problem = R.field_problem(record)
        if problem is not None:
            raise JournalCorruptError(where, record["seq"] + 1, -1, problem)
        status = R.LIFECYCLE.get(record["kind"], status)
    if not found:
        return summary, 0
    tail = tail_of(data[:end]) or ""
    grown = Summary(
        summary.ino, summary.size + end, 0, tail, summary.records + len(found), str(status), summary.workflow,
        summary.created, summary.parent, summary.schedule,
    )
    return grown, end


def from_header(
    header: dict[str, Any], st: os.stat_result, size: int, tail: str, records: int, status: str
) -> Summary:
    """The summary of a journal of `size` bytes and `records` records, whose file's status is
    `st` and whose header is `header`."""
    parent = header.get("parent")
    fired = header.get("schedule")
    name = fired.get("name") if isinstance(fired, dict) else None
    return Summary(
        st.st_ino, size, st.st_mtime_ns, tail, records, status, str(header.get("workflow", "")),
        str(header.get("created", "")), parent.get("execution_id") if isinstance(parent, dict) else None,
        name if isinstance(name, str) else None,
    )
