"""Golden journals: replay a folder of recorded journals against the current code in a test run.

Copy journals of executions that may still be in flight (or that show the behaviour to keep)
into a folder of the project, and check them in CI, so a change that would break them fails
before it ships (SPEC.md "Debugging"):

    from flux.golden import assert_golden, golden_params

    def test_journals_still_replay():
        assert_golden("tests/golden")                 # every journal, one failure listing all

    @pytest.mark.parametrize("journal", golden_params("tests/golden"))
    def test_journal_replays(journal):                # or one test per journal
        assert_golden(journal)

Replay runs no task body and writes nothing. A journal fails when the code asks for other calls
than it recorded, returns another output, or cannot be read or loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flux._engine.errors import FluxError
from flux.debug import replay

__all__ = ["GoldenResult", "assert_golden", "golden_params", "journals_in", "replay_folder", "replay_one"]

Files = str | Mapping[str, str] | None


@dataclass
class GoldenResult:
    """How one journal replayed against the current code."""

    path: str
    ok: bool
    status: str  # the replay's status; "error" when the journal could not be read or loaded
    message: str  # the note, or the divergence / error with its `path:line`

    def __str__(self) -> str:
        return self.message if self.message.startswith(self.path) else f"{self.path}: {self.message}"


def journals_in(folder: str) -> list[str]:
    """The journals (`*.jsonl`) under `folder`, at any depth, sorted; `folder` may be one journal."""
    if os.path.isfile(folder):
        return [folder]
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder of golden journals")
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, n) for n in sorted(names) if n.endswith(".jsonl")]
    return found


def _file_for(path: str, file: Files) -> str | None:
    if file is None or isinstance(file, str):
        return file
    from flux._engine.journal import read_journal

    name = os.path.basename(path)[:-6]
    workflow = read_journal(path, name).records[0].get("workflow", "")
    return file.get(workflow)


def replay_one(path: str, *, file: Files = None) -> GoldenResult:
    """Replays one journal; never raises for what the journal or the code holds."""
    try:
        result = replay(path, file=_file_for(path, file), calls=False)
    except (FluxError, ValueError, OSError) as err:
        return GoldenResult(path, False, "error", f"{type(err).__name__}: {err}")
    if result.divergence is not None:
        return GoldenResult(path, False, "diverged", result.divergence.message)
    return GoldenResult(path, result.matches, result.status, result.note)


def replay_folder(folder: str, *, file: Files = None) -> list[GoldenResult]:
    """Replays every journal under `folder` against the current code.

    Args:
        folder: a folder of journals (searched at any depth), or one journal.
        file: the workflow's file when it is not where the journals recorded it (another
            checkout, CI); a mapping of workflow name to file when the folder holds several.

    Raises:
        FileNotFoundError: when `folder` does not exist.
    """
    return [replay_one(path, file=file) for path in journals_in(folder)]


def assert_golden(folder: str, file: Files = None) -> list[GoldenResult]:
    """Fails (AssertionError) listing every journal under `folder` that no longer replays, each
    with its `path:line` and what differs; returns the results when all replay.

    Raises:
        AssertionError: when a journal no longer replays, or the folder holds none.
    """
    results = replay_folder(folder, file=file)
    if not results:
        raise AssertionError(f"{folder}: no journals (*.jsonl) to check")
    failed = [r for r in results if not r.ok]
    if failed:
        lines = "\n".join(f"  {r}" for r in failed)
        raise AssertionError(f"{len(failed)} of {len(results)} golden journals no longer replay:\n{lines}")
    return results


def golden_params(folder: str) -> list[Any]:
    """The journals under `folder` for `pytest.mark.parametrize`, each with its file name as id."""
    paths = journals_in(folder)
    try:
        import pytest
    except ImportError:
        return paths
    return [
        pytest.param(path, id=os.path.relpath(path, folder) if os.path.isdir(folder) else os.path.basename(path))
        for path in paths
    ]
