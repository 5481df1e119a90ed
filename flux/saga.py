"""Sagas: compensations registered as steps complete, run in reverse order when a later step fails.

    async with Saga() as saga:
        flight = await saga.step(book_flight(trip), compensate=cancel_flight)
        hotel = await saga.step(book_hotel(trip), compensate=cancel_hotel)
        await charge(trip)        # fails -> cancel_hotel(hotel), then cancel_flight(flight)

Each compensation is a task call, recorded like any other: after a crash in the middle of
compensating, replay skips the compensations already recorded, runs again the one that was
running, and goes on with the rest. None runs twice once recorded.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from flux._engine import traps
from flux._engine.errors import CompensationError, EngineError, ExecutionError
from flux._engine.executor import TaskSpec

__all__ = ["Saga"]

T = TypeVar("T")


class Saga:
    """Collects compensations; when the `async with` block raises, runs them newest first.

    The block's exception is raised again after compensating. If some compensations fail, the
    others still run, and `CompensationError` (with the original exception and the failures)
    is raised instead. Pauses and engine errors do not trigger compensation.
    """

    def __init__(self) -> None:
        self._compensations: list[tuple[TaskSpec, tuple[Any, ...], dict[str, Any], str]] = []

    async def __aenter__(self) -> Saga:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None or isinstance(exc, EngineError):
            return False
        if isinstance(exc, asyncio.CancelledError) and not traps.cancelling():
            return False  # the process is shutting down, not the execution being cancelled
        if not isinstance(exc, (Exception, asyncio.CancelledError)):
            return False  # a pause or the end of a read-only replay: nothing failed
        await self.compensate_all(exc)
        return False

    def compensate(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Registers `fn(*args, **kwargs)` to run if the saga fails. `fn` may be a task or a
        plain function; either way its call is recorded as a task."""
        self._register(fn, args, kwargs, sys._getframe(1))

    def _register(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], frame: Any) -> None:
        spec = getattr(fn, "spec", None)
        if not isinstance(spec, TaskSpec):
            spec = TaskSpec.of(fn, getattr(fn, "__name__", "compensation"))
        src = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
        self._compensations.append((spec, args, kwargs, src))

    async def step(self, action: Awaitable[T], *, compensate: Callable[..., Any] | None = None) -> T:
        """Awaits `action`; once it succeeded, registers `compensate(result)`."""
        frame = sys._getframe(1)
        result = await action
        if compensate is not None:
            self._register(compensate, (result,), {}, frame)
        return result

    async def compensate_all(self, original: BaseException | None = None) -> None:
        """Runs the registered compensations newest first, each once, and forgets them.

        Raises:
            CompensationError: when one or more compensations failed (after all have run).
        """
        failures: list[BaseException] = []
        while self._compensations:
            spec, args, kwargs, src = self._compensations.pop()
            try:
                await traps.call_task(spec, args, kwargs, src)
            except ExecutionError as err:
                failures.append(err.inner_exception or err)
        if failures:
            raise CompensationError(original, failures) from original
