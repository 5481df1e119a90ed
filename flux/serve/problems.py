"""Errors as `application/problem+json` (RFC 9457): one place maps Flux's error tree to HTTP.

    ExecutionNotFoundError, WorkflowLoadError,
    ScheduleNotFoundError (with `schedule`)               404
    ExecutionLockedError (with `owner`), ExecutionStateError,
    ExecutionExistsError, NondeterminismError,
    ScheduleExistsError (with `schedule`)                 409
    InvalidExecutionIdError, InvalidOptionError, EncodeError,
    DecodeError, bad JSON, bad parameters                 422
    DurabilityError, OwnershipLostError, StoreError,
    SecretError                                           503
    JournalCorruptError, BlobError                        500 (the stored data is damaged)
    anything else                                         500, without its message

The body names the Flux error (`error`, `title`) and says what happened (`detail`); an
unexpected exception's message is never sent (it could hold anything), only its type is logged.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.responses import Response

from flux._engine.errors import (
    BlobError,
    DecodeError,
    DurabilityError,
    EncodeError,
    ExecutionLockedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    FluxError,
    InvalidExecutionIdError,
    InvalidOptionError,
    JournalCorruptError,
    NondeterminismError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    SecretError,
    StoreError,
    WorkflowLoadError,
)

__all__ = ["PROBLEM_JSON", "PROBLEM_RESPONSES", "BadRequest", "problem", "problem_of", "status_of"]

log = logging.getLogger("flux.serve")

PROBLEM_JSON = "application/problem+json"

# Most specific first: the first class an error is an instance of decides.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (ExecutionNotFoundError, 404),
    (WorkflowLoadError, 404),
    (ScheduleNotFoundError, 404),
    (ScheduleExistsError, 409),
    (InvalidExecutionIdError, 422),
    (ExecutionLockedError, 409),
    (NondeterminismError, 409),
    (ExecutionStateError, 409),
    (DurabilityError, 503),
    (SecretError, 503),
    (JournalCorruptError, 500),
    (BlobError, 500),
    (StoreError, 503),
    (InvalidOptionError, 422),
    (EncodeError, 422),
    (DecodeError, 422),
)


_PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "error"],
    "properties": {
        "type": {"type": "string", "examples": ["urn:flux:error:ExecutionNotFoundError"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "error": {"type": "string", "description": "the name of the Flux error"},
        "execution_id": {"type": "string"},
        "schedule": {"type": "string", "description": "the name of the schedule the error is about"},
        "owner": {"type": "object", "description": "pid, host, since: who runs a locked execution"},
    },
}
# The error answers every route may give, for the OpenAPI document (SPEC.md 11.1).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": what, "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}}}
    for status, what in [
        (404, "no such execution, workflow or schedule"),
        (409, "locked by another process (owner), not in a state that allows it, or a schedule that exists"),
        (422, "an invalid id, parameter or body"),
        (503, "the store cannot write durably or cannot be used"),
    ]
}


class BadRequest(ValueError):
    """A request the API cannot act on (bad JSON, a parameter out of range): 422, or `status`."""

    def __init__(self, message: str, status: int = 422, name: str = "BadRequest") -> None:
        super().__init__(message)
        self.status = status
        self.name = name


def status_of(error: BaseException) -> int:
    """The HTTP status of an error of the tree (500 for anything unexpected)."""
    if isinstance(error, BadRequest):
        return error.status
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    if isinstance(error, (FluxError, ValueError)):
        return 422
    return 500


def problem(
    status: int, name: str, detail: str, instance: str = "", headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """A problem+json response naming the error `name`."""
    body: dict[str, Any] = {"type": f"urn:flux:error:{name}", "title": name, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body["error"] = name
    body.update(extra)
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_of(error: BaseException, instance: str = "") -> Response:
    """The problem+json response for an exception raised while serving a request."""
    status = status_of(error)
    if status == 500 and not isinstance(error, FluxError):
        log.error("%s on %s: %s", type(error).__name__, instance, error, exc_info=error)
        return problem(500, "InternalError", "the server failed to answer this request; its log says why", instance)
    name = error.name if isinstance(error, BadRequest) else type(error).__name__
    extra: dict[str, Any] = {}
    if isinstance(error, ExecutionLockedError):
        extra["owner"] = {k: v for k, v in error.holder.items() if k in ("pid", "host", "since")}
    execution_id = getattr(error, "execution_id", None)
    if isinstance(execution_id, str):
        extra["execution_id"] = execution_id
    if isinstance(error, (ScheduleNotFoundError, ScheduleExistsError)):
        extra["schedule"] = error.name
    return problem(status, name, " ".join(str(error).split()), instance, **extra)
