"""`python -m flux.testing._replay JOURNAL [--file PATH]`: replays a journal in this process and
prints one verdict line for the `replay-subprocess` property of flux.testing.

The checker starts it with another PYTHONHASHSEED, so that code whose order depends on string
hashes (iterating a set of strings) asks for its calls in another order here. It only reports;
the checking process compares the verdict with its own run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from flux._engine.codec import class_ref, encode
from flux._engine.errors import EncodeError, FluxError
from flux.debug import replay
from flux.testing._check import VERDICT_PREFIX


def verdict(journal: str, file: str | None = None) -> dict[str, Any]:
    """What replaying `journal` gives: status, output as recorded JSON, or the error that stopped it."""
    try:
        result = replay(journal, file=file, calls=False)
    except FluxError as err:
        return {"error": f"{type(err).__name__}: {err}"}
    if result.divergence is not None:
        return {"error": f"NondeterminismError: {result.divergence.message}"}
    status = "replayed" if result.status == "stopped" else result.status
    out: dict[str, Any] = {"status": status}
    if status == "completed":
        try:
            out["output"] = encode(result.output)
        except EncodeError as err:
            out["error"] = f"{type(err).__name__}: {err}"
    elif status == "failed" and isinstance(result.output, BaseException):
        out["failure"] = [class_ref(type(result.output)), str(result.output)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flux.testing._replay", description=__doc__)
    parser.add_argument("journal")
    parser.add_argument("--file", default=None, help="the workflow's file, if not the one the header names")
    args = parser.parse_args(argv)
    result = verdict(args.journal, args.file)
    sys.stdout.write("\n" + VERDICT_PREFIX + orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
