"""The public surface users import; internals may move freely behind it."""

from __future__ import annotations

import importlib

import pytest

import flux
import flux.errors
from flux.domain.events import ExecutionEventType

SURFACE = {
    "flux": ["ExecutionContext", "ExecutionEvent", "ExecutionEventType", "Saga", "TaskFunction", "Workflow", "task", "workflow"],
    "flux.tasks": [
        "Graph", "GraphError", "call", "choice", "idempotency_key", "now", "parallel", "pause", "pipeline",
        "randint", "randrange", "sleep", "uuid4",
    ],
    "flux.clock": ["Clock", "SystemClock", "VirtualClock"],
    "flux.output_storage": ["LocalFileStorage", "OutputStorage"],
    "flux.testing": ["check_workflow", "check_once", "DeterminismError"],
    "flux.workflow": ["workflow"],
    "flux.task": ["task"],
    "flux.saga": ["Saga"],
    "flux.domain.events": ["ExecutionEvent", "ExecutionEventType"],
    "flux.golden": ["GoldenResult", "assert_golden", "golden_params", "journals_in", "replay_folder", "replay_one"],
    "flux.errors": [
        "CompensationError", "ExecutionTimeoutError", "FallbackError", "RetryError", "RollbackError",
        "DecodeError", "DurabilityError", "EncodeError", "EngineError", "ExecutionError", "ExecutionLockedError",
        "ExecutionNotFoundError", "ExecutionStateError", "FluxError", "InvalidExecutionIdError", "InvalidOptionError",
        "JournalCorruptError", "NondeterminismError", "RecordedError", "UnsafePathError", "WorkflowLoadError",
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


def test_engine_never_imports_flux_or_cli() -> None:
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "engine"
    for path in root.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(flux|cli|typer|rich)\b", text, re.M), path.name
