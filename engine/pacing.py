"""The cycle collector while runs last (SPEC.md 7): paused while a journal is read and folded,
and collecting its youngest generation less often while any run goes on."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paced", "no_cycle_collection"]


@contextlib.contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Reading a journal and folding it allocate many containers and no cycles; the cycle
    collector would only traverse them again and again (a third of a large replay's time)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# While any execution runs in the process, the cycle collector's youngest generation is
# collected every _YOUNG_COLLECTION allocations instead of Python's default 700, and the middle
# one every _MIDDLE_COLLECTION of those instead of 10. A fan-out keeps thousands of tasks alive
# at once; at the default pace the collector traverses them again and again (a third of a
# 10,000-task gather's time; a fifth of a 100,000-task one at the middle generation's default)
# and finds nothing. Cycles are still collected, only in larger batches. The previous pace comes
# back when the last run ends, unless someone else changed it in between.
_YOUNG_COLLECTION = 10_000
_MIDDLE_COLLECTION = 100
_paced_runs = 0
_paced_from: tuple[int, int, int] | None = None
_paced_to: tuple[int, int, int] | None = None


@contextlib.contextmanager
def collector_paced() -> Iterator[None]:
    global _paced_runs, _paced_from, _paced_to
    if _paced_runs == 0:
        before = gc.get_threshold()
        if before[0] and before[0] < _YOUNG_COLLECTION:
            _paced_from = before
            _paced_to = (_YOUNG_COLLECTION, max(before[1], _MIDDLE_COLLECTION), before[2])
            gc.set_threshold(*_paced_to)
    _paced_runs += 1
    try:
        yield
    finally:
        _paced_runs -= 1
        if _paced_runs == 0 and _paced_from is not None:
            if gc.get_threshold() == _paced_to:
                gc.set_threshold(*_paced_from)
            _paced_from = _paced_to = None


