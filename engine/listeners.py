"""Record listeners: code told of every record a run appends, as it appends it (SPEC.md 4.11).

A listener is any object with a `recorded(run, record)` method. One given with a run (its
observer) hears that run; one added here with `add_listener` hears every run of the process,
sub-workflows included. Progress displays and tracing are listeners. Replayed records are not
appended again, so a listener hears each record once, from the run that wrote it.

A listener runs on the event loop, inside `append`: it must be quick and must not block. One that
raises is logged and removed from that run; the run goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("flux")

__all__ = ["RecordListener", "RunInfo", "add_listener", "listeners_for", "remove_listener"]


@dataclass(frozen=True)
class RunInfo:
    """The run a record belongs to."""

    execution_id: str
    workflow: str
    parent: dict[str, Any] | None = None  # a sub-workflow's {execution_id, call_id} in its parent
    resumed: bool = False  # the run continues an execution (after a pause, a crash) rather than starting it


class RecordListener(Protocol):
    def recorded(self, run: RunInfo, record: dict[str, Any]) -> None: ...


_global: tuple[RecordListener, ...] = ()
_lock = threading.Lock()


def add_listener(listener: RecordListener) -> None:
    """Tells `listener` of every record every run of this process appends from now on."""
    global _global
    if not callable(getattr(listener, "recorded", None)):
        raise TypeError(f"a record listener needs a recorded(run, record) method; {listener!r} has none")
    with _lock:
        if listener not in _global:
            _global = (*_global, listener)


def remove_listener(listener: RecordListener) -> None:
    """Stops telling `listener`; runs going on now stop at their next record."""
    global _global
    with _lock:
        _global = tuple(x for x in _global if x is not listener)


def listeners_for(run: RunInfo, observer: Any) -> Callable[[dict[str, Any]], None] | None:
    """The one callable `append` calls for each record of `run`: the observer's `recorded` and
    every listener added; None when there are none (the common case costs one `is None`)."""
    found = [x for x in (observer, *_global) if x is not None and callable(getattr(x, "recorded", None))]
    if not found:
        return None
    live = list(found)

    def tell(record: dict[str, Any]) -> None:
        for listener in tuple(live):
            if listener is not observer and listener not in _global:
                live.remove(listener)  # removed meanwhile
                continue
            try:
                listener.recorded(run, record)
            except Exception:
                log.warning(
                    "execution %s: record listener %r failed and is no longer told of this run",
                    run.execution_id, listener, exc_info=True,
                )
                live.remove(listener)

    return tell
