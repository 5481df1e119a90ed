"""Finding a workflow's code: by file, by module, inside packages with relative imports, and
again after the code moved."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

ORDERS = """
    from flux import ExecutionContext, task, workflow
    from flux.tasks import pause

    from .pricing import price


    @task
    async def quote(item: str) -> float:
        return price(item)


    @workflow
    async def checkout(ctx: ExecutionContext[list[str]]) -> float:
        total = 0.0
        for item in ctx.input:
            total += await quote(item)
        if total > 100:
            await pause("approve")
        return total
"""

PRICING = """
    PRICES = {"book": 12.5, "pen": 1.5, "desk": 250.0}


    def price(item: str) -> float:
        return PRICES[item]
"""


def _project(root: Path) -> Path:
    shop = root / "shop"
    shop.mkdir(parents=True)
    (shop / "__init__.py").write_text("")
    (shop / "orders.py").write_text(textwrap.dedent(ORDERS))
    (shop / "pricing.py").write_text(textwrap.dedent(PRICING))
    return root


def _flux(*args: str, cwd: Path, store: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLUX_HOME", "FLUX_STORE")}
    env["FLUX_STORE"] = str(store)
    return subprocess.run(
        [sys.executable, "-m", "flux", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _header(store: Path) -> dict[str, object]:
    [journal] = list((store / "executions").glob("*.jsonl"))
    return orjson.loads(journal.read_bytes().splitlines()[0])  # type: ignore[no-any-return]


def _execution_id(output: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("execution_id: "))


def test_a_workflow_is_run_by_module_name_with_its_relative_imports(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    store = tmp_path / "store"
    ran = _flux("exec", "shop.orders:checkout", "--input", '["book", "pen"]', cwd=project, store=store)
    assert ran.returncode == 0, ran.stderr
    assert "output: 14.0" in ran.stdout
    code = _header(store)["code"]
    assert code == {"file": str(project / "shop" / "orders.py"), "module": "shop.orders", "attr": "checkout"}


def test_a_file_inside_a_package_is_imported_under_its_package(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    store = tmp_path / "store"
    ran = _flux("exec", "shop/orders.py", "checkout", "--input", '["pen"]', cwd=project, store=store)
    assert ran.returncode == 0, ran.stderr
    assert "output: 1.5" in ran.stdout
    assert _header(store)["code"]["module"] == "shop.orders"  # type: ignore[index]


def test_moved_code_is_found_by_module_or_file_and_a_missing_one_is_one_line(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    store = tmp_path / "store"
    paused = _flux("exec", "shop.orders:checkout", "--input", '["desk"]', cwd=project, store=store)
    assert paused.returncode == 0 and "status: paused" in paused.stdout, paused.stderr
    execution_id = _execution_id(paused.stdout)
    moved = tmp_path / "deployed"
    shutil.move(str(project), str(moved))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = _flux("resume", execution_id, "--input", "true", cwd=elsewhere, store=store)
    assert lost.returncode == 2
    assert lost.stderr.count("\n") == 1 and "WorkflowLoadError" in lost.stderr
    assert "file=PATH or module=NAME" in lost.stderr
    # From the new place the recorded module is importable again (the current directory is on
    # sys.path, as for `python -m`): it is found by its name.
    by_module = _flux("resume", execution_id, "--input", "true", cwd=moved, store=store)
    assert by_module.returncode == 0, by_module.stderr
    assert "output: 250.0" in by_module.stdout
    again = _flux("exec", "shop.orders:checkout", "--input", '["desk", "pen"]', cwd=moved, store=store)
    second = _execution_id(again.stdout)
    by_file = _flux(
        "resume", second, "--input", "true", "--file", str(moved / "shop" / "orders.py"), cwd=elsewhere, store=store
    )
    assert by_file.returncode == 0, by_file.stderr
    assert "output: 251.5" in by_file.stdout


def test_recover_and_replay_find_moved_code_by_file(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    store = tmp_path / "store"
    done = _flux("exec", "shop.orders:checkout", "--input", '["book", "book"]', cwd=project, store=store)
    assert done.returncode == 0, done.stderr
    execution_id = _execution_id(done.stdout)
    [journal] = list((store / "executions").glob("*.jsonl"))
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:4]))  # the process died after the first task
    moved = tmp_path / "deployed"
    shutil.move(str(project), str(moved))
    recovered = _flux("recover", "--file", str(moved / "shop" / "orders.py"), cwd=tmp_path, store=store)
    assert recovered.returncode == 0, recovered.stderr
    assert execution_id in recovered.stdout and "completed" in recovered.stdout
    replayed = _flux("replay", execution_id, "--module", "shop.orders", "--summary", cwd=moved, store=store)
    assert replayed.returncode == 0, replayed.stderr
    assert "matches" in replayed.stdout or "reproduces" in replayed.stdout
