"""Flux's own HTTP routes, so that scripts written against Flux's server work here (SPEC.md 11.6).

    GET  /workflows                                        the served workflows
    GET  /workflows/{name}                                 one of them
    POST /workflows/{name}/run/{mode}                      start; body = the input; mode sync|async|stream
    POST /workflows/{name}/resume/{execution_id}/{mode}    answer its pause; body = the input
    GET  /workflows/{name}/status/{execution_id}           where it stands
    GET  /workflows/{name}/cancel/{execution_id}           cancel; ?mode=async (ask) or sync (wait)

Every route takes `?detailed=true` for the execution's events. The answer is Flux's execution
summary: `execution_id`, `workflow_name` (and `name`), `input`, `output`, `state` in capitals
(CREATED, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED, INTERRUPTED; CANCELLING while a
cancellation is under way), `created_at`, `updated_at`. Values are in recorded form.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from flux._engine.errors import ExecutionNotFoundError
from flux.domain.events import events_from_records
from flux.serve.api import JSON, JSON_BODY, json_body, service_of
from flux.serve.problems import PROBLEM_RESPONSES, BadRequest
from flux.serve.service import Service
from flux.serve.stream import flux_events

__all__ = ["router", "summary_of"]

router = APIRouter(prefix="/workflows", tags=["Flux-compatible"], responses=PROBLEM_RESPONSES)

_MODES = ("sync", "async", "stream")
_FINAL = {"completed", "failed", "cancelled"}
DETAILED = Query(False, description="Add the execution's events.")


def summary_of(
    data: dict[str, Any], events: list[dict[str, Any]] | None = None, cancelling: bool = False
) -> dict[str, Any]:
    """Flux's execution summary of an execution's JSON (`GET /api/v1/executions/{id}`)."""
    status = str(data["status"])
    out: dict[str, Any] = {
        "execution_id": data["execution_id"],
        "workflow_name": data["workflow"],
        "name": data["workflow"],
        "input": data["input"],
        "output": data["error"] if status == "failed" else data["output"],
        "state": "CANCELLING" if cancelling and status not in _FINAL else status.upper(),
        "created_at": data["created"],
        "updated_at": data["updated"],
    }
    if status in _FINAL:
        out["completed_at"] = data["updated"]
    if data.get("error"):
        out["error"] = data["error"]
    if data.get("waiting"):
        out["waiting"] = data["waiting"]
    if events is not None:
        out["events"] = events
    return out


async def _summary(service: Service, execution_id: str, detailed: bool, cancelling: bool = False) -> dict[str, Any]:
    data = await service.execution(execution_id)
    events = None
    if detailed:
        folded = await service.folded(execution_id)
        found = await anyio.to_thread.run_sync(
            lambda: events_from_records(list(folded.read.records), load=lambda tree: tree)
        )
        events = [
            {
                "type": e.type.value,
                "source_id": e.source_id,
                "name": e.name,
                "value": e.value,
                "time": e.time.isoformat() if e.time is not None else None,
                "seq": e.seq,
            }
            for e in found
        ]
    return summary_of(data, events, cancelling)


def _mode(mode: str) -> str:
    if mode not in _MODES:
        raise BadRequest(f"mode {mode!r}: use sync, async or stream")
    return mode


async def _of_workflow(service: Service, name: str, execution_id: str) -> None:
    """An execution of another workflow is not found under this one."""
    summary = await anyio.to_thread.run_sync(service.store.summary, execution_id)
    if summary.workflow != name:
        raise ExecutionNotFoundError(execution_id, f"the executions of workflow {name!r}")


def _answer(service: Service, execution_id: str, mode: str, detailed: bool) -> Any:
    if mode == "stream":
        return StreamingResponse(
            flux_events(
                service.store,
                execution_id,
                lambda: _summary(service, execution_id, detailed),
                lambda: service.stopped(execution_id),
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    return None


@router.get("", summary="The served workflows (Flux)")
async def workflows(request: Request) -> JSON:
    return JSON(
        [{"name": w["name"], "version": 1, "description": w["doc"]} for w in service_of(request).workflow_list()]
    )


@router.get("/{name}", summary="One served workflow (Flux)")
async def workflow(request: Request, name: str) -> JSON:
    service = service_of(request)
    service.workflow(name)
    found = next(w for w in service.workflow_list() if w["name"] == name)
    return JSON(
        {
            "name": name,
            "version": 1,
            "description": found["doc"],
            "module": found["module"],
            "qualname": found["qualname"],
        }
    )


@router.post(
    "/{name}/run/{mode}",
    openapi_extra=JSON_BODY,
    summary="Run a workflow: sync waits, async returns at once, stream sends events (Flux)",
)
async def run(request: Request, name: str, mode: str, detailed: bool = DETAILED) -> Response:
    _mode(mode)
    service = service_of(request)
    _, value = await json_body(request)
    data, _ = await service.start(name, value, None, None)
    execution_id = data["execution_id"]
    streamed = _answer(service, execution_id, mode, detailed)
    if streamed is not None:
        return streamed  # type: ignore[no-any-return]
    if mode == "sync":
        await service.result(execution_id)
    return JSON(await _summary(service, execution_id, detailed))


@router.post(
    "/{name}/resume/{execution_id}/{mode}",
    openapi_extra=JSON_BODY,
    summary="Resume a paused execution with an input (Flux)",
)
async def resume(request: Request, name: str, execution_id: str, mode: str, detailed: bool = DETAILED) -> Response:
    _mode(mode)
    service = service_of(request)
    await _of_workflow(service, name, execution_id)
    has_input, value = await json_body(request)
    await service.resume(execution_id, value, has_input, None, None)
    streamed = _answer(service, execution_id, mode, detailed)
    if streamed is not None:
        return streamed  # type: ignore[no-any-return]
    if mode == "sync":
        await service.result(execution_id)
    return JSON(await _summary(service, execution_id, detailed))


@router.get("/{name}/status/{execution_id}", summary="Where an execution stands (Flux)")
async def status(request: Request, name: str, execution_id: str, detailed: bool = DETAILED) -> JSON:
    service = service_of(request)
    await _of_workflow(service, name, execution_id)
    return JSON(await _summary(service, execution_id, detailed))


@router.get(
    "/{name}/cancel/{execution_id}", summary="Cancel an execution; mode=sync waits until it is cancelled (Flux)"
)
async def cancel(
    request: Request, name: str, execution_id: str, mode: str = Query("async"), detailed: bool = DETAILED
) -> JSON:
    if mode not in ("sync", "async"):
        raise BadRequest(f"mode {mode!r}: use sync or async")
    service = service_of(request)
    await _of_workflow(service, name, execution_id)
    await service.cancel(execution_id, 30.0 if mode == "sync" else 0.0)
    return JSON(await _summary(service, execution_id, detailed, cancelling=True))
