"""The public surface users import; internals may move freely behind it."""

from __future__ import annotations

import importlib
import os
import pathlib

import pytest

import flux
import flux.errors
from flux.domain.events import ExecutionEventType

SURFACE = {
    "flux": [
        "ExecutionContext",
        "ExecutionEvent",
        "ExecutionEventType",
        "ExecutionState",
        "Saga",
        "Schedule",
        "ScheduleStatus",
        "ScheduleType",
        "TaskFunction",
        "TaskMetadata",
        "Workflow",
        "call",
        "cron",
        "interval",
        "logger",
        "once",
        "pause",
        "task",
        "workflow",
    ],
    "flux.tasks": [
        "Graph",
        "GraphError",
        "call",
        "choice",
        "idempotency_key",
        "map_task",
        "now",
        "parallel",
        "pause",
        "pipeline",
        "progress",
        "randint",
        "randrange",
        "sleep",
        "uuid4",
    ],
    "flux.clock": ["Clock", "SystemClock", "VirtualClock"],
    "flux.output_storage": ["InlineOutputStorage", "LocalFileStorage", "OutputStorage", "OutputStorageReference"],
    "flux.secret_managers": ["FileSecretManager", "SecretManager"],
    "flux.domain.execution_context": ["ExecutionContext"],
    "flux.domain.schedule": ["Schedule", "ScheduleStatus", "ScheduleType", "cron", "interval", "once"],
    "flux.testing": ["check_workflow", "check_once", "DeterminismError"],
    "flux.workflow": ["workflow"],
    "flux.task": ["task", "TaskMetadata"],
    "flux.saga": ["Saga"],
    "flux.domain.events": ["ExecutionEvent", "ExecutionEventType", "ExecutionState"],
    "flux.serve": ["create_app", "load_served", "run_server"],
    "flux.tracing": ["TracingListener", "instrument", "uninstrument"],
    "flux.golden": ["GoldenResult", "assert_golden", "golden_params", "journals_in", "replay_folder", "replay_one"],
    "flux.errors": [
        "AmbiguousExecutionIdError",
        "ApprovalRejected",
        "PauseRequested",
        "WorkflowNotFoundError",
        "CompensationError",
        "ExecutionTimeoutError",
        "FallbackError",
        "RetryError",
        "RollbackError",
        "DecodeError",
        "DurabilityError",
        "EncodeError",
        "EngineError",
        "ExecutionError",
        "ExecutionLockedError",
        "ExecutionNotFoundError",
        "ExecutionStateError",
        "FluxError",
        "InvalidExecutionIdError",
        "InvalidOptionError",
        "JournalCorruptError",
        "NondeterminismError",
        "RecordedError",
        "UnsafePathError",
        "WorkflowLoadError",
        "BlobError",
        "DeterminismError",
        "GraphError",
        "OutsideWorkflowError",
        "OwnershipLostError",
        "RecordTooLargeError",
        "ScheduleExistsError",
        "ScheduleNotFoundError",
        "SecretError",
        "StoreError",
        "ExecutionExistsError",
    ],
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names_are_importable(module: str) -> None:
    mod = importlib.import_module(module)
    for name in SURFACE[module]:
        assert hasattr(mod, name), f"{module}.{name}"


def test_flux_all_is_pinned() -> None:
    assert sorted(flux.__all__) == sorted(SURFACE["flux"])
    assert sorted(flux.errors.__all__) == sorted(SURFACE["flux.errors"])


def test_every_reference_event_type_exists() -> None:
    reference = """WORKFLOW_STARTED WORKFLOW_COMPLETED WORKFLOW_FAILED WORKFLOW_PAUSED WORKFLOW_RESUMED
    TASK_STARTED TASK_COMPLETED TASK_FAILED TASK_PAUSED TASK_RETRY_STARTED TASK_RETRY_COMPLETED
    TASK_RETRY_FAILED TASK_FALLBACK_STARTED TASK_FALLBACK_COMPLETED TASK_FALLBACK_FAILED
    TASK_ROLLBACK_STARTED TASK_ROLLBACK_COMPLETED TASK_ROLLBACK_FAILED""".split()
    for name in reference:
        assert ExecutionEventType[name].value == name


def test_errors_share_one_base() -> None:
    for name in SURFACE["flux.errors"]:
        cls = getattr(flux.errors, name)
        if name != "RecordedError":
            assert issubclass(cls, flux.errors.FluxError), name


def _every_subclass(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _every_subclass(sub)
    return found


def test_every_flux_error_is_in_the_tree_and_in_flux_errors() -> None:
    import flux._engine.errors as tree

    for cls in _every_subclass(flux.errors.FluxError):
        if cls.__module__.startswith(("tests.", "test_")) or cls.__module__ == __name__:
            continue  # defined by a test
        assert cls.__name__ in flux.errors.__all__, f"{cls.__module__}.{cls.__name__} is not exported by flux.errors"
        assert cls.__module__ == "flux.errors", cls
        assert f" {cls.__name__} " in tree.__doc__, f"{cls.__name__} is not drawn in the tree"


def test_journals_name_errors_by_their_public_module() -> None:
    from flux._engine.codec import encode, find_class

    tree = encode(flux.errors.ExecutionError(ValueError("x")))
    assert tree["$error"] == "flux.errors:ExecutionError"
    # Journals written when the engine was a top-level package still read.
    assert find_class("engine.errors:ExecutionError") is flux.errors.ExecutionError
    assert find_class("engine.secrets:SecretError") is flux.errors.SecretError


def test_engine_never_imports_flux_or_cli() -> None:
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "engine"
    for path in root.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"^\s*(?:from|import)\s+([\w.]+)", text, re.M):
            name = match.group(1)
            if name.split(".")[0] in ("cli", "typer", "rich", "engine"):
                raise AssertionError(f"{path.name} imports {name}")
            if name.split(".")[0] == "flux":
                assert name.startswith("flux._engine"), f"{path.name} imports {name}"


@pytest.mark.slow
def test_a_project_with_its_own_engine_and_cli_modules_works(tmp_path: pathlib.Path) -> None:
    """Flux installs no generic top-level package: a user's `engine.py` and `cli.py` are theirs,
    under `import flux` and under `flux exec`."""
    import subprocess
    import sys

    (tmp_path / "engine.py").write_text("NAME = 'the project engine'\n")
    (tmp_path / "cli.py").write_text("NAME = 'the project cli'\n")
    (tmp_path / "app.py").write_text(
        "import engine, cli\n"
        "from flux import task, workflow\n"
        "@task\n"
        "async def name() -> str:\n"
        "    return engine.NAME + ' and ' + cli.NAME\n"
        "@workflow\n"
        "async def wf(ctx):\n"
        "    return await name()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["FLUX_HOME"] = str(tmp_path / "store")
    probe = subprocess.run(
        [sys.executable, "-c", "import engine, cli, flux, flux.errors, flux.tasks; print(engine.NAME, '|', cli.NAME)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "the project engine | the project cli"
    ran = subprocess.run(
        [sys.executable, "-m", "flux", "exec", "app.py", "wf"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert "the project engine and the project cli" in ran.stdout
