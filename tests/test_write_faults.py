"""A write of the file store that fails (a full disk, an I/O error, a short write) leaves nothing
half done: no temporary file, no half entry, no lock still held by the failing process; the
execution can be run once the fault is gone. Faults come from the store's own hooks
(engine/faults.py), armed in this process by the `armed_faults` fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flux import ExecutionContext, task, workflow
from flux._engine import faults
from flux.errors import DurabilityError, StoreError
from flux.tasks import pause


@task
async def double(x: int) -> int:
    return 2 * x


@workflow
async def gated(ctx: ExecutionContext[int]) -> int:
    got = await double(ctx.input)
    return got + await pause("gate")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_lock_file_that_cannot_be_written_leaves_the_execution_unlocked(home: Path, armed_faults: None) -> None:
    ctx = gated.run(3)
    fds = _open_fds()
    faults.configure("fail:1:lock_write:ENOSPC")
    with pytest.raises(StoreError, match="No space left on device"):
        gated.resume(ctx.execution_id, 1)
    assert _open_fds() == fds  # the locked descriptor was closed, releasing its flock
    faults.configure("none")
    assert gated.resume(ctx.execution_id, 1).output == 7  # not ExecutionLockedError by this very process


@pytest.mark.parametrize(
    "rule", ["fail:1:create_write:ENOSPC", "short:1:create_write", "fail:1:create_fsync:EIO", "fail:1:create_link:EIO"]
)
def test_a_journal_that_cannot_be_created_leaves_no_file_behind(home: Path, armed_faults: None, rule: str) -> None:
    faults.configure(rule)
    with pytest.raises(DurabilityError, match="cannot create the journal"):
        gated.run(3, execution_id="e1")
    left = sorted(p.name for p in (home / "executions").iterdir())
    assert left == ["e1.lock"]  # a lock file is harmless (SPEC.md 5); no half journal, no temporary file
    faults.configure("none")
    assert gated.run(3, execution_id="e1").status == "paused"
    assert gated.resume("e1", 1).output == 7


@pytest.mark.parametrize("rule", ["fail:1:snapshot_write:ENOSPC", "fail:1:snapshot_rename:EIO"])
def test_a_snapshot_that_cannot_be_written_leaves_no_file_behind(home: Path, armed_faults: None, rule: str) -> None:
    faults.configure(rule)
    ctx = gated.run(3, execution_id="e1")
    assert ctx.status == "paused"  # a snapshot only saves work: the run is not stopped
    assert sorted(p.name for p in (home / "executions").iterdir()) == [".list", "e1.jsonl", "e1.lock", "e1.summary"]
    faults.configure("none")
    assert gated.resume("e1", 1).output == 7


def test_a_torn_tail_that_cannot_be_kept_leaves_the_torn_file_and_the_journal_as_they_were(
    home: Path, armed_faults: None
) -> None:
    ctx = gated.run(3, execution_id="e1")
    journal = home / "executions" / "e1.jsonl"
    torn = home / "executions" / "e1.torn"
    torn.write_bytes(b"10 {\n")  # an earlier cut, kept
    with journal.open("ab") as fh:
        fh.write(b'{"seq":9,"kind"')
    before = journal.read_bytes()
    faults.configure("short:1:torn_write,fail:2:torn_write:ENOSPC")
    with pytest.raises(StoreError, match="No space left on device"):
        gated.resume("e1", 1)
    assert torn.read_bytes() == b"10 {\n"  # not half an entry, which the next one would run into
    assert journal.read_bytes() == before
    faults.configure("none")
    assert gated.resume(ctx.execution_id, 1).output == 7
    assert torn.read_bytes() == b'10 {\n%d {"seq":9,"kind"\n' % (len(before) - len(b'{"seq":9,"kind"'))
