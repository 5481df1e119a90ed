"""The `flux` command line: a thin typer + rich layer over `flux.runner`."""

from __future__ import annotations

import sys

__all__ = ["main"]

_EXTRA = ("typer", "rich", "click")


def _extra_installed() -> bool:
    """Whether typer and rich can be imported, without importing them."""
    from importlib.util import find_spec

    try:
        return find_spec("typer") is not None and find_spec("rich") is not None
    except ModuleNotFoundError:  # a finder that refuses the name outright
        return False


def main() -> None:
    """The `flux` script: the command line, or one line saying how to install it when the
    package was installed without its `cli` extra. The plain forms of `flux exec` and `flux
    replay --summary` run without building the typer app (flux._cli.quick)."""
    try:
        _command()
    finally:
        # The command is over and its output written: what is left is freed as the interpreter
        # exits, without the cycle collector going over every object of every module again
        # (15% of a one-task `flux exec`'s wall time). Exit handlers still run.
        import gc

        gc.freeze()


def _command() -> None:
    if _extra_installed():
        from flux._cli.quick import run as run_plain

        if run_plain(sys.argv[1:]):
            return
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
