"""After a power loss the disk may hold the synced prefix of a journal, then a page that was
never written (zeros), then later pages: nothing from the first unwritten byte on can have been
acknowledged, so it is a torn tail, cut and kept aside, never damage that stops every resume."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from flux import ExecutionContext, task, workflow
from flux._engine.errors import JournalCorruptError
from flux._engine.stores.files import FileStore
from flux.client import Client

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
