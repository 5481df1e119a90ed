"""Runs a plain function in a forked child process that can be stopped for real.

A thread blocked in `time.sleep` or a busy loop cannot be interrupted; a child process can. The
engine uses this for plain (non-async) tasks that have a `timeout` (SPEC.md "Timeouts"): the
child runs the function and sends back its encoded result or exception through a pipe; on
timeout the parent kills the child with SIGKILL, so the abandoned work stops at once.

What the child does to memory stays in the child: such a task must give its result by
returning it. Where `fork` does not exist, the function runs in a daemon thread instead, and
on timeout it is abandoned (it runs on until it returns or the process exits).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import threading
import warnings
from collections.abc import Callable
from typing import Any

import orjson

from flux._engine.clock import Clock, finishes_within
from flux._engine.codec import decode, encode, encode_exception

__all__ = ["CAN_FORK", "TimedOut", "register_inherited_fd", "run_isolated", "unregister_inherited_fd"]

CAN_FORK = hasattr(os, "fork")

# Descriptors a child must close at once: the locks of executions this process owns. A child
# that outlived its parent while holding a copy would keep the execution locked.
_inherited: set[int] = set()


def register_inherited_fd(fd: int) -> None:
    _inherited.add(fd)


def unregister_inherited_fd(fd: int) -> None:
    _inherited.discard(fd)


class TimedOut(Exception):
    """The child (or thread) did not finish in time; it has been killed (or abandoned)."""


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], w: int) -> None:
    status = 0
    try:
        for fd in list(_inherited):
            try:
                os.close(fd)
            except OSError:
                pass
        _die_with_parent()
        try:
            payload = orjson.dumps({"ok": encode(fn(*args, **kwargs), "result")})
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            payload = orjson.dumps({"error": encode_exception(exc)})
        view = memoryview(payload)
        while view:
            view = view[os.write(w, view) :]
    except BaseException:  # noqa: BLE001 - a child must never return into the parent's code
        status = 70
    finally:
        os._exit(status)


async def run_isolated(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float,
    clock: Clock,
    resolve: Callable[[str], type | None],
) -> Any:
    """Runs `fn(*args, **kwargs)` with a hard time limit.

    Returns:
        The function's result (decoded from the child's answer).

    Raises:
        TimedOut: after `timeout` seconds of the engine's clock; the child was killed.
        The function's own exception, rebuilt from the child's answer.
    """
    if not CAN_FORK:
        return await _run_in_daemon_thread(fn, args, kwargs, timeout, clock)
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the child only runs fn
        pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(fn, args, kwargs, w)
    os.close(w)
    os.set_blocking(r, False)
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(r, 1 << 16)
        except BlockingIOError:
            return
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(r, readable)
    finished = False
    try:
        with clock.working():
            finished = await finishes_within(done, clock, timeout)
    finally:
        loop.remove_reader(r)
        os.close(r)
        if finished:
            _reap(pid)
        else:
            _kill(pid)
    if not finished:
        raise TimedOut()
    answer = orjson.loads(b"".join(chunks)) if chunks else {"error": None}
    if "ok" in answer:
        return decode(answer["ok"], resolve)
    if answer.get("error") is None:
        raise ChildProcessError(f"the process running {getattr(fn, '__name__', fn)!r} died without an answer")
    raise decode(answer["error"], resolve)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return  # the caller gave up (timed out) already
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


async def _run_in_daemon_thread(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float, clock: Clock
) -> Any:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def target() -> None:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        try:
            loop.call_soon_threadsafe(_settle, fut, *outcome)
        except RuntimeError:
            pass  # abandoned after a timeout, and the loop has closed since: nobody waits for it

    threading.Thread(target=target, daemon=True, name="flux-timeout-task").start()
    with clock.working():
        if not await finishes_within(fut, clock, timeout):
            fut.cancel()
            raise TimedOut()
    return fut.result()
