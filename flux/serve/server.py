"""`flux serve`: load the workflows, build the application, run it under uvicorn."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from flux._engine.errors import InvalidOptionError, WorkflowLoadError
from flux._engine.store import open_store
from flux.loader import load_file, load_module, load_target, workflows_in
from flux.workflow import Workflow

__all__ = ["load_served", "run_server"]


def load_served(targets: Sequence[str]) -> list[Workflow]:
    """The workflows that `flux serve app.py pkg.module other.py:wf` serves: every workflow of a
    file or module, or the one named after a colon.

    Raises:
        WorkflowLoadError: a target that cannot be loaded, or that defines no workflow.
    """
    found: list[Workflow] = []
    for target in targets:
        if ":" in target and not os.path.exists(target):
            found.append(load_target(target))
            continue
        is_file = target.endswith(".py") or os.sep in target or os.path.exists(target)
        module = load_file(target) if is_file else load_module(target)
        workflows = list(workflows_in(module).values())
        if not workflows:
            raise WorkflowLoadError(f"{target}: defines no workflow (no @workflow at its top level)")
        found += workflows
    return found


def run_server(
    targets: Sequence[str],
    *,
    store: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    durability: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Serves the API and the console until interrupted (Ctrl-C, SIGTERM).

    Raises:
        WorkflowLoadError, InvalidOptionError, StoreError.
    """
    import uvicorn

    from flux.serve.app import create_app
    from flux.serve.security import is_loopback

    out = out or sys.stdout
    if not 0 < port < 65536:
        raise InvalidOptionError(f"--port {port} must be between 1 and 65535")
    opened = open_store(store)
    workflows = load_served(targets)
    loopback = is_loopback(host)
    app = create_app(opened, workflows, token=token, loopback_only=loopback, durability=durability)
    names = ", ".join(sorted({wf.name for wf in workflows})) or "none"
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    print(f"flux serve: store {opened.url}; workflows: {names}", file=out)
    print(
        f"flux serve: console {where}/  API {where}/api/v1  docs {where}/docs"
        + ("  (token required)" if token else ""),
        file=out,
    )
    if not loopback and token is None:
        print(
            f"flux serve: warning: listening on {host} without a token; anyone who can reach it can run workflows",
            file=out,
        )
    out.flush()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="asyncio",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )
    uvicorn.Server(config).run()
