"""After a power loss the disk may hold the synced prefix of a journal, then a page that was
never written (zeros), then later pages: nothing from the first unwritten byte on can have been
acknowledged, so it is a torn tail, cut and kept aside, never damage that stops every resume."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from flux import ExecutionContext, task, workflow
from flux._engine.errors import JournalCorruptError
from flux._engine.stores.files import FileStore
from flux.client import Client
from tests.support.cli import invoke

BODIES: list[int] = []


@task
async def step(i: int) -> int:
    BODIES.append(i)
    return i * i


@workflow
async def squares(ctx: ExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await step(i)
    return total


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("where", ["line start", "middle of a line"])
def test_a_page_never_written_cuts_the_journal_there_and_the_run_resumes(home: Path, where: str) -> None:
    done = squares.run(8)
    journal = Path(done.journal_path)
    lines = _lines(journal)
    keep = 8  # header, started, and the first three calls: what the last fsync covered
    offset = sum(len(line) for line in lines[:keep])
    hole_at = offset if where == "line start" else offset + 10
    data = bytearray(journal.read_bytes())
    data[hole_at : hole_at + 60] = b"\x00" * 60  # a page that never reached the disk
    journal.write_bytes(bytes(data))  # ... while the pages after it did
    store = FileStore(str(home))
    read = store.read(journal.stem)
    assert len(read.records) == keep and read.valid_size == offset
    assert Client(str(home)).view(journal.stem).status == "interrupted"
    BODIES.clear()
    again = squares.run(execution_id=journal.stem)
    assert again.status == "completed" and again.output == sum(i * i for i in range(8))
    assert BODIES == [3, 4, 5, 6, 7]  # the calls recorded after the hole ran again
    assert (journal.parent / f"{journal.stem}.torn").read_bytes().startswith(b"%d " % offset)
    kinds = [orjson.loads(line)["kind"] for line in _lines(journal)]
    assert kinds.count("task_started") == 8 and kinds[-1] == "workflow_completed"


def test_damage_without_an_unwritten_page_is_still_damage(home: Path) -> None:
    done = squares.run(3)
    journal = Path(done.journal_path)
    data = bytearray(journal.read_bytes())
    data[len(_lines(journal)[0]) + 12] ^= 0x01  # a flipped bit in the second line
    journal.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError, match=":2: "):
        FileStore(str(home)).read(journal.stem)


def test_a_run_with_os_durability_makes_no_fsync_not_even_for_its_new_journal(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`os` promises nothing across a power loss (SPEC.md 6), so creating the journal pays for no
    fsync either; `fsync` makes the header durable, then the directory entry, then each sync."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    squares.run(1, durability="os")  # the store's directories are made, and made durable, once
    monkeypatch.setattr(os, "fsync", fsync)
    assert squares.run(3, durability="os").output == 5
    assert synced == []
    done = squares.run(3, durability="fsync")
    journal = os.path.realpath(done.journal_path)
    assert synced[:2] == [f"{journal}.new-{os.getpid()}", os.path.dirname(journal)], synced
    assert len(synced) > 2 and set(synced[2:]) == {journal}, synced


def test_an_empty_journal_is_damage_at_its_first_line_that_says_what_to_do(home: Path) -> None:
    """What a power loss can leave of a journal created with `os` durability: no byte of it. It is
    reported, one line naming the file and what to do, and left as it is."""
    done = squares.run(2, durability="os")
    journal = Path(done.journal_path)
    journal.write_bytes(b"")
    with pytest.raises(JournalCorruptError, match=r":1: .*journal is empty"):
        FileStore(str(home)).read(journal.stem)
    shown = invoke("show", done.execution_id)
    assert shown.exit_code == 2, shown.output
    said = shown.stderr.strip()
    assert said.count("\n") == 0 and f"{journal}:1" in said, said
    assert 'durability "os"' in said and "remove the file to use its id again" in said, said
    listed = invoke("list")
    assert listed.exit_code == 0 and done.execution_id in listed.output, listed.output
    assert journal.read_bytes() == b""
    journal.unlink()
    assert squares.run(2, execution_id=done.execution_id, durability="os").output == 1
