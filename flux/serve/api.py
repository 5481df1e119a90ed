"""The API, version 1 (SPEC.md 11): executions and schedules of the served store, values in
recorded form.

Each route parses its parameters, calls one method of `Service` and renders the result. Bodies
are JSON, parsed here (any content type is read as JSON: a browser cannot send a cross-site
request that gets this far, see flux/serve/security.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from starlette.responses import Response, StreamingResponse

from flux._engine.schedules import DEFAULT_GRACE, DEFAULT_MISSED_LIMIT
from flux.schedules import build_schedule
from flux.serve.problems import PROBLEM_RESPONSES, BadRequest
from flux.serve.service import Service, status_values
from flux.serve.stream import parse_last_event_id, record_events
from flux.serve.views import journal_bytes

__all__ = ["JSON", "JSON_BODY", "json_body", "router", "schedule_router", "service_of"]

router = APIRouter(prefix="/api/v1", tags=["executions"], responses=PROBLEM_RESPONSES)
schedule_router = APIRouter(prefix="/api/v1", tags=["schedules"], responses=PROBLEM_RESPONSES)

ID = Path(description="An execution id: 1 to 64 characters of [A-Za-z0-9_-], starting with a letter or digit.")
STATUSES = Query(None, description="One or more statuses (repeat it, or separate them with commas).")
WAIT = Query(0.0, ge=0, le=300, description="Wait up to this many seconds for the execution to finish or pause.")
JSON_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {}}}}}


class JSON(Response):
    """JSON written by orjson (values in recorded form are plain JSON trees)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def service_of(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def json_body(request: Request) -> tuple[bool, Any]:
    """(whether there was a body, its JSON value)."""
    raw = await request.body()
    if not raw.strip():
        return False, None
    try:
        return True, orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadRequest(f"the body is not valid JSON: {err}") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _utc(text: str | None, name: str) -> str | None:
    """A time filter as the journal writes times (UTC, microseconds), so that it compares
    with `created` as text; a date or a time without an offset is taken as UTC."""
    if text is None or not text.strip():
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{name}={text!r} is not an ISO-8601 date or time (2026-12-01 or 2026-12-01T10:00:00+00:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


@router.get("/workflows", summary="The workflows this server runs")
async def workflows(request: Request) -> JSON:
    return JSON(service_of(request).workflow_list())


@router.post(
    "/workflows/{name}/executions",
    status_code=201,
    openapi_extra=JSON_BODY,
    summary="Start an execution (body: the input, in recorded form)",
    responses={200: {"description": "the execution of that execution_id, which existed already"}},
)
async def start(
    request: Request,
    name: str,
    execution_id: str | None = Query(
        None, description="Caller-chosen id: starting it again gives back the same execution."
    ),
    wait: float = WAIT,
) -> JSON:
    _, value = await json_body(request)
    data, created = await service_of(request).start(name, value, execution_id, wait)
    location = f"/api/v1/executions/{data['execution_id']}"
    return JSON(data, status_code=201 if created else 200, headers={"Location": location})


@router.get("/executions", summary="Executions, newest first, with filters and a keyset cursor")
async def executions(
    request: Request,
    status: list[str] | None = STATUSES,
    workflow: str | None = None,
    created_after: str | None = Query(None, description="ISO-8601 date or time (UTC when no offset)."),
    created_before: str | None = Query(None, description="ISO-8601 date or time (UTC when no offset)."),
    prefix: str | None = Query(None, description="Execution ids starting with this."),
    schedule: str | None = Query(None, description="Only executions this schedule started (its fires and triggers)."),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = Query(None, description="The `cursor` of the previous page."),
) -> JSON:
    page = await service_of(request).page(
        status=status_values(status),
        workflow=workflow or None,
        limit=limit,
        cursor=cursor or None,
        prefix=prefix or None,
        created_after=_utc(created_after, "created_after"),
        created_before=_utc(created_before, "created_before"),
        schedule=schedule or None,
    )
    return JSON(page)


@router.get(
    "/executions/{execution_id}", summary="One execution: status, input, output or error, times, pauses, timers"
)
async def execution(
    request: Request,
    execution_id: str = ID,
    calls: bool = Query(False, description="Include its calls (as /calls gives them)."),
) -> JSON:
    return JSON(await service_of(request).execution(execution_id, calls))


@router.get("/executions/{execution_id}/calls", summary="Its calls, as `flux show` prints them")
async def calls(
    request: Request,
    execution_id: str = ID,
    outcome: str | None = Query(None, description="Only calls of this outcome (failed, open, ...)."),
) -> JSON:
    return JSON({"execution_id": execution_id, "calls": await service_of(request).calls(execution_id, outcome)})


@router.get(
    "/executions/{execution_id}/records",
    summary="Its journal, byte for byte (NDJSON)",
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def records(
    request: Request,
    execution_id: str = ID,
    from_seq: int = Query(0, ge=0, description="The first seq to send."),
    limit: int | None = Query(None, ge=1, description="Send at most this many lines."),
    download: bool = Query(False, description="As an attachment named <execution_id>.jsonl."),
) -> Response:
    folded = await service_of(request).folded(execution_id)
    data = journal_bytes(folded.read, execution_id, from_seq, limit)
    headers = {"X-Flux-Records": str(len(folded.read.records))}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{execution_id}.jsonl"'
    return Response(data, media_type="application/x-ndjson", headers=headers)


@router.get(
    "/executions/{execution_id}/records/stream",
    summary="Its records as Server-Sent Events, `id:` = seq",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    execution_id: str = ID,
    from_seq: int = Query(0, ge=0, description="The first seq to send (Last-Event-ID takes precedence)."),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingResponse:
    service = service_of(request)
    try:
        seen = parse_last_event_id(last_event_id)
    except ValueError as err:
        raise BadRequest(str(err)) from None
    await service.folded(execution_id)  # a missing or damaged journal is an error now, not a broken stream
    after = seen if seen is not None else from_seq - 1
    return StreamingResponse(
        record_events(service.store, execution_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/executions/{execution_id}/resume",
    openapi_extra=JSON_BODY,
    summary='Answer a waiting pause: {"input": <recorded form>, "pause": "<name or call id>", "detach": false}',
)
async def resume(request: Request, execution_id: str = ID, wait: float = WAIT) -> JSON:
    _, body = await json_body(request)
    body = _object(body, "the body")
    pause = body.get("pause")
    if pause is not None and not isinstance(pause, str):
        raise BadRequest("pause must be the name or call id of a waiting pause")
    detach = body.get("detach", False)
    if not isinstance(detach, bool):
        raise BadRequest("detach must be true or false")
    data = await service_of(request).resume(execution_id, body.get("input"), "input" in body, pause, wait, detach)
    return JSON(data)


@router.post("/executions/{execution_id}/cancel", summary="Cancel a running, paused or interrupted execution")
async def cancel(request: Request, execution_id: str = ID, wait: float = Query(10.0, ge=0, le=300)) -> JSON:
    return JSON(await service_of(request).cancel(execution_id, wait))


@router.post(
    "/executions/{execution_id}/fork",
    status_code=201,
    openapi_extra=JSON_BODY,
    summary="A new execution of its first N records: "
    '{"at": N, "set_result": {"seq": S, "value": ...}, "input": ..., "run": true}',
)
async def fork(request: Request, execution_id: str = ID, wait: float = WAIT) -> JSON:
    _, body = await json_body(request)
    body = _object(body, "the body")
    at = body.get("at")
    if type(at) is not int:
        raise BadRequest('fork needs "at": the number of records to keep (an integer)')
    replaced = None
    if body.get("set_result") is not None:
        spec = _object(body["set_result"], "set_result")
        if type(spec.get("seq")) is not int or "value" not in spec:
            raise BadRequest('set_result must be {"seq": <seq of a result record>, "value": <recorded form>}')
        replaced = (spec["seq"], spec["value"])
    run = body.get("run", True)
    if not isinstance(run, bool):
        raise BadRequest("run must be true or false")
    data = await service_of(request).fork(execution_id, at, replaced, body.get("input"), "input" in body, run, wait)
    return JSON(data, status_code=201, headers={"Location": f"/api/v1/executions/{data['execution_id']}"})


@router.post("/executions/{execution_id}/replay", summary="Replay its journal against the code this server loaded")
async def replay(
    request: Request, execution_id: str = ID, calls: bool = Query(False, description="Include the calls.")
) -> JSON:
    return JSON(await service_of(request).replay(execution_id, calls))


@router.get("/executions/{a}/diff/{b}", summary="Where two executions of a workflow differ (`flux diff --json`)")
async def diff(request: Request, a: str, b: str) -> JSON:
    return JSON(await service_of(request).diff(a, b))


# -- schedules (SPEC.md 14) -------------------------------------------------------------------------

NAME = Path(description="A schedule name: 1 to 40 of [A-Za-z0-9_-], starting with a letter or digit.")
FIRES = Query(5, ge=0, le=100, description="How many of its next fire times `next_fires` gives.")
_CREATE_FIELDS = (
    "name",
    "workflow",
    "cron",
    "interval",
    "at",
    "timezone",
    "input",
    "missed",
    "missed_limit",
    "overlap",
    "grace",
    "paused",
)


def _text(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{field} must be a string, not {type(value).__name__} {value!r}")
    return value


def _required(body: dict[str, Any], field: str) -> str:
    value = _text(body, field)
    if not value:
        raise BadRequest(f"{field} is missing: give the schedule's {field} as a string")
    return value


@schedule_router.get("/schedules", summary="The store's schedules, by name, with their next fire times")
async def schedule_list(request: Request, next_fires: int = FIRES) -> JSON:
    return JSON({"items": await service_of(request).schedules(next_fires)})


@schedule_router.post(
    "/schedules",
    status_code=201,
    openapi_extra=JSON_BODY,
    summary='Create a schedule, as `flux schedule create`: {"name", "workflow", "cron" | "interval" | "at", '
    '"timezone", "input", "missed", "missed_limit", "overlap", "grace", "paused"}',
)
async def schedule_create(request: Request, next_fires: int = FIRES) -> JSON:
    _, body = await json_body(request)
    if body is None:
        raise BadRequest('the body must be a JSON object: {"name": "nightly", "workflow": "w", "cron": "30 1 * * *"}')
    body = _object(body, "the body")
    unknown = sorted(set(body) - set(_CREATE_FIELDS))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; the fields are {', '.join(_CREATE_FIELDS)}")
    name = _required(body, "name")
    workflow = _required(body, "workflow")
    every = body.get("interval")
    if every is not None and (isinstance(every, bool) or not isinstance(every, (str, int, float))):
        raise BadRequest(f"interval must be a string such as '15m' or a number of seconds, not {every!r}")
    zone = _text(body, "timezone")  # null or left out: UTC
    paused = body.get("paused", False)
    if not isinstance(paused, bool):
        raise BadRequest(f"paused must be true or false, not {paused!r}")
    schedule = build_schedule(
        cron_expr=_text(body, "cron"),
        every=every,
        at=_text(body, "at"),
        timezone="UTC" if zone is None else zone,
        overlap=body.get("overlap", "skip"),
        missed=body.get("missed", "latest"),
        missed_limit=body.get("missed_limit", DEFAULT_MISSED_LIMIT),
        grace=body.get("grace", DEFAULT_GRACE),
        flag="",
    )
    data = await service_of(request).create_schedule(name, workflow, schedule, body.get("input"), paused, next_fires)
    return JSON(data, status_code=201, headers={"Location": f"/api/v1/schedules/{data['name']}"})


@schedule_router.get("/schedules/{name}", summary="One schedule: its definition, policies, state and next fire times")
async def schedule_get(request: Request, name: str = NAME, next_fires: int = FIRES) -> JSON:
    return JSON(await service_of(request).schedule(name, next_fires))


@schedule_router.post("/schedules/{name}/pause", summary="Stop its fires until it is resumed (again: no change)")
async def schedule_pause(request: Request, name: str = NAME, next_fires: int = FIRES) -> JSON:
    return JSON(await service_of(request).pause_schedule(name, next_fires))


@schedule_router.post(
    "/schedules/{name}/resume", summary="Fire it again from the first fire after now (not paused: no change)"
)
async def schedule_resume(request: Request, name: str = NAME, next_fires: int = FIRES) -> JSON:
    return JSON(await service_of(request).resume_schedule(name, next_fires))


@schedule_router.post(
    "/schedules/{name}/trigger",
    status_code=201,
    summary="Start one execution of it now (`flux schedule trigger`), run here; answers the execution",
)
async def schedule_trigger(request: Request, name: str = NAME, wait: float = WAIT) -> JSON:
    data = await service_of(request).trigger_schedule(name, wait)
    return JSON(data, status_code=201, headers={"Location": f"/api/v1/executions/{data['execution_id']}"})


@schedule_router.delete("/schedules/{name}", summary="Delete a schedule (the executions it started stay)")
async def schedule_delete(request: Request, name: str = NAME) -> JSON:
    await service_of(request).delete_schedule(name)
    return JSON({"deleted": name})
