"""Test-only faults for the file store's writes: a SIGKILL, an I/O error or a short write at a
chosen point (SPEC.md, section "Fault battery"). Nothing here runs in normal use.

The hooks are armed only when `FLUX_TEST_FAULTS` is set (to a rule list, possibly `none`) when
this module is first imported: engine/stores/files.py reads `ACTIVE` once, so an unarmed process
pays for one module-level boolean test at each hooked place and nothing else. The rules of an
armed process can be replaced later with `configure`, which a forked child uses to get its own
faults.

A rule is `<action>:<n>:<point>[:<errno name>]`; rules are separated by commas:

    kill:3:after_write        SIGKILL this process the 3rd time a sync has written, before fsync
    fail:2:after_write:EIO    the 2nd fsync fails with EIO (raised where fsync would run)
    fail:1:write:ENOSPC       the 1st write of journal bytes fails with ENOSPC
    short:4:write             the 4th write writes only half of its bytes (then writing goes on)
    kill:1:torn_truncate      SIGKILL once a torn tail is kept in `.torn`, before the journal is cut
    fail:1:blob_write:ENOSPC  the 1st write of a stored output fails with ENOSPC

The n-th time counts per process and per point. `kill` stops the process before the operation
of its point, `fail` raises `OSError` in its place, and `short` (at write points only) writes
half of the bytes. Points (`POINTS`):

    journal syncs      before_write, after_write, after_fsync (the sync is complete; in
                       durability "os" there is no fsync and this is simply its end), write
                       (each `write` call, so a short write and the write of the rest count twice)
    journal creation   create_write (the header, into `<id>.jsonl.new-<pid>`), create_fsync,
                       create_link (the link to `<id>.jsonl`), create_dirsync (the link is
                       made; the directory's fsync comes next)
    torn-tail repair   torn_write (the entry of `.torn`), torn_truncate (`.torn` is synced; the
                       journal is cut next)
    output storage     blob_write, blob_fsync, blob_rename (the temporary file renamed to its name)
    task cache         cache_write, cache_fsync, cache_rename
    replay snapshot    snapshot_write (`<id>.index.new`), snapshot_rename
    ownership          lock_write (the holder written into `<id>.lock`)
    cancellation       cancel_write (`<id>.cancel` created by the process that asks)
    divergence kept    diverged_write, diverged_fsync, diverged_rename (`<id>.diverged`)
    schedules          schedule_fired (a fire's execution exists, the schedule's state is not
                       written yet)

`FLUX_TEST_SYNC_LOG=<path>` (or `configure(sync_log=...)`) appends one line per completed sync,
`<execution_id> <journal size> <last synced seq>`, so a test knows which bytes were acknowledged.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIVE", "POINTS", "WRITE_POINTS", "FaultSpecError", "configure", "reach", "write", "writer"]

WRITE_POINTS = (
    "write", "create_write", "torn_write", "blob_write", "cache_write", "snapshot_write", "diverged_write",
)
POINTS = (
    "before_write", "after_write", "after_fsync", "write",
    "create_write", "create_fsync", "create_link", "create_dirsync",
    "torn_write", "torn_truncate",
    "blob_write", "blob_fsync", "blob_rename",
    "cache_write", "cache_fsync", "cache_rename",
    "snapshot_write", "snapshot_rename",
    "lock_write",
    "cancel_write",
    "diverged_write", "diverged_fsync", "diverged_rename",
    "schedule_fired",
)
_ACTIONS = ("kill", "fail", "short")

ACTIVE: bool = "FLUX_TEST_FAULTS" in os.environ or "FLUX_TEST_SYNC_LOG" in os.environ


class FaultSpecError(ValueError):
    """A fault rule that cannot be understood."""


@dataclass(frozen=True)
class _Rule:
    action: str
    n: int
    point: str
    errno: int = errno.EIO


_rules: list[_Rule] = []
_counts: dict[str, int] = {}
_sync_log: str | None = None


def parse(text: str) -> list[_Rule]:
    """The rules of a `FLUX_TEST_FAULTS` value (`none` or empty: no rules)."""
    rules = []
    for item in text.split(","):
        item = item.strip()
        if not item or item == "none":
            continue
        parts = item.split(":")
        if len(parts) not in (3, 4) or parts[0] not in _ACTIONS or parts[2] not in POINTS or not parts[1].isdigit():
            raise FaultSpecError(
                f"fault rule {item!r} is not <kill|fail|short>:<n>:<point>[:<errno>]; points: {', '.join(POINTS)}"
            )
        code = errno.EIO
        if len(parts) == 4:
            code = getattr(errno, parts[3], -1)
            if parts[0] != "fail" or code == -1:
                raise FaultSpecError(f"fault rule {item!r}: only fail takes an errno name such as EIO or ENOSPC")
        if parts[0] == "short" and parts[2] not in WRITE_POINTS:
            raise FaultSpecError(f"fault rule {item!r}: a short write happens at a write point: {WRITE_POINTS}")
        rules.append(_Rule(parts[0], int(parts[1]), parts[2], code))
    return rules


def configure(rules: str = "none", sync_log: str | None = None) -> None:
    """Replaces the rules and restarts the counters (for a forked child that needs its own faults)."""
    global _rules, _sync_log
    _rules = parse(rules)
    _counts.clear()
    _sync_log = sync_log


def _count(point: str) -> list[_Rule]:
    n = _counts.get(point, 0) + 1
    _counts[point] = n
    return [r for r in _rules if r.point == point and r.n == n]


def reach(point: str, writer: Any = None) -> None:
    """Called by the file store at `point`; kills the process or raises as the rules say.
    `writer` is the journal writer at the points of a sync."""
    for rule in _count(point):
        if rule.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif rule.action == "fail":
            raise OSError(rule.errno, os.strerror(rule.errno))
    if point == "after_fsync" and _sync_log is not None:
        fd = os.open(_sync_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"%s %d %d\n" % (writer.execution_id.encode(), writer.end, writer.synced_seq))
        finally:
            os.close(fd)


def write(fd: int, data: bytes | memoryview, point: str = "write") -> int:
    """`os.write` at a write point, failing, writing short or killing as the rules say."""
    for rule in _count(point):
        if rule.action == "fail":
            raise OSError(rule.errno, os.strerror(rule.errno))
        if rule.action == "short" and len(data) > 1:
            return os.write(fd, data[: len(data) // 2])
        if rule.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
    return os.write(fd, data)


def writer(point: str) -> Callable[[int, bytes | memoryview], int]:
    """`write` at `point`, as a function of (fd, data) like `os.write`."""

    def write_at(fd: int, data: bytes | memoryview) -> int:
        return write(fd, data, point)

    return write_at


if ACTIVE:
    configure(os.environ.get("FLUX_TEST_FAULTS", "none"), os.environ.get("FLUX_TEST_SYNC_LOG"))
