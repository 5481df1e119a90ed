"""Only this module reads and writes journal bytes (SPEC.md, section "Journal format").

A journal is one file of lines. Each line is a JSON object whose last member is a CRC-32 of
every byte before it, seeded with the CRC-32 of the execution id, so a line copied from another
execution fails its check. Readers never change a file; `JournalWriter.open` cuts a torn last
line (keeping the cut bytes in a side file) and nothing else.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from flux._engine.errors import DurabilityError, JournalCorruptError, RecordTooLargeError, UnsafePathError
from flux._engine.records import KINDS as RECORD_KINDS
from flux._engine.records import LIFECYCLE, field_problem

__all__ = [
    "BufferedWriter",
    "DURABILITY_MODES",
    "JournalRead",
    "Known",
    "LineOffsets",
    "Records",
    "check_journal",
    "check_lines",
    "encode_line",
    "encode_record_line",
    "read_journal",
    "read_regular_file",
    "seed_for",
    "write_all",
]

FORMAT_VERSION = 1
DURABILITY_MODES = ("fsync", "os")
FILE_MODE = 0o600
# One record (one line) at most; larger values belong in output storage. FLUX_MAX_RECORD_BYTES
# changes it for the process.
MAX_RECORD_BYTES = int(os.environ.get("FLUX_MAX_RECORD_BYTES", str(1 << 20)))

_CRC_OPEN = b',"crc":"'
_SUFFIX_LEN = len(_CRC_OPEN) + 8 + 2  # ,"crc":"xxxxxxxx"}
_HEX = b"0123456789abcdef"


def write_all(fd: int, data: bytes, write: Callable[[int, bytes | memoryview], int] = os.write) -> None:
    """Writes all of `data` to `fd` (a short write goes on from where it stopped); a write that
    makes no progress is an OSError, never a loop."""
    written = write(fd, data)  # the commonest case: all of it at once
    if written == len(data):
        return
    if written <= 0:
        raise OSError(errno.EIO, "write returned no progress")
    view = memoryview(data)[written:]
    while view:
        written = write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "write returned no progress")
        view = view[written:]


def seed_for(execution_id: str) -> int:
    """The CRC-32 seed of an execution's lines."""
    return zlib.crc32(execution_id.encode("utf-8"))


_dumps = orjson.dumps
_crc32 = zlib.crc32


def encode_line(record: dict[str, Any], seed: int) -> bytes:
    """The exact bytes of one journal line, newline included."""
    return encode_line_body(_dumps(record), seed)


def encode_record_line(record: dict[str, Any], seed: int) -> bytes:
    """`encode_line`, refusing a record over the size limit (SPEC.md 4.8).

    Raises:
        RecordTooLargeError: naming the record's kind and the limit.
    """
    prefix = _dumps(record)[:-1]  # encode_line, inline: it runs twice per task
    line = prefix + b',"crc":"%08x"}\n' % _crc32(prefix, seed)
    if len(line) > MAX_RECORD_BYTES:
        what = "workflow input" if record.get("kind") == "header" else f"{record.get('kind')} record"
        raise RecordTooLargeError(
            f"a {what} of {len(line)} bytes is over the limit of {MAX_RECORD_BYTES} bytes for one journal line; "
            "keep large values out of the journal (output_storage=True for results; pass a reference as input)",
            type_name="record",
            where=str(record.get("call_id", record.get("kind", ""))),
        )
    return line


def encode_line_body(body: bytes, seed: int) -> bytes:
    """`encode_line` of a record already written as a JSON object (`body`)."""
    prefix = body[:-1]
    return prefix + b',"crc":"%08x"}\n' % _crc32(prefix, seed)


def checks_out(line: bytes, seed: int) -> bool:
    """Whether `line` ends with the checksum member of its own bytes (a trailing newline allowed)."""
    n = len(line) - 1 if line.endswith(b"\n") else len(line)
    if n < _SUFFIX_LEN + 2 or line[n - _SUFFIX_LEN : n - 10] != _CRC_OPEN or line[n - 2 : n] != b'"}':
        return False
    digits = line[n - 10 : n - 2]
    if digits.strip(_HEX):
        return False
    # Through a view: a snapshot is megabytes long, and a slice would copy it.
    return _crc32(memoryview(line)[: n - _SUFFIX_LEN], seed) == int(digits, 16)


class LineOffsets(Sequence[int]):
    """The byte offset of each complete line of a journal, by seq.

    The lines of a prefix already known to be good (see `Known`) are found only when one of
    them is first asked for: a run that never looks at them never pays for finding them.
    """

    __slots__ = ("_data", "_head", "_head_lines", "_head_size", "_tail", "append")

    def __init__(self, data: bytes = b"", head_lines: int = 0, head_size: int = 0) -> None:
        self._data = data
        self._head: array[int] | None = None if head_lines else array("q")
        self._head_lines = head_lines
        self._head_size = head_size  # bytes of those lines (0: not known)
        self._tail = array("q")
        self.append = self._tail.append  # the offset of the next line read

    def _find_head(self) -> array[int]:
        head = array("q")
        find = self._data.find
        pos = 0
        for _ in range(self._head_lines):
            head.append(pos)
            pos = find(b"\n", pos) + 1
        self._head = head
        return head

    def __len__(self) -> int:
        return self._head_lines + len(self._tail)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if i < self._head_lines:
            head = self._head
            if head is None:
                if i < 4:  # the header's lines: found without indexing the whole prefix
                    pos = 0
                    for _ in range(i):
                        pos = self._data.find(b"\n", pos) + 1
                    return pos
                back = self._head_lines - i
                if back <= 64 and self._head_size:
                    # One of the prefix's last lines (a pause waiting at its end, say): found
                    # from the prefix's end, again without indexing the whole prefix.
                    pos = self._head_size - 1  # the newline that ends the prefix
                    rfind = self._data.rfind
                    for _ in range(back):
                        pos = rfind(b"\n", 0, pos)
                    return pos + 1
                head = self._find_head()
            return head[i]
        return self._tail[i - self._head_lines]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable: equal by contents


@dataclass
class Known:
    """A prefix of a journal already checked and indexed, as a replay snapshot records it: its
    size in bytes, its number of records and the CRC-32 of its bytes. If the journal still starts
    with exactly those bytes, `read_journal` calls `accept()` and, when it returns True, checks
    and visits only the lines after it; otherwise it reads the whole journal as if nothing were
    known."""

    size: int
    records: int
    crc: int
    accept: Callable[[], bool]  # False: what vouched for the prefix turned out unusable


class Records(Sequence[dict[str, Any]]):
    """A journal's records in seq order, as dicts.

    Records read from the file are kept as the file's bytes and parsed again each time one is
    asked for: as dicts they would take four times the file's size, and a run needs few of them
    once its replay index is built. Records appended since are kept as they were written. Each
    access to a read record gives a new dict, so changing it changes nothing here.
    """

    __slots__ = ("_data", "_offsets", "_end", "_header", "_added", "append")

    def __init__(self, data: bytes = b"", offsets: Sequence[int] = (), end: int = 0) -> None:
        self._data = data
        self._offsets = offsets  # start of each read record's line
        self._end = end  # end of the last read line, its newline included
        self._header: dict[str, Any] | None = None
        self._added: list[dict[str, Any]] = []
        self.append = self._added.append  # adds a record written since

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> Records:
        """Records that are all in memory already (a journal just created)."""
        made = cls()
        made._added.extend(records)
        return made

    def _parse(self, i: int) -> dict[str, Any]:
        if i == 0 and self._header is not None:
            return self._header
        offsets = self._offsets
        start = offsets[i]
        stop = offsets[i + 1] if i + 1 < len(offsets) else self._end
        record: dict[str, Any] = orjson.loads(memoryview(self._data)[start : stop - 1])
        del record["crc"]
        if i == 0:
            self._header = record
        return record

    def __len__(self) -> int:
        return len(self._offsets) + len(self._added)

    @property
    def read_count(self) -> int:
        """How many of the records were read from the journal's bytes (the rest were appended
        since)."""
        return len(self._offsets)

    def raw(self, start: int = 0, stop: int | None = None) -> bytes:
        """The journal's exact bytes of records `start` to `stop` (excluded; the last record
        read when None), newlines included: what the store holds, without parsing or writing
        any record again. Records appended since the journal was read are not in it.

        Raises:
            IndexError: for a `start` or `stop` outside 0 to `read_count`.
        """
        count = len(self._offsets)
        stop = count if stop is None else stop
        if not 0 <= start <= stop <= count:
            raise IndexError(f"records {start} to {stop} of {count} read")
        if start == stop:
            return b""
        end = self._offsets[stop] if stop < count else self._end
        return self._data[self._offsets[start] : end]

    def tail(self, size: int) -> bytes:
        """The last `size` bytes of the records read (fewer if there are not as many)."""
        return self._data[max(0, self._end - size) : self._end]

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self._offsets)
        if i < 0:
            i += n + len(self._added)
            if i < 0:
                raise IndexError("record index out of range")
        if i < n:
            return self._parse(i)
        return self._added[i - n]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self._offsets)):
            yield self._parse(i)
        yield from self._added

    def __reversed__(self) -> Iterator[dict[str, Any]]:
        yield from reversed(self._added)
        for i in range(len(self._offsets) - 1, -1, -1):
            yield self._parse(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, Records)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable: equal by contents

    def __repr__(self) -> str:
        return f"<Records: {len(self._offsets)} read, {len(self._added)} appended>"


# Handed each batch of checked records and the line offsets of every record read so far.
Visit = Callable[[list[dict[str, Any]], Sequence[int]], None]


@dataclass
class JournalRead:
    """What a journal holds: its valid records, and the torn tail a writer would cut."""

    path: str
    records: Sequence[dict[str, Any]]
    offsets: Sequence[int]  # byte offset of each record's line
    valid_size: int  # bytes up to and including the last complete line
    torn: bytes = b""  # bytes after the last complete line

    def line_of(self, seq: int) -> int:
        """1-based line number of the record with this seq."""
        return seq + 1


def _corrupt(path: str, line: int, offset: int, problem: str) -> JournalCorruptError:
    return JournalCorruptError(path, line, offset, problem)


_CHUNK_BYTES = 1 << 20  # bytes of lines checked and parsed at a time
_KIND_NAMES: dict[str, str] = {k: k for k in RECORD_KINDS}


def read_journal(path: str, execution_id: str, visit: Visit | None = None, known: Known | None = None) -> JournalRead:
    """Reads and checks the journal file at `path` without changing it (`check_journal`).

    Raises:
        JournalCorruptError: on anything but a torn last line.
        FileNotFoundError: when there is no such file.
        UnsafePathError: when the path is a symbolic link or not a regular file (a FIFO, a
            directory): it is never followed, opened for long, or waited on.
    """
    return check_journal(read_regular_file(path), path, execution_id, visit=visit, known=known)


def read_regular_file(path: str) -> bytes:
    """The bytes of a regular file, opened without following a link and without blocking (a
    FIFO planted in its place is refused, not waited on).

    Raises:
        FileNotFoundError, UnsafePathError (a link or not a regular file), OSError.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePathError(
                errno.ELOOP, f"{path}: is a symbolic link; journals are never read through links, remove it"
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(errno.EINVAL, f"{path}: is not a regular file; remove it or restore the journal")
        # The whole file in one read (a tenth of the time of many reads joined, for a journal of
        # tens of megabytes); what it has grown by since, or a short read, in more.
        chunks: list[bytes] = []
        want = st.st_size + 1
        while True:
            chunk = os.read(fd, want)
            if not chunk:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.append(chunk)
            want = 1 << 20
    finally:
        os.close(fd)


def check_journal(
    data: bytes, where: str, execution_id: str, visit: Visit | None = None, known: Known | None = None
) -> JournalRead:
    """Checks every line of a journal's bytes; `where` names it in errors (a path, a URL).

    `visit`, when given, is handed the parsed records a batch at a time, in seq order, as soon
    as they are checked, with the line offsets of all records so far; this is how a replay index
    is built without keeping every record as a dict. If the journal turns out damaged further
    on, the error is raised after some batches were visited. With `known`, a prefix checked
    before is taken as it is when its bytes are unchanged (see `Known`).

    Raises:
        JournalCorruptError: on anything but a torn last line (a final line with no newline).
    """
    path = where
    seed = seed_for(execution_id)
    end = data.rfind(b"\n") + 1
    torn = data[end:]
    if end == 0:
        # The header is written whole before the journal appears (SPEC.md 2.2), so a journal
        # without a complete first line is damage, never a torn tail to cut.
        # (With durability "os" nothing is fsynced, the header included: a power loss can leave
        # such a journal empty. Nothing of the execution was durable then, and it is said so.)
        raise _corrupt(
            path, 1, 0,
            "journal is empty (no header): emptied, or created with durability \"os\" and lost in a power "
            "loss; nothing of the execution is left, remove the file to use its id again"
            if not torn else "journal has no complete header line",
        )
    pos = 0
    offsets = LineOffsets(data)
    if known is not None and _starts_with(data, end, known) and known.accept():
        pos = known.size
        offsets = LineOffsets(data, known.records, known.size)
    while pos < end:
        stop = data.rfind(b"\n", pos, pos + _CHUNK_BYTES) + 1
        if stop <= pos:  # one line longer than a chunk
            stop = data.index(b"\n", pos) + 1
        lines = data[pos : stop - 1].split(b"\n")
        seq = len(offsets)
        records = _parse_fast(lines, seed, seq)
        hole = -1
        if records is None:
            # The line-by-line check names the first damaged line; if it finds none, the fast
            # check was only too strict and its answer stands.
            try:
                records = _parse_slow(path, lines, pos, seq, seed, execution_id)
            except JournalCorruptError as err:
                hole = _unwritten_from(data, err)
                if hole < 0:
                    raise
                lines = data[pos:hole].split(b"\n")[:-1] if hole > pos else []
                records = _parse_slow(path, lines, pos, seq, seed, execution_id) if lines else []
        if seq == 0 and records:
            _check_header(path, 0, records[0], execution_id)
        for line in lines:
            offsets.append(pos)
            pos += len(line) + 1
        if visit is not None and records:
            visit(records, offsets)
        if hole >= 0:
            # Bytes that were never written (a power loss kept later pages, not this one): no
            # record from here on can have been acknowledged. A torn tail (SPEC.md 2.2).
            end, torn = hole, data[hole:]
            break
    read = Records(data, offsets, end)
    return JournalRead(path, read, offsets, end, torn)


def check_lines(lines: list[bytes], where: str, execution_id: str, first_seq: int, offset: int) -> list[dict[str, Any]]:
    """Checks complete journal lines (without their newlines) that follow `first_seq` records
    and `offset` bytes of a journal, as `check_journal` checks them; returns their records.

    Raises:
        JournalCorruptError: naming the first line that does not check out.
    """
    seed = seed_for(execution_id)
    records = _parse_fast(lines, seed, first_seq) if first_seq > 0 else None
    if records is None:
        records = _parse_slow(where, lines, offset, first_seq, seed, execution_id)
    return records


def _unwritten_from(data: bytes, err: JournalCorruptError) -> int:
    """Where a damaged line begins, when it holds a NUL byte (a page never written: Flux never
    writes one, JSON escapes it); -1 when the damage is anything else, or is in the header."""
    start = err.offset
    if start <= 0:
        return -1
    stop = data.find(b"\n", start)
    return start if b"\x00" in data[start : stop if stop >= 0 else len(data)] else -1


def _starts_with(data: bytes, end: int, known: Known) -> bool:
    """Whether the journal still begins with the known prefix, byte for byte (by its CRC-32)."""
    size = known.size
    return (
        0 < size <= end
        and known.records > 0
        and data[size - 1 : size] == b"\n"
        and zlib.crc32(memoryview(data)[:size]) == known.crc
    )


def _parse_fast(lines: list[bytes], seed: int, first_seq: int) -> list[dict[str, Any]] | None:
    """The checks of `_parse_slow`, made over many lines at a time; None when any fails.

    Every line is still checked: its checksum digits, its CRC, that it parses, that writing the
    parsed record gives back its exact bytes, and its seq.
    """
    crc32 = zlib.crc32
    cut = -_SUFFIX_LEN
    try:
        if any(line[cut:-10] != _CRC_OPEN or line[-2:] != b'"}' or len(line) < _SUFFIX_LEN + 2 for line in lines):
            return None
        if b"".join([line[-10:-2] for line in lines]).translate(None, _HEX):
            return None
        if [crc32(line[:cut], seed) for line in lines] != [int(line[-10:-2], 16) for line in lines]:
            return None
        body = b"[" + b",".join(lines) + b"]"
        records: list[dict[str, Any]] = orjson.loads(body)
        if orjson.dumps(records) != body:
            return None
    except (ValueError, orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    kinds = _KIND_NAMES
    for seq, record in enumerate(records, first_seq):
        if type(record) is not dict or record.get("seq") != seq or type(record.get("seq")) is not int:
            return None
        kind = record.get("kind")
        if type(kind) is not str:
            return None
        # Verified: the checksum has done its work; the record no longer carries it. Kinds are
        # shared strings rather than one copy per record.
        del record["crc"]
        record["kind"] = kinds.get(kind, kind)
    return records


def _parse_slow(
    path: str, lines: list[bytes], pos: int, seq: int, seed: int, execution_id: str
) -> list[dict[str, Any]]:
    """Checks lines one at a time; raises JournalCorruptError naming the first damaged one."""
    records: list[dict[str, Any]] = []
    loads = orjson.loads
    dumps = orjson.dumps
    crc32 = zlib.crc32
    for line in lines:
        lineno = seq + 1
        n = len(line)
        if n < _SUFFIX_LEN + 2 or line[n - _SUFFIX_LEN : n - 10] != _CRC_OPEN or line[-2:] != b'"}':
            raise _corrupt(path, lineno, pos, "line does not end with its checksum member")
        prefix = line[: n - _SUFFIX_LEN]
        digits = line[n - 10 : n - 2]
        if digits.strip(_HEX):
            raise _corrupt(path, lineno, pos, "checksum is not 8 lowercase hex digits")
        stored = int(digits, 16)
        if crc32(prefix, seed) != stored:
            raise _corrupt(path, lineno, pos, "checksum mismatch (damaged line, or a line from another execution)")
        try:
            record = loads(line)
        except orjson.JSONDecodeError as err:
            raise _corrupt(path, lineno, pos, f"invalid JSON: {err}") from None
        if type(record) is not dict:
            raise _corrupt(path, lineno, pos, "line is not a JSON object")
        # A line with a valid checksum can still be one no Flux wrote (duplicate keys, a number
        # orjson rounds, spaces): parsers disagree on such lines, so only the exact bytes that
        # writing the parsed record gives back are accepted.
        try:
            canonical = dumps(record) == line
        except orjson.JSONEncodeError:
            canonical = False
        if not canonical:
            raise _corrupt(
                path, lineno, pos, "line is not as Flux writes it (duplicate keys, a rounded number, spaces)"
            )
        found = record.get("seq")
        if found != seq or type(found) is not int:  # `true == 1` in Python: the type is checked too
            raise _corrupt(path, lineno, pos, f"expected seq {seq}, found {found!r}")
        if seq == 0:
            _check_header(path, pos, record, execution_id)
        elif type(record.get("kind")) is not str:
            raise _corrupt(path, lineno, pos, "record has no kind")
        del record["crc"]
        records.append(record)
        seq += 1
        pos += n + 1
    return records


def _check_header(path: str, pos: int, record: dict[str, Any], execution_id: str) -> None:
    if record.get("kind") != "header":
        raise _corrupt(path, 1, pos, "first record is not a header")
    version = record.get("format")
    if version != FORMAT_VERSION:
        raise _corrupt(
            path, 1, pos, f"format version {version!r} is not supported (this Flux reads version {FORMAT_VERSION})"
        )
    if record.get("execution_id") != execution_id:
        raise _corrupt(path, 1, pos, f"header names execution {record.get('execution_id')!r}, not {execution_id!r}")
    problem = field_problem(record)
    if problem is not None:
        raise _corrupt(path, 1, pos, problem)


class BufferedWriter:
    """What every store's writer shares: records are encoded to lines when appended and kept in
    a buffer until the store writes them (`sync` or `flush`, group commit: every record
    appended since the last write shares it). After a failed write the writer refuses all
    further work (SPEC.md 6). Subclasses write the buffer: `_write(data, first_seq)`.
    """

    is_async = False  # True when the buffer is written by awaiting `flush()`, not by `sync()`

    def __init__(self, where: str, execution_id: str, next_seq: int, durability: str) -> None:
        self.where = where  # the journal's place, for messages (a path, a URL)
        self.execution_id = execution_id
        self.next_seq = next_seq
        self.synced_seq = next_seq - 1  # seq of the last record known to be written (and synced)
        self.durability = durability
        self.seed = seed_for(execution_id)
        self._pending: list[bytes] = []
        self._broken: BaseException | None = None
        # The last record appended that set the execution's status (SPEC.md 2.1): its seq and
        # kind, or None when this writer appended none.
        self.lifecycle: tuple[int, str] | None = None

    def append(self, record: dict[str, Any]) -> int:
        """Buffers a record (its `seq` is set here) and returns its seq.

        Raises:
            RecordTooLargeError: when the record's line is over the limit (nothing is buffered).
            DurabilityError: when an earlier write failed.
        """
        if self._broken is not None:
            raise DurabilityError(f"{self.where}: an earlier write failed; the run cannot go on") from self._broken
        seq = self.next_seq
        record["seq"] = seq
        self._pending.append(encode_record_line(record, self.seed))
        self.next_seq = seq + 1
        if record["kind"] in LIFECYCLE:
            self.lifecycle = (seq, record["kind"])
        return seq

    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def discard(self) -> None:
        """Drops what is buffered: engine trouble means nothing more is written (SPEC.md 4.2)."""
        self.next_seq -= len(self._pending)
        self._pending.clear()

    def sync(self) -> None:
        """Writes every buffered record and, in `fsync` durability, waits until it is durable.

        Raises:
            DurabilityError: when the write fails; the writer is then unusable.
        """
        if self._broken is not None:
            raise DurabilityError(f"{self.where}: an earlier write failed; the run cannot go on") from self._broken
        pending = self._pending
        if not pending:
            return
        first = self.next_seq - len(pending)
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._write(data, first)
        self.synced_seq = self.next_seq - 1

    async def flush(self) -> None:
        """`sync` for writers whose store is reached by awaiting (`is_async`)."""
        self.sync()

    def _write(self, data: bytes, first_seq: int) -> None:
        raise NotImplementedError

    def position(self) -> tuple[int, int, int]:
        """(bytes, records, CRC-32 of those bytes) of the journal as written so far: what a
        replay snapshot vouches for (SPEC.md 2.3)."""
        raise NotImplementedError

    def close(self) -> None:
        pass
