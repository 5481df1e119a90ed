"""Run the `flux` command in-process, with its standard output and error kept apart whatever the
installed click (before 8.2 they are kept apart only when asked)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner

from flux._cli.main import app

__all__ = ["Invoked", "invoke"]

_SEPARATE = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters else {}


@dataclass
class Invoked:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def output(self) -> str:
        """Both streams, standard output first."""
        return self.stdout + self.stderr


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Invoked:
    result: Any = CliRunner(**_SEPARATE).invoke(app, list(args), input=input, env=env)
    return Invoked(result.exit_code, result.stdout, result.stderr, result.exception)
