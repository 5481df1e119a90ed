"""Checks of decorator options, run when the decorator runs."""

from __future__ import annotations

from typing import Any

from engine.errors import InvalidOptionError

__all__ = ["check_options"]

# Flux options that a later version implements: refused by name rather than silently ignored.
_NOT_YET = {
    "retry_max_attempts",
    "retry_delay",
    "retry_backoff",
    "timeout",
    "fallback",
    "rollback",
    "secret_requests",
    "output_storage",
    "cache",
    "metadata",
}


def check_options(what: str, given: dict[str, Any], allowed: set[str]) -> None:
    """Raises InvalidOptionError for an unknown option or a bad value."""
    for key, value in given.items():
        if key in allowed:
            if key == "name" and (not isinstance(value, str) or not value):
                raise InvalidOptionError(f"{what} option name={value!r} must be a non-empty str")
            continue
        if key in _NOT_YET:
            raise InvalidOptionError(f"{what} option {key}={value!r} is not supported by this version of Flux yet")
        raise InvalidOptionError(f"unknown {what} option {key}={value!r}; known options: {', '.join(sorted(allowed))}")
