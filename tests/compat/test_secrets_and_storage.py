"""Secrets and output storage as Flux programs use them: SecretManager, the real value seen by
the workflow while only [secret:NAME] is written, a missing secret failing the task, and
output storages of the program's own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, task, workflow
from flux.errors import ExecutionError
from flux.output_storage import InlineOutputStorage, LocalFileStorage, OutputStorage, OutputStorageReference
from flux.secret_managers import SecretManager
from flux.tasks import pause
from tests.support.journals import records

CANARY = "s3cr3t-canary-9f1c"


def test_secret_manager_saves_lists_gets_and_removes(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUX_SECRETS_FILE", raising=False)
    monkeypatch.delenv("COMPAT_TOKEN", raising=False)
    manager = SecretManager.current()
    manager.save("COMPAT_TOKEN", "from-file")
    assert manager.all() == ["COMPAT_TOKEN"]
    assert (home / "secrets.json").stat().st_mode & 0o077 == 0
    assert asyncio.run(manager.get(["COMPAT_TOKEN"])) == {"COMPAT_TOKEN": "from-file"}
    monkeypatch.setenv("COMPAT_TOKEN", "from-env")  # the environment wins
    assert asyncio.run(manager.get(["COMPAT_TOKEN"])) == {"COMPAT_TOKEN": "from-env"}
    manager.remove("COMPAT_TOKEN")
    assert manager.all() == []
    with pytest.raises(ValueError, match=r"The following secrets were not found: \['NOPE'\]"):
        asyncio.run(manager.get(["NOPE"]))


SEEN: list[Any] = []


@task.with_options(secret_requests=["COMPAT_API_KEY"])
async def use_key(secrets: dict[str, str]) -> str:
    return f"key={secrets['COMPAT_API_KEY']}"


@workflow
async def keyed(ctx: ExecutionContext[None]) -> int:
    value = await use_key()
    SEEN.append(value)
    await pause("later")
    return len(value)


def test_the_workflow_sees_the_real_secret_live_and_on_replay(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    SEEN.clear()
    monkeypatch.setenv("COMPAT_API_KEY", CANARY)
    ctx = keyed.run()
    done = keyed.resume(ctx.execution_id, "go")
    assert SEEN == [f"key={CANARY}", f"key={CANARY}"] and done.output == len(f"key={CANARY}")
    written = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert CANARY.encode() not in written and b"[secret:COMPAT_API_KEY]" in written


def test_a_missing_secret_fails_the_task_and_is_recorded(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPAT_API_KEY", raising=False)
    monkeypatch.setenv("FLUX_SECRETS_FILE", str(home / "none.json"))
    ctx = keyed.run()  # does not raise: the task failed and so did the workflow
    assert ctx.has_failed and isinstance(ctx.output, ExecutionError)
    assert isinstance(ctx.output.inner_exception, ValueError)
    assert str(ctx.output.inner_exception) == "The following secrets were not found: ['COMPAT_API_KEY']"
    assert [r["kind"] for r in records(ctx)][-2:] == ["task_failed", "workflow_failed"]


class DictStorage(OutputStorage):
    """A program's own storage: values kept in a dict."""

    def __init__(self) -> None:
        self.kept: dict[str, Any] = {}
        self.retrieved = 0

    def store(self, reference_id: str, value: Any) -> OutputStorageReference:
        self.kept[reference_id] = value
        return OutputStorageReference("dict", reference_id, {"n": len(self.kept)})

    def retrieve(self, reference: OutputStorageReference) -> Any:
        self.retrieved += 1
        return self.kept[reference.reference_id]

    def delete(self, reference: OutputStorageReference) -> None:
        self.kept.pop(reference.reference_id, None)


STORAGE = DictStorage()


class Opaque:
    """A value only the storage keeps: the journal could not."""

    def __init__(self, n: int) -> None:
        self.n = n


@task.with_options(output_storage=STORAGE)
async def big() -> Opaque:
    return Opaque(42)


@workflow
async def stores(ctx: ExecutionContext[None]) -> int:
    value = await big()
    await pause("p")
    return value.n


def test_a_users_output_storage_is_called_to_store_and_to_retrieve(home: Path) -> None:
    STORAGE.kept.clear()
    ctx = stores.run()
    (reference_id,) = STORAGE.kept
    assert reference_id == f"{ctx.execution_id}_1"
    completed = next(r for r in records(ctx) if r["kind"] == "task_completed")
    assert completed["value"]["$dataclass"] == "flux._engine.refs:OutputStorageReference"
    done = stores.resume(ctx.execution_id, None)
    assert done.output == 42 and STORAGE.retrieved == 1  # the replay read it back through the storage


@workflow.with_options(output_storage=STORAGE)
async def stored_output(ctx: ExecutionContext[None]) -> dict[str, int]:
    return {"rows": 3}


def test_a_workflow_with_output_storage_returns_a_reference(home: Path) -> None:
    ctx = stored_output.run()
    assert isinstance(ctx.output, OutputStorageReference) and ctx.output.storage_type == "dict"
    assert STORAGE.retrieve(ctx.output) == {"rows": 3}
    assert stored_output.run(execution_id=ctx.execution_id).output == ctx.output


def test_inline_storage_keeps_the_value_in_its_reference() -> None:
    ref = InlineOutputStorage().store("x", [1, 2])
    assert ref.to_dict() == {"storage_type": "inline", "reference_id": "x", "metadata": {"value": [1, 2]}}
    assert InlineOutputStorage().retrieve(OutputStorageReference.from_dict(ref.to_dict())) == [1, 2]


@workflow.with_options(output_storage=LocalFileStorage())
async def stored_locally(ctx: ExecutionContext[None]) -> list[int]:
    return [1, 2, 3]


def test_deleting_a_local_output_leaves_it_for_the_journals_that_name_it(home: Path) -> None:
    ctx = stored_locally.run()
    ref = ctx.output
    assert isinstance(ref, OutputStorageReference) and ref.storage_type == "local_file"
    LocalFileStorage().delete(ref)
    assert LocalFileStorage().retrieve(ref) == [1, 2, 3]  # shared by content: swept, never deleted at once
    assert stored_locally.run(execution_id=ctx.execution_id).output == ref  # the journal still reads it
    with pytest.raises(ValueError, match="Invalid storage type"):
        LocalFileStorage().delete(OutputStorageReference("inline", "x", {}))
