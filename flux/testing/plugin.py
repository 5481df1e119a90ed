"""pytest plugin (entry point `pytest11: flux`): the `flux_check` fixture.

    def test_order(flux_check):
        flux_check(order, st.integers(0, 100))

The plugin only adds the fixture; hypothesis is imported when a test checks a strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flux.testing import check_workflow

__all__ = ["flux_check"]


@pytest.fixture
def flux_check(tmp_path: Path) -> Callable[..., None]:
    """`flux.testing.check_workflow` with its temporary stores under the test's `tmp_path`.

    Call it as `flux_check(wf, inputs, **options)`; options are those of check_workflow.
    A failure raises DeterminismError (an AssertionError) naming the input, the property and
    the record after which the run was interrupted.
    """

    def check(wf: Any, inputs: Any, **options: Any) -> None:
        __tracebackhide__ = True
        options.setdefault("tmp_dir", tmp_path / "flux-check")
        check_workflow(wf, inputs, **options)

    return check
