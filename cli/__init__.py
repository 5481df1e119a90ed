"""The `flux` command line: a thin typer + rich layer over `flux.runner`."""

from __future__ import annotations

import sys

__all__ = ["main"]

_EXTRA = ("typer", "rich", "click")


def main() -> None:
    """The `flux` script: the command line, or one line saying how to install it when the
    package was installed without its `cli` extra."""
    try:
        from flux._cli.main import main as run
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in _EXTRA:
            raise
        sys.stderr.write(
            f"flux: the command line needs {error.name}, which is not installed; "
            "install it with: pip install 'flux-replay[cli]'\n"
        )
        raise SystemExit(2) from None
    run()
