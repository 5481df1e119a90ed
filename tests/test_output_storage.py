"""Output storage and the record size limit: `output_storage=` keeps a result in a private
content-addressed blob beside the journal, replay reads it back, a missing or altered blob stops
the replay naming the file; a result over the record limit without output storage fails the task
with a message suggesting it."""

from __future__ import annotations

import datetime as dt
import hashlib
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux import ExecutionContext, task, workflow
from flux.domain.events import ExecutionEventType as E
from flux.errors import BlobError, ExecutionError, InvalidOptionError, RecordTooLargeError
from flux.output_storage import LocalFileStorage
from flux.tasks import pause
from tests.builtin_workflows import RAN, SEEN, ran, reset
from tests.support.journals import records


@pytest.fixture(autouse=True)
def _reset() -> None:
    reset()


@task.with_options(output_storage=LocalFileStorage())
async def big_text(n: int) -> str:
    ran()
    return "x" * n


@task.with_options(output_storage=True)
async def big_rows(n: int) -> list[dict[str, Any]]:
    ran()
    return [{"row": i, "when": dt.date(2026, 1, 1 + i % 28)} for i in range(n)]


@task
async def big_plain(n: int) -> str:
    ran()
    return "y" * n


@workflow
async def stores(ctx: ExecutionContext[int]) -> Any:
    text = await big_text(ctx.input)
    rows = await big_rows(3)
    SEEN.append((len(text), text[:3], rows))
    await pause("p")
    return [len(text), rows[2]]


@workflow.with_options(output_storage=True)
async def stored_output(ctx: ExecutionContext[int]) -> str:
    return "z" * ctx.input


@workflow
async def too_big(ctx: ExecutionContext[int]) -> Any:
    return len(await big_plain(ctx.input))


def _blob_of(record: dict[str, Any], home: Path) -> Path:
    return home / "blobs" / f"{record['value']['$blob']}.json"


def test_output_storage_writes_a_private_blob_and_the_journal_keeps_only_digest_and_size(home: Path) -> None:
    n = 2 * 1024 * 1024
    ctx = stores.run(n)
    assert ctx.status == "paused"
    assert SEEN == [(n, "xxx", [{"row": i, "when": dt.date(2026, 1, 1 + i)} for i in range(3)])]
    completed = [r for r in records(ctx) if r["kind"] == "task_completed"]
    for record in completed:
        assert set(record) == {"seq", "kind", "at", "call_id", "value", "crc"}
        assert set(record["value"]) == {"$blob", "size"}
        blob = _blob_of(record, home)
        data = blob.read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["value"]["$blob"]
        assert len(data) == record["value"]["size"]
        assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    assert orjson.loads(_blob_of(completed[0], home).read_bytes()) == "x" * n
    assert orjson.loads(_blob_of(completed[1], home).read_bytes())[2] == {"row": 2, "when": {"$date": "2026-01-03"}}
    assert stat.S_IMODE((home / "blobs").stat().st_mode) == 0o700
    assert sorted(p.name for p in (home / "blobs").iterdir()) == sorted(_blob_of(r, home).name for r in completed)
    assert Path(ctx.journal_path).stat().st_size < 4096  # 2 MiB stayed out of the journal
    values = [e.value for e in ctx.events if e.type == E.TASK_COMPLETED]
    assert len(values[0]) == n and values[1][0] == {"row": 0, "when": dt.date(2026, 1, 1)}


def test_replay_reads_stored_outputs_back(home: Path) -> None:
    first = stores.run(5000)
    RAN.clear()
    done = stores.resume(first.execution_id, "go")
    assert done.output == [5000, {"row": 2, "when": dt.date(2026, 1, 3)}]
    assert SEEN[1] == SEEN[0] and RAN == []


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_a_missing_or_altered_blob_stops_the_replay_with_blob_error_naming_the_file(home: Path, damage: str) -> None:
    first = stores.run(5000)
    blob = _blob_of(next(r for r in records(first) if r["kind"] == "task_completed"), home)
    if damage == "missing":
        blob.unlink()
    else:
        blob.write_bytes(blob.read_bytes().replace(b"xxxx", b"xxxy", 1))
    before = Path(first.journal_path).read_bytes()
    with pytest.raises(BlobError) as info:
        stores.resume(first.execution_id, "go")
    assert str(blob) in str(info.value)
    assert ("missing" if damage == "missing" else "altered") in str(info.value)
    assert Path(first.journal_path).read_bytes() == before  # nothing written
    assert RAN == [f"{first.execution_id}:1", f"{first.execution_id}:2"]  # no body ran on the resume


def test_a_workflows_output_can_go_to_output_storage(home: Path) -> None:
    from flux.output_storage import LocalFileStorage, OutputStorageReference

    ctx = stored_output.run(100)
    final = records(ctx)[-1]
    assert final["kind"] == "workflow_completed" and set(final["value"]) == {"$blob", "size"}
    # As in Flux, the run's output is the reference; the storage reads it.
    assert ctx.output == OutputStorageReference("local_file", final["value"]["$blob"], {"size": final["value"]["size"]})
    assert LocalFileStorage().retrieve(ctx.output) == "z" * 100
    again = stored_output.run(execution_id=ctx.execution_id)
    assert again.status == "completed" and again.output == ctx.output
    _blob_of(final, home).unlink()
    with pytest.raises(BlobError, match=str(_blob_of(final, home))):
        LocalFileStorage().retrieve(again.output)


def test_a_result_over_the_record_limit_without_output_storage_fails_suggesting_it(home: Path) -> None:
    ctx = too_big.run(1024 * 1024 + 1)
    assert ctx.status == "failed"
    assert isinstance(ctx.output, ExecutionError)
    inner = ctx.output.inner_exception
    assert isinstance(inner, RecordTooLargeError)
    assert "over the limit of 1048576 bytes" in str(inner) and "output_storage=True" in str(inner)
    failed = [r for r in records(ctx) if r["kind"] == "task_failed"]
    assert len(failed) == 1 and failed[0]["error"]["$error"].endswith("RecordTooLargeError")
    assert max(len(line) for line in Path(ctx.journal_path).read_bytes().splitlines()) < 1024 * 1024
    assert too_big.run(1000).output == 1000  # under the limit it is recorded as usual


def test_output_storage_option_is_validated_when_decorating() -> None:
    with pytest.raises(InvalidOptionError, match="output_storage='disk' must be True or a"):
        task.with_options(output_storage="disk")


def _no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp-" in p.name or ".new" in p.name]


def test_a_stored_output_that_cannot_be_written_stops_the_run_and_it_resumes_once_it_can(home: Path) -> None:
    from flux.errors import DurabilityError

    (home / "executions").mkdir(parents=True)
    (home / "blobs").write_text("in the way")  # every blob write fails, as on a full disk
    with pytest.raises(DurabilityError, match="writing the stored output failed"):
        stores.run(10)
    (journal,) = (home / "executions").glob("*.jsonl")
    kinds_written = [orjson.loads(line)["kind"] for line in journal.read_bytes().splitlines()]
    assert kinds_written[-1] == "task_started"  # the body ran; nothing else was recorded for it
    assert "workflow_failed" not in kinds_written
    assert _no_temporary_files(home)
    (home / "blobs").unlink()  # space is freed
    RAN.clear()
    resumed = stores.run(execution_id=journal.stem)
    assert resumed.status == "paused" and RAN  # the call ran again and its output was stored


@pytest.mark.slow
def test_a_full_disk_under_the_stored_outputs_is_durability_trouble_and_leaves_nothing(home: Path) -> None:
    import subprocess

    from flux.errors import DurabilityError

    blobs = home / "blobs"
    blobs.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(blobs)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"no small filesystem can be mounted here to fill up ({mounted.stderr.strip()})")
    try:
        blobs.chmod(0o700)
        with pytest.raises(DurabilityError, match="No space left on device"):
            stores.run(200_000)
        assert _no_temporary_files(blobs)
    finally:
        subprocess.run(["umount", str(blobs)], check=False)
    (journal,) = (home / "executions").glob("*.jsonl")
    assert orjson.loads(journal.read_bytes().splitlines()[-1])["kind"] == "task_started"
    resumed = stores.run(execution_id=journal.stem)
    assert resumed.status == "paused"


class Unrecordable:
    """A value whose encoding raises something other than EncodeError."""

    @property
    def __dataclass_fields__(self) -> Any:  # looks like a dataclass to the encoder, then fails
        raise RuntimeError("cannot be looked at")


@task
async def returns_trouble() -> Any:
    ran()
    return Unrecordable()


@workflow
async def handles_trouble(ctx: ExecutionContext[None]) -> str:
    from flux.errors import EncodeError

    try:
        await returns_trouble()
    except ExecutionError as err:
        assert isinstance(err.inner_exception, EncodeError)
        return f"recorded: {err.inner_exception}"
    return "no failure"


def test_a_failure_while_recording_a_result_is_the_tasks_recorded_failure(home: Path) -> None:
    from flux.debug import replay

    ctx = handles_trouble.run()
    assert ctx.status == "completed" and ctx.output.startswith("recorded: "), ctx.output
    failed = [r for r in records(ctx) if r["kind"] == "task_failed"]
    assert len(failed) == 1 and failed[0]["error"]["$error"] == "flux.errors:EncodeError"
    assert replay(ctx.journal_path).matches
