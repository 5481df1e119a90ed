"""`flux exec` in its plain form, parsed without typer: the cold start of a one-task run.

Building the typer app imports typer, click and rich, and typer 0.29 coerces every argument
through pydantic: about three times the rest of a one-task run. Most runs of `flux exec` are one
line of a script, `flux exec app.py wf --input JSON [--store S] [--json]`, whose parse is plain;
this module parses that form only and returns None for anything else (`--help`, `--debug`, an
option it does not know or given twice, a value that starts with `-`, a third argument, shell
completion), which the typer app then parses as before, with its own help and errors. Both run
`base.exec_command` inside `base.guarded`.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["parse_exec", "run_exec"]

# The options of `flux exec` (flux._cli.main.exec_) that take a value, and its flags.
_VALUED = {
    "--input": "input",
    "-i": "input",
    "--input-file": "input_file",
    "--id": "execution_id",
    "--store": "store",
    "--home": "store",
    "--durability": "durability",
}
_FLAGS = {"--json": "as_json", "--detach": "detach"}
# The only options of `flux` itself allowed before `exec`.
_GLOBAL = {"--store": "store", "--home": "store"}


def _option(token: str, rest: list[str], known: dict[str, str]) -> tuple[str, str] | None:
    """(keyword, value) of an option that takes a value, consuming its value from `rest`; None
    when `token` is not one or its value is missing or looks like an option."""
    name, equals, value = token.partition("=")
    if name not in known or (equals and not name.startswith("--")):
        return None
    if not equals:
        if not rest:
            return None
        value = rest.pop(0)
    if value.startswith("-") and value != "-":
        return None
    return known[name], value


def parse_exec(argv: list[str]) -> tuple[str | None, dict[str, Any]] | None:
    """The store given before `exec` and the keywords of `base.exec_command`, when `argv` is the
    plain form of `flux exec`; None when the typer app must parse it."""
    rest = list(argv)
    before: dict[str, str] = {}
    while rest and rest[0] != "exec":
        found = _option(rest.pop(0), rest, _GLOBAL)
        if found is None or found[0] in before:
            return None
        before[found[0]] = found[1]
    if not rest:
        return None
    rest.pop(0)
    given: dict[str, Any] = {}
    arguments: list[str] = []
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            arguments.append(token)
            continue
        if token in _FLAGS:
            found = (_FLAGS[token], True)
        else:
            found = _option(token, rest, _VALUED)
        if found is None or found[0] in given:
            return None
        given[found[0]] = found[1]
    if not 1 <= len(arguments) <= 2:
        return None
    keywords: dict[str, Any] = {name: None for name in _VALUED.values()}
    keywords.update(as_json=False, detach=False, debug=False)
    keywords.update(given)
    keywords["target"] = arguments[0]
    keywords["workflow"] = arguments[1] if len(arguments) == 2 else None
    return before.get("store"), keywords


def run_exec(argv: list[str]) -> bool:
    """Run `flux exec` when `argv` is its plain form (True), as the typer app would, exit codes
    included; False, having done nothing, when the typer app must parse it."""
    if "_FLUX_COMPLETE" in os.environ:  # shell completion is typer's
        return False
    parsed = parse_exec(argv)
    if parsed is None:
        return False
    from flux._cli import base

    base.state["store"], keywords = parsed
    try:
        base.guarded(base.exec_command, keywords)
    except KeyboardInterrupt:  # outside the run, which says where it stopped: as typer does
        raise SystemExit(base.EXIT_INTERRUPTED) from None
    return True
