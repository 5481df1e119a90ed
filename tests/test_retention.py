"""Deleting executions (flux/retention.py): `flux delete ID` and `flux prune --finished-before`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from flux import ExecutionContext, task, workflow
from flux._engine.errors import ExecutionLockedError, ExecutionNotFoundError, ExecutionStateError
from flux.client import Client
from flux.retention import delete_execution, prune_store
from flux.tasks import call, pause
from tests.conftest import flux_cmd, flux_popen
from tests.support.flows import SQUARES, flows_file
from tests.support.processes import wait_for
from tests.support.projects import execution_ids, executions, run_env, write_project


@task
async def twice(n: int) -> int:
    return 2 * n


@workflow
async def leaf(ctx: ExecutionContext[int]) -> int:
    return await twice(ctx.input)


@workflow
async def tree(ctx: ExecutionContext[int]) -> int:
    return await call(leaf, ctx.input) + await call(leaf, ctx.input + 1)


@workflow
async def waits(ctx: ExecutionContext[None]) -> Any:
    return await pause("go")


@workflow
async def breaks(ctx: ExecutionContext[None]) -> None:
    raise ValueError("no")


@task.with_options(output_storage=True)
async def bulky(tag: str) -> str:
    return tag * 1000


@workflow
async def stores(ctx: ExecutionContext[list[str]]) -> int:
    return sum([len(await bulky(tag)) for tag in ctx.input])


def _run(store: str, wf: Any, value: Any) -> str:
    async def go() -> str:
        handle = await Client(store, durability="os").start(wf, value)
        await handle.result()
        return handle.execution_id

    return asyncio.run(go())


def _files(store: Path) -> list[str]:
    """The journals in the store; and no file is left of an execution without one."""
    names = [p.name for p in (store / "executions").iterdir() if not p.name.startswith(".")]  # .list: the store's
    journals = sorted(n for n in names if n.endswith(".jsonl"))
    ids = {n[: -len(".jsonl")] for n in journals}
    assert all(n.partition(".")[0] in ids for n in names), names
    return journals


def test_delete_removes_an_execution_with_its_sub_workflows_and_side_files(tmp_path: Path) -> None:
    store = tmp_path / ".flux"
    parent = _run(str(store), tree, 1)
    kept = _run(str(store), leaf, 5)
    children = [s.execution_id for s in Client(str(store)).store.list().items if s.parent == parent]
    assert len(children) == 2
    with pytest.raises(ExecutionStateError, match=f"delete {parent} instead"):
        delete_execution(children[0], str(store))
    (store / "executions" / f"{parent}.cancel").write_text("")
    deleted = delete_execution(parent, str(store))
    assert sorted(deleted[:2]) == sorted(children) and deleted[2] == parent
    assert _files(store) == [f"{kept}.jsonl"]
    with pytest.raises(ExecutionNotFoundError):
        delete_execution(parent, str(store))


def test_an_unfinished_execution_is_deleted_only_when_forced(tmp_path: Path) -> None:
    store = str(tmp_path / ".flux")
    paused = _run(store, waits, None)
    with pytest.raises(ExecutionStateError, match="is paused and could still go on; give --force"):
        delete_execution(paused, store)
    assert delete_execution(paused, store, force=True) == [paused]
    assert _files(tmp_path / ".flux") == []


def _finished_at(store: Path, execution_id: str) -> float:
    last = orjson.loads((store / "executions" / f"{execution_id}.jsonl").read_bytes().splitlines()[-1])
    import datetime as dt

    return dt.datetime.fromisoformat(last["at"]).timestamp()


def test_prune_deletes_what_finished_before_the_age_by_status_and_nothing_else(tmp_path: Path) -> None:
    store = tmp_path / ".flux"
    done = _run(str(store), tree, 1)
    failed = _run(str(store), breaks, None)
    paused = _run(str(store), waits, None)
    last = max(_finished_at(store, done), _finished_at(store, failed))
    assert prune_store(str(store), finished_before="1h", now=last + 1800).deleted == []
    dry = prune_store(str(store), finished_before="1h", now=last + 7200, statuses=["failed"], dry_run=True)
    assert dry.deleted == [failed] and f"{failed}.jsonl" in _files(store)
    only_failed = prune_store(str(store), finished_before="1h", now=last + 7200, statuses=["failed"])
    assert only_failed.deleted == [failed] and only_failed.journals == 1
    rest = prune_store(str(store), finished_before="1h", now=last + 7200)
    assert rest.deleted == [done] and rest.journals == 3  # with its two sub-workflows
    assert _files(store) == [f"{paused}.jsonl"]  # a paused execution has not finished
    with pytest.raises(ValueError, match="--status 'paused': prune deletes finished executions only"):
        prune_store(str(store), finished_before="1h", statuses=["paused"])
    with pytest.raises(ValueError, match="--finished-before 'soon'"):
        prune_store(str(store), finished_before="soon")


@pytest.mark.slow
def test_delete_and_prune_leave_an_execution_a_process_runs(tmp_path: Path) -> None:
    write_project(tmp_path, flows_file(SQUARES))
    env = run_env(tmp_path, FLUX_HOME=str(tmp_path / ".flux"), STEP_DELAY="0.1")
    finished = flux_cmd("exec", "flows.py", "squares", "--input", "2", cwd=tmp_path, env=env)
    assert finished.returncode == 0, finished.stderr
    (done,) = execution_ids(tmp_path)
    slow = {**env, "STEP_DELAY": "1.0"}
    owner = flux_popen("exec", "flows.py", "squares", "--input", "60", cwd=tmp_path, env=slow)
    try:
        wait_for(lambda: len(execution_ids(tmp_path)) == 2, proc=owner, what="the second execution")
        (running,) = execution_ids(tmp_path) - {done}
        refused = flux_cmd("delete", running, "--force", cwd=tmp_path, env=env)
        assert refused.returncode == 2 and "ExecutionLockedError" in refused.stderr
        assert refused.stderr.count("\n") == 1
        with pytest.raises(ExecutionLockedError):
            delete_execution(running, str(tmp_path / ".flux"), force=True)
        pruned = flux_cmd("prune", "--finished-before", "0s", "--json", cwd=tmp_path, env=env)
        assert pruned.returncode == 0, pruned.stderr
        assert orjson.loads(pruned.stdout)["deleted"] == [done]
        assert owner.poll() is None  # it ran all along
    finally:
        owner.kill()
        owner.communicate()
    assert sorted(p.name for p in executions(tmp_path).iterdir() if p.suffix == ".jsonl") == [f"{running}.jsonl"]
    resumed = flux_cmd("resume", running, cwd=tmp_path, env=env)
    assert resumed.returncode == 0 and "output: 70210" in resumed.stdout, resumed.stderr


def test_stored_outputs_nothing_names_any_more_go_with_the_last_execution_naming_them(tmp_path: Path) -> None:
    store = tmp_path / ".flux"
    first = _run(str(store), stores, ["shared", "only-first"])
    second = _run(str(store), stores, ["shared"])
    blobs = store / "blobs"
    assert len(list(blobs.iterdir())) == 2
    shared = next(p for p in blobs.iterdir() if p.read_bytes() == orjson.dumps("shared" * 1000))
    time.sleep(1.1)  # older than the sweep's start by more than a file-time tick
    assert delete_execution(first, str(store)) == [first]
    assert [p.name for p in blobs.iterdir()] == [shared.name]  # still named by the second
    pruned = prune_store(str(store), finished_before="0s", now=time.time() + 1)
    assert pruned.deleted == [second] and pruned.blobs == 1
    assert list(blobs.iterdir()) == []


def test_a_stored_output_written_again_during_a_sweep_stays(tmp_path: Path) -> None:
    from flux._engine.stores.files import FileStore

    files = FileStore(str(tmp_path / ".flux"))
    old = files.blobs.put(b'"old"')
    time.sleep(1.1)
    started = time.time() - 0.5
    assert files.blobs.put(b'"old"') == old  # reused now: its time is renewed
    fresh = files.blobs.put(b'"fresh"')
    assert files.blobs.sweep(set(), started) == 0
    assert files.blobs.get(old) == b'"old"' and files.blobs.get(fresh) == b'"fresh"'
    assert files.blobs.sweep(set(), time.time() + 5) == 2
    assert list((tmp_path / ".flux" / "blobs").iterdir()) == []


def test_the_temporary_file_of_a_process_killed_while_writing_goes_with_the_next_sweep(tmp_path: Path) -> None:
    store = tmp_path / ".flux"
    project = write_project(tmp_path, flows_file(STORED))
    # Killed between writing the stored output whole and renaming it into place.
    killed = flux_cmd(
        "exec", "flows.py", "keeps", "--input", '"x"', "--home", str(store), cwd=project,
        env={**run_env(project), "FLUX_TEST_FAULTS": "kill:1:blob_rename"},
    )
    assert killed.returncode == -9, killed.stderr
    leftovers = [p.name for p in (store / "blobs").iterdir()]
    assert len(leftovers) == 1 and ".json.tmp-" in leftovers[0], leftovers
    time.sleep(1.1)  # older than the sweep's start by more than a file-time tick
    prune_store(str(store), finished_before="0s", now=time.time() + 1)
    assert list((store / "blobs").iterdir()) == []


STORED = """
@task.with_options(output_storage=True)
async def bulky(tag: str) -> str:
    return tag * 1000


@workflow
async def keeps(ctx: ExecutionContext[str]) -> int:
    return len(await bulky(ctx.input))
"""
