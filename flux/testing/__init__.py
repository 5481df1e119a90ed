"""Determinism testing for workflows: property-based checks users run in their own test suites.

    from hypothesis import strategies as st
    from flux.testing import check_workflow

    def test_order_is_deterministic():
        check_workflow(order, st.integers(0, 100), resume_inputs="ok")

For each input, `check_workflow` runs the workflow to its end and checks (SPEC.md "Determinism
testing"): a run interrupted after any record and resumed returns the same output, and no task
completed before the interruption runs again; replaying the finished journal, here and in another
process with another PYTHONHASHSEED, returns the same output; runs whose concurrent branches
finish in other orders return the same output. A failure raises DeterminismError (an
AssertionError) naming the smallest failing input, the property, the record after which the run
was interrupted and the divergence. Strategies need hypothesis (`pip install hypothesis`); a
list of inputs, `check_once` and `flux check` do not.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flux._engine.clock import Clock
from flux._engine.errors import InvalidOptionError
from flux.testing._check import (
    PROPERTIES,
    CheckReport,
    DeterminismError,
    Options,
    PropertyResult,
    check_once,
    determinism_error,
    make_options,
    run_checks,
)

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from flux.workflow import Workflow

__all__ = [
    "PROPERTIES",
    "CheckReport",
    "DeterminismError",
    "PropertyResult",
    "check_file",
    "check_once",
    "check_workflow",
]

for _cls in (CheckReport, PropertyResult):
    _cls.__module__ = __name__  # shown as flux.testing.CheckReport, where users import it


def check_workflow(
    wf: Workflow,
    inputs: Any,
    *,
    resume_inputs: Any = None,
    max_examples: int = 20,
    cuts: int | str = "all",
    subprocess_replay: bool = True,
    tmp_dir: str | os.PathLike[str] | None = None,
    clock: Callable[[], Clock] | None = None,
) -> None:
    """Checks that `wf` is deterministic for generated inputs, or for each input of a list.

    Args:
        wf: the workflow. With `subprocess_replay`, it must be defined at the top level of a .py
            file that another process can import (the journal's header names the file); guard
            script code with `if __name__ == "__main__":`.
        inputs: a hypothesis strategy (hypothesis shrinks a failure to the smallest input it
            finds), or an iterable of inputs checked one by one.
        resume_inputs: what each `pause` returns: a value, or a callable taking the pause's name.
        max_examples: how many inputs a strategy generates.
        cuts: "all" to interrupt each run after every record, or how many evenly spread records.
        subprocess_replay: also replay each journal in another process (another PYTHONHASHSEED).
        tmp_dir: directory for the temporary stores (default: the system's temporary directory).
        clock: a callable returning a new engine clock for each run, e.g. `VirtualClock`.

    Raises:
        DeterminismError: for the first (with a strategy, the smallest) input that fails.
        InvalidOptionError: for a bad option.
        WorkflowLoadError: when another process could not load the workflow.
    """
    __tracebackhide__ = True  # pytest shows the user's test and the error, not these frames
    if type(max_examples) is not int or max_examples < 1:
        raise InvalidOptionError(f"max_examples={max_examples!r} must be an int >= 1")
    options = make_options(resume_inputs, cuts, subprocess_replay, tmp_dir, clock)
    strategies = sys.modules.get("hypothesis.strategies")
    if strategies is not None and isinstance(inputs, strategies.SearchStrategy):
        _check_strategy(wf, inputs, options, max_examples)
        return
    if isinstance(inputs, (str, bytes, dict)) or not isinstance(inputs, Iterable):
        raise InvalidOptionError(
            f"inputs must be a hypothesis strategy or a list of inputs, not {type(inputs).__name__}; "
            "to check one input, pass [value]"
        )
    for value in inputs:
        report = run_checks(wf, value, options, stop_at_first_failure=True)
        if not report.ok:
            raise determinism_error(report)


def _check_strategy(wf: Workflow, strategy: SearchStrategy[Any], options: Options, max_examples: int) -> None:
    __tracebackhide__ = True
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Flaky

    failed: list[str] = []  # stores kept by failing examples; only the last (the reported one) stays

    def deterministic_for(input: Any) -> None:  # hypothesis names it in "Falsifying example: ..."
        __tracebackhide__ = True
        report = run_checks(wf, input, options, stop_at_first_failure=True)
        if not report.ok:
            if report.store:
                failed.append(report.store)
            raise determinism_error(report)

    test = settings(
        max_examples=max_examples,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow],
        # Explaining a failure re-runs many variants of it; the report already says where it is.
        phases=[p for p in settings().phases if p is not Phase.explain],
    )(given(strategy)(deterministic_for))
    # Examples saved in hypothesis' database belong to this workflow, not to every checked one.
    digest = hashlib.sha256(f"{wf.fn.__module__}:{wf.fn.__qualname__}".encode()).digest()
    # hypothesis gives the test it wraps a `hypothesis` attribute that its types do not declare.
    test.hypothesis.inner_test._hypothesis_internal_add_digest = digest  # type: ignore[attr-defined]
    try:
        test()
    except Flaky as err:
        # The same input passed once and failed once: non-determinism that comes and goes.
        found = [e for e in _causes(err) if isinstance(e, DeterminismError)]
        if not found:
            raise
        raise determinism_error(
            found[-1].report, "\n(this input failed on some runs of the check and passed on others)"
        ) from err
    finally:
        for path in failed[:-1]:
            shutil.rmtree(path, ignore_errors=True)


def _causes(err: BaseException) -> list[BaseException]:
    """The failures hypothesis reports with a Flaky error: grouped in `exceptions` by newer
    versions, chained as its cause by older ones."""
    found = list(getattr(err, "exceptions", ()))
    cause = err.__cause__ or err.__context__
    while cause is not None and cause not in found:
        found.append(cause)
        cause = cause.__cause__ or cause.__context__
    return found


def check_file(
    path: str,
    workflow_name: str,
    input: Any = None,
    *,
    resume_inputs: Any = None,
    cuts: int | str = "all",
    subprocess_replay: bool = True,
    tmp_dir: str | None = None,
) -> CheckReport:
    """Imports `path`, finds the workflow and runs `check_once` on it (what `flux check` does).

    Raises:
        WorkflowLoadError: when the file or the workflow cannot be found.
        InvalidOptionError: for a bad option.
    """
    from flux.loader import find_workflow, load_file

    wf = find_workflow(load_file(path), workflow_name)
    return check_once(
        wf, input, resume_inputs=resume_inputs, cuts=cuts, subprocess_replay=subprocess_replay, tmp_dir=tmp_dir
    )
