"""Checks of decorator options, run when the decorator runs."""

from __future__ import annotations

from typing import Any

from flux._engine.errors import InvalidOptionError
from flux._engine.handling import TaskOptions

__all__ = ["UNSET", "check_options", "task_options", "uses_output_storage"]


class _Unset:
    """The default of an option not given to `with_options` (None is a value some options take)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _given(arguments: dict[str, Any]) -> dict[str, Any]:
    """The options a `with_options(...)` call was given: its keyword arguments not left UNSET,
    and the unknown ones it caught (refused by `check_options`, naming them)."""
    given = {k: v for k, v in arguments.items() if k not in ("self", "unknown") and v is not UNSET}
    given.update(arguments.get("unknown") or {})
    return given

# Flux options that a later version implements: refused by name rather than silently ignored.
_NOT_YET: set[str] = set()

_RISKS = ("read", "write", "exec", "external")
_RUNNERS = ("inprocess", "subprocess", "docker", "docker-airgapped")
_RUNNER_OPTIONS = ("cpus", "memory", "timeout", "network", "read_only")


def _exception_types(key: str, value: Any) -> None:
    items = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in items):
        raise InvalidOptionError(f"{key}={value!r} must be an exception type or a tuple of them")


def _names(key: str, value: Any) -> None:
    if value is None:
        return
    if (
        isinstance(value, str)

        or not isinstance(value, (list, tuple))
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise InvalidOptionError(f"{key}={value!r} must be a list of names")


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
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidOptionError(f"name={value!r} must be a non-empty str")
    elif key == "retry_max_attempts":
        _number(key, value, integer=True)
    elif key in ("retry_delay", "retry_backoff"):
        _number(key, value)
    elif key == "timeout":
        if value is not None and value != 0:
            _number(key, value, positive=True)
    elif key == "retry_max_delay":
        if value is not None:
            _number(key, value)
    elif key == "retry_jitter":
        _number(key, value)
        if value > 1:
            raise InvalidOptionError(f"retry_jitter={value!r} must be between 0 and 1")
    elif key in ("retry_on", "non_retryable"):
        _exception_types(key, value)
    elif key in ("config_requests",):
        _names(key, value)
    elif key in ("metadata", "auth_exempt", "sensitive"):
        if not isinstance(value, bool):
            raise InvalidOptionError(f"{key}={value!r} must be True or False")
    elif key == "digest_exclude":
        if isinstance(value, str) or not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
            raise InvalidOptionError(f"digest_exclude={value!r} must be a tuple of argument names")
    elif key == "requires_approval":
        if not isinstance(value, bool) and not callable(value):
            raise InvalidOptionError(
                f"requires_approval={value!r} must be True, False or a predicate over the arguments"
            )
    elif key == "approval_target":
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidOptionError(f"approval_target={value!r} must be the name of an argument")
    elif key == "risk":
        if value is not None and value not in _RISKS:
            raise InvalidOptionError(f"risk must be one of {_RISKS} or None, got: {value!r}")
    elif key == "namespace":
        _check_namespace(value)
    elif key == "durability":
        if value not in ("durable", "transient"):
            raise InvalidOptionError(f"durability must be 'durable' or 'transient', got: {value!r}")
    elif key == "runner":
        if value is not None and value not in _RUNNERS:
            raise InvalidOptionError(f"runner must be one of {', '.join(_RUNNERS)}, got: {value!r}")
    elif key == "runner_options":
        _check_runner_options(value)
    elif key == "routing":
        if value is not None and (
            not isinstance(value, dict) or not isinstance(value.get("terms"), list) or not value["terms"]
        ):
            raise InvalidOptionError(f"routing must be a scoring policy {{'terms': [...]}}, got: {value!r}")
    elif key == "affinity":
        if value is not None and not isinstance(value, dict) and not (
            isinstance(value, list)
            and value
            and all(isinstance(t, dict) and t.get("kind") in ("match", "when") for t in value)
        ):
            raise InvalidOptionError(f"affinity must be a label dict or a list of match/when terms, got: {value!r}")
    elif key == "hooks":
        if value is not None and (
            not isinstance(value, list)
            or not all(isinstance(h, dict) and {"on", "workflow", "principal"} <= set(h) for h in value)
        ):
            raise InvalidOptionError(f"hooks must be a list of hook specs (on, workflow, principal), got: {value!r}")
    elif key == "requests":
        from flux.domain.resource_request import ResourceRequest

        if value is not None and not isinstance(value, ResourceRequest):
            raise InvalidOptionError(f"requests={value!r} must be a flux.domain.resource_request.ResourceRequest")
    elif key == "schedule":
        from flux.domain.schedule import Schedule

        if value is not None and not isinstance(value, Schedule):
            raise InvalidOptionError(f"schedule={value!r} must be made by flux.cron(), flux.interval() or flux.once()")
    elif key in ("fallback", "rollback"):
        if value is not None and not callable(value):
            raise InvalidOptionError(f"{key}={value!r} must be callable")
    elif key == "secret_requests":
        if value is not None and (
            isinstance(value, str)
            or not isinstance(value, (list, tuple))
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise InvalidOptionError(f"secret_requests={value!r} must be a list of secret names")
    elif key == "output_storage":
        from flux.output_storage import OutputStorage

        if value not in (None, True, False) and not isinstance(value, OutputStorage):
            raise InvalidOptionError(
                f"output_storage={value!r} must be True or a flux.output_storage.OutputStorage "
                "(LocalFileStorage(), InlineOutputStorage() or a subclass of your own)"
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


def _check_namespace(value: Any) -> None:
    import re

    if value is None or value == "":
        return
    if not isinstance(value, str) or len(value) > 64 or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value):
        raise InvalidOptionError(
            f"Invalid namespace {value!r}: use up to 64 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )


def _check_runner_options(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidOptionError("runner_options must be a mapping")
    for key, item in value.items():
        if key not in _RUNNER_OPTIONS:
            raise InvalidOptionError(f"unknown runner option {key!r}; known options: {', '.join(_RUNNER_OPTIONS)}")
        if key in ("cpus", "timeout") and (isinstance(item, bool) or not isinstance(item, (int, float)) or item <= 0):
            raise InvalidOptionError(f"runner option {key!r} must be a positive number, got {item!r}")
        if key == "network" and item != "none":
            raise InvalidOptionError(f"runner option 'network' may only be 'none', got {item!r}")
        if key == "read_only" and item is not True:
            raise InvalidOptionError(f"runner option 'read_only' may only be True, got {item!r}")


def uses_output_storage(options: dict[str, Any]) -> bool:
    """Whether results go to the store's files (`output_storage=True` or LocalFileStorage())."""
    from flux.output_storage import LocalFileStorage

    value = options.get("output_storage")
    return value is True or isinstance(value, LocalFileStorage)


def _types(value: Any) -> tuple[type[BaseException], ...]:
    if not value:
        return ()
    return value if isinstance(value, tuple) else (value,)


def task_options(options: dict[str, Any]) -> TaskOptions:
    """The engine's TaskOptions for checked decorator options."""
    timeout = options.get("timeout")
    max_delay = options.get("retry_max_delay", 600.0)
    return TaskOptions(
        retry_max_attempts=options.get("retry_max_attempts", 0),
        retry_delay=float(options.get("retry_delay", 1.0)),
        retry_backoff=float(options.get("retry_backoff", 2.0)),
        timeout=None if not timeout else float(timeout),
        fallback=options.get("fallback"),
        rollback=options.get("rollback"),
        retry_max_delay=None if max_delay is None else float(max_delay),
        retry_jitter=float(options.get("retry_jitter", 0.0)),
        retry_on=_types(options.get("retry_on")),
        non_retryable=_types(options.get("non_retryable")),
    )


def check_options(what: str, given: dict[str, Any], allowed: set[str]) -> None:
    """Raises InvalidOptionError for an unknown option or a bad value, naming both."""
    if given.get("sensitive") is True and given.get("cache") is True:
        raise InvalidOptionError("sensitive=True cannot be combined with cache=True")
    for key, value in given.items():
        if value is UNSET:
            continue
        if key in allowed:
            _check_value(key, value)
            continue
        if key in _NOT_YET:
            raise InvalidOptionError(f"{what} option {key}={value!r} is not supported by this version of Flux yet")
        raise InvalidOptionError(f"unknown {what} option {key}={value!r}; known options: {', '.join(sorted(allowed))}")
