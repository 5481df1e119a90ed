"""Record listeners: code told of every record a run appends, as it appends it (SPEC.md 4.11).

A listener is any object with a `recorded(run, record)` method. One given with a run (its
observer) hears that run; one added here with `add_listener` hears every run of the process,
sub-workflows included. Progress displays and tracing are listeners. Replayed records are not
appended again, so a listener hears each record once, from the run that wrote it.

A listener runs on the event loop, inside `append`: it must be quick and must not block. One that
raises is logged and removed from that run; the run goes on. A listener with an
`ended(run, status, error)` method is also told once when a run stops, however it stops.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("flux")

__all__ = ["Audience", "RecordListener", "RunInfo", "add_listener", "listeners_for", "remove_listener"]


@dataclass(frozen=True)
class RunInfo:
    """The run a record belongs to."""

    execution_id: str
    workflow: str
    parent: dict[str, Any] | None = None  # a sub-workflow's {execution_id, call_id} in its parent
    resumed: bool = False  # the run continues an execution (after a pause, a crash) rather than starting it


class RecordListener(Protocol):
    def recorded(self, run: RunInfo, record: dict[str, Any]) -> None: ...


# A listener may also have `ended(run, status, error)`: told once when a run stops (Audience.ended).


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


def listeners_for(run: RunInfo, observer: Any) -> Audience | None:
    """Who hears the records of `run`: the observer and every listener added; None when there
    are none (the common case costs one `is None` per record)."""
    found = [x for x in (observer, *_global) if x is not None and callable(getattr(x, "recorded", None))]
    return Audience(run, observer, found) if found else None


class Audience:
    """The listeners of one run. `recorded` is called by `append` for each record; `ended` once
    when the run stops, however it stops."""

    __slots__ = ("_live", "_observer", "_run")

    def __init__(self, run: RunInfo, observer: Any, listeners: list[Any]) -> None:
        self._run = run
        self._observer = observer
        self._live = listeners

    def recorded(self, record: dict[str, Any]) -> None:
        for listener in tuple(self._live):
            if self._gone(listener):
                continue
            try:
                listener.recorded(self._run, record)
            except Exception:  # noqa: BLE001 - a listener never stops a run
                self._drop(listener)

    def ended(self, status: str, error: BaseException | None = None) -> None:
        """The run stopped: `status` is where its journal says it is (completed, failed,
        cancelled, paused), or "stopped" with the engine trouble that stopped it."""
        for listener in tuple(self._live):
            method = getattr(listener, "ended", None)
            if method is None or self._gone(listener):
                continue
            try:
                method(self._run, status, error)
            except Exception:  # noqa: BLE001 - a listener never stops a run
                self._drop(listener)

    def _gone(self, listener: Any) -> bool:
        if listener is not self._observer and listener not in _global:
            self._live.remove(listener)  # removed meanwhile
            return True
        return False

    def _drop(self, listener: Any) -> None:
        log.warning(
            "execution %s: record listener %r failed and is no longer told of this run",
            self._run.execution_id, listener, exc_info=True,
        )
        self._live.remove(listener)
