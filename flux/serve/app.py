"""The application `flux serve` runs: the API, Flux's routes, the console and the API docs.

    create_app(store, workflows, token=None)   a FastAPI (ASGI) application

Everything is served from this process and from files inside the package: the console's HTML,
script and styles, and Swagger UI's assets (the `swagger-ui-bundle-v2` package); no page loads
anything from another host.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from flux._engine.errors import FluxError, InvalidOptionError
from flux._engine.pacing import collector_paced
from flux.client import Client
from flux.serve import api, compat
from flux.serve.problems import problem, problem_of
from flux.serve.security import Guard, Headers
from flux.serve.service import Service
from flux.workflow import Workflow

__all__ = ["create_app"]

STATIC = Path(__file__).resolve().parent / "static"

_DESCRIPTION = """Executions of one Flux store: start, list, inspect, follow live (Server-Sent
Events whose id is the journal seq), resume, cancel, fork, replay and diff; and its schedules:
list with their next fires, create, pause, resume, trigger now and delete. Values are in their
recorded form (SPEC.md 3). Errors are `application/problem+json` naming the Flux error."""


def _version() -> str:
    try:
        return metadata.version("flux-replay")
    except metadata.PackageNotFoundError:
        return "0"


def _swagger_dir() -> str | None:
    try:
        import swagger_ui_bundle  # type: ignore[import-untyped]  # the swagger-ui-bundle-v2 package: Swagger UI 5, for OpenAPI 3.1
    except ImportError:
        return None
    path = str(swagger_ui_bundle.swagger_ui_path)
    return path if os.path.isfile(os.path.join(path, "swagger-ui-bundle.js")) else None


def _validation_detail(err: RequestValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(
    store: Any = None,
    workflows: Iterable[Workflow] = (),
    *,
    token: str | None = None,
    loopback_only: bool = True,
    durability: str | None = None,
) -> FastAPI:
    """The ASGI application of `flux serve`.

    Args:
        store: the store (a directory, `memory:NAME`, a URL or a store object).
        workflows: the workflows it may start (by name).
        token: when given, every route but /healthz needs it (Bearer, or Basic's password).
        loopback_only: answer only requests addressed to 127.0.0.1, localhost or [::1].
        durability: of the runs it makes ("fsync", the default, or "os").

    Raises:
        InvalidOptionError: two workflows of the same name.
    """
    served: dict[str, Workflow] = {}
    for wf in workflows:
        other = served.get(wf.name)
        if other is not None and other is not wf:
            raise InvalidOptionError(
                f"two workflows are named {wf.name!r} ({other.fn.__module__}.{other.fn.__qualname__} and "
                f"{wf.fn.__module__}.{wf.fn.__qualname__}); serve one of them"
            )
        served[wf.name] = wf
    service = Service(Client(store, durability=durability), served)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.warm()
        # Runs come and go with the requests: the collector keeps the pace of running runs
        # while the app serves (SPEC.md 7), as in `flux worker`.
        with collector_paced():
            yield
        await service.close()

    extra: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        extra["telemetry"] = {"tracing": False}  # newer FastAPI traces every request unless told not to
    app = FastAPI(
        **extra,
        title="Flux",
        version=_version(),
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        default_response_class=api.JSON,
        lifespan=lifespan,
    )
    app.state.service = service

    async def flux_error(request: Request, exc: Exception) -> Response:
        return problem_of(exc, request.url.path)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem(422, "InvalidRequest", _validation_detail(exc), request.url.path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        name = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        detail = "no such route; /docs lists them" if exc.status_code == 404 else str(exc.detail)
        return problem(exc.status_code, name, detail, request.url.path)

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    # Handlers of specific classes answer inside the middleware (the answer gets its headers);
    # a handler of Exception would answer from the outermost layer and log a traceback.
    app.add_exception_handler(FluxError, flux_error)
    app.add_exception_handler(ValueError, flux_error)
    app.add_exception_handler(OSError, flux_error)
    app.add_exception_handler(Exception, flux_error)

    @app.get("/healthz", tags=["server"], summary="Liveness (needs no token)")
    async def healthz() -> api.JSON:
        return api.JSON({"status": "ok"})

    app.include_router(api.router)
    app.include_router(api.schedule_router)
    app.include_router(compat.router)
    _console(app)
    app.add_middleware(Guard, token=token, loopback_only=loopback_only)
    app.add_middleware(Headers)  # outermost: Guard's refusals get the headers too
    return app


def _console(app: FastAPI) -> None:
    """The console (/, /static) and the API docs (/docs), from files in the packages."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    swagger = _swagger_dir()
    if swagger is not None:
        app.mount("/docs/assets", StaticFiles(directory=swagger), name="swagger")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        if swagger is None:
            return problem(
                404,
                "NotFound",
                "the API docs need the serve extra (pip install 'flux-replay[serve]'); /openapi.json is here",
                "/docs",
            )
        return HTMLResponse((STATIC / "docs.html").read_text("utf-8"))
