"""A project directory for `flux` subprocesses: its flows.py (see tests.support.flows), its store in
.flux/ (where `flux` puts it when neither FLUX_HOME nor --home says otherwise) and runs.log, the
run log to which the task bodies append a line each time they run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.journals import records_so_far


def write_project(root: Path, source: str, name: str = "flows.py") -> Path:
    """Writes `source` as root/name and returns root."""
    (root / name).write_text(source)
    return root


def run_env(project: Path, **extra: str) -> dict[str, str]:
    """The environment the flows need: where their run log is, plus `extra`."""
    return {"RUN_LOG": str(project / "runs.log"), **extra}


def run_log(project: Path) -> list[str]:
    """Every line of the run log, in the order written (none before the first)."""
    path = project / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def logged_calls(project: Path) -> list[tuple[str, str]]:
    """(idempotency key, what) of every line written by `log_call`: the key names the execution
    and the call, so a body that ran twice shows as one key logged twice."""
    return [(key, what) for key, _, what in (line.partition(" ") for line in run_log(project))]


def executions(project: Path) -> Path:
    return project / ".flux" / "executions"


def execution_ids(project: Path) -> set[str]:
    folder = executions(project)
    return {p.stem for p in folder.glob("*.jsonl")} if folder.is_dir() else set()


def only_journal(project: Path) -> Path:
    """The journal of the one execution of the store."""
    (path,) = executions(project).glob("*.jsonl")
    return path


def journals(project: Path) -> dict[str, list[dict[str, Any]]]:
    """execution id -> the complete records of its journal, for every execution of the store."""
    folder = executions(project)
    return {p.stem: records_so_far(p) for p in sorted(folder.glob("*.jsonl"))} if folder.is_dir() else {}


def top_execution(project: Path) -> str:
    """The execution `flux exec` started (the one whose header names no parent)."""
    (execution_id,) = [i for i, recs in journals(project).items() if "parent" not in recs[0]]
    return execution_id


def count_records(project: Path, kind: str) -> int:
    """How many records of `kind` the journals of the store hold."""
    return sum(r["kind"] == kind for recs in journals(project).values() for r in recs)


def completed_calls(project: Path) -> set[str]:
    """`execution_id:call_id` of every call whose completion is recorded, in every journal."""
    return {
        f"{execution_id}:{r['call_id']}"
        for execution_id, recs in journals(project).items()
        for r in recs
        if r["kind"] == "task_completed"
    }
