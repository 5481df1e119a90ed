"""`flux serve`: the HTTP API of a store and its web console (SPEC.md 11).

    from flux.serve import create_app
    app = create_app(".flux", [order_workflow], token=None)   # an ASGI app, for uvicorn

Only `flux serve` and applications that mount the API import this package: `import flux` and
`flux exec` never load FastAPI. It needs the `serve` extra (`pip install 'flux-replay[serve]'`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flux.serve.app import create_app

__all__ = ["create_app", "load_served", "run_server"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from flux.serve.app import create_app

        return create_app
    if name in ("load_served", "run_server"):
        from flux.serve import server

        return getattr(server, name)
    raise AttributeError(f"module 'flux.serve' has no attribute {name!r}")
