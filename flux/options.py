"""Checks of decorator options, run when the decorator runs."""

from __future__ import annotations

from typing import Any

from flux._engine.errors import InvalidOptionError
from flux._engine.handling import TaskOptions

__all__ = ["check_options", "task_options", "uses_output_storage"]

# Flux options that a later version implements: refused by name rather than silently ignored.
_NOT_YET = {"metadata"}


def _number(key: str, value: Any, *, positive: bool = False, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value != value:
        raise InvalidOptionError(f"{key}={value!r} must be {'an int' if integer else 'a number'}")
    if positive and value <= 0:
        raise InvalidOptionError(f"{key}={value!r} must be > 0")
    if value < 0:
        raise InvalidOptionError(f"{key}={value!r} must be >= 0")
    if value == float("inf"):
        raise InvalidOptionError(f"{key}={value!r} must be finite")


def _check_value(key: str, value: Any) -> None:
    if key == "name":
        if not isinstance(value, str) or not value:
            raise InvalidOptionError(f"name={value!r} must be a non-empty str")
    elif key == "retry_max_attempts":
        _number(key, value, integer=True)
    elif key in ("retry_delay", "retry_backoff"):
        _number(key, value)
    elif key == "timeout":
        if value is not None:
            _number(key, value, positive=True)
    elif key in ("fallback", "rollback"):
        if value is not None and not callable(value):
            raise InvalidOptionError(f"{key}={value!r} must be callable")
    elif key == "secret_requests":
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v for v in value
        ):
            raise InvalidOptionError(f"secret_requests={value!r} must be a list of secret names")
    elif key == "output_storage":
        from flux.output_storage import OutputStorage

        if value not in (None, True, False) and not isinstance(value, OutputStorage):
            raise InvalidOptionError(
                f"output_storage={value!r} must be True or a flux.output_storage.LocalFileStorage()"
            )
    elif key == "schedule":
        from flux.domain.schedule import Schedule

        if value is not None and not isinstance(value, Schedule):
            raise InvalidOptionError(
                f"schedule={value!r} must be cron(...), interval(...) or once(...) from flux.domain.schedule"
            )
    elif key == "cache":
        if not isinstance(value, bool):
            raise InvalidOptionError(f"cache={value!r} must be True or False")


def uses_output_storage(options: dict[str, Any]) -> bool:
    value = options.get("output_storage")
    return value is not None and value is not False


def task_options(options: dict[str, Any]) -> TaskOptions:
    """The engine's TaskOptions for checked decorator options."""
    return TaskOptions(
        retry_max_attempts=options.get("retry_max_attempts", 0),
        retry_delay=float(options.get("retry_delay", 1.0)),
        retry_backoff=float(options.get("retry_backoff", 2.0)),
        timeout=None if options.get("timeout") is None else float(options["timeout"]),
        fallback=options.get("fallback"),
        rollback=options.get("rollback"),
    )


def check_options(what: str, given: dict[str, Any], allowed: set[str]) -> None:
    """Raises InvalidOptionError for an unknown option or a bad value, naming both."""
    for key, value in given.items():
        if key in allowed:
            _check_value(key, value)
            continue
        if key in _NOT_YET:
            raise InvalidOptionError(f"{what} option {key}={value!r} is not supported by this version of Flux yet")
        raise InvalidOptionError(f"unknown {what} option {key}={value!r}; known options: {', '.join(sorted(allowed))}")
