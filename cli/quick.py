"""`flux exec` and `flux replay --summary` in their plain forms, parsed without typer.

Building the typer app imports typer, click and rich, and typer 0.29 coerces every argument
through pydantic: about three times the rest of a one-task run, and a tenth of a 100,000-task
replay. Most runs of these two commands are one line of a script (`flux exec app.py wf --input
JSON [--store S] [--json]`, `flux replay ID --summary`), whose parse is plain; this module parses
those forms only and returns None for anything else (`--help`, `--debug`, an option it does not
know or given twice, a value that starts with `-`, a missing or extra argument, shell completion,
a replay without `--summary`), which the typer app then parses as before, with its own help and
errors. Both ways run the same function of `flux._cli.base` inside `base.guarded`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["parse", "run"]


@dataclass(frozen=True)
class _Form:
    """The plain form of one command: its options (`flux._cli.main`), mapped to the keywords of
    its function in `flux._cli.base`."""

    valued: dict[str, str]  # options that take a value
    flags: dict[str, str]
    arguments: tuple[str, ...]  # positional arguments, the first ones required
    required: int
    needs: tuple[str, ...] = ()  # flags the plain form must have
    fixed: dict[str, Any] = field(default_factory=dict)  # keywords the plain form never sets


_STORE = {"--store": "store", "--home": "store"}
_FORMS = {
    "exec": _Form(
        valued={
            "--input": "input", "-i": "input", "--input-file": "input_file", "--id": "execution_id",
            "--durability": "durability", **_STORE,
        },
        flags={"--json": "as_json", "--detach": "detach"},
        arguments=("target", "workflow"),
        required=1,
    ),
    "replay": _Form(
        valued={"--file": "file", "--module": "module", "-m": "module", **_STORE},
        flags={"--summary": "summary", "--quiet": "summary", "-q": "summary", "--json": "as_json", "--full": "full"},
        arguments=("journal",),
        required=1,
        needs=("summary",),
        fixed={"until": None, "break_at": None},
    ),
}


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


def parse(argv: list[str]) -> tuple[str, str | None, dict[str, Any]] | None:
    """The command, the store given before it and the keywords of its function in
    `flux._cli.base`, when `argv` is a plain form; None when the typer app must parse it."""
    rest = list(argv)
    before: dict[str, str] = {}
    while rest and rest[0] not in _FORMS:
        found = _option(rest.pop(0), rest, _STORE)
        if found is None or found[0] in before:
            return None
        before[found[0]] = found[1]
    if not rest:
        return None
    name = rest.pop(0)
    form = _FORMS[name]
    given: dict[str, Any] = {}
    arguments: list[str] = []
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            arguments.append(token)
            continue
        option: tuple[str, Any] | None = (form.flags[token], True) if token in form.flags else None
        option = option or _option(token, rest, form.valued)
        if option is None or option[0] in given:
            return None
        given[option[0]] = option[1]
    if not form.required <= len(arguments) <= len(form.arguments) or any(flag not in given for flag in form.needs):
        return None
    keywords: dict[str, Any] = dict.fromkeys(form.valued.values())
    keywords.update(dict.fromkeys(form.flags.values(), False), debug=False, **form.fixed)
    keywords.update(given)
    keywords.update(zip(form.arguments, arguments + [None] * (len(form.arguments) - len(arguments)), strict=True))
    return name, before.get("store"), keywords


def run(argv: list[str]) -> bool:
    """Run the command when `argv` is a plain form (True), as the typer app would, exit codes
    included; False, having done nothing, when the typer app must parse it."""
    if "_FLUX_COMPLETE" in os.environ:  # shell completion is typer's
        return False
    parsed = parse(argv)
    if parsed is None:
        return False
    from flux._cli import base

    name, base.state["store"], keywords = parsed
    command = base.exec_command if name == "exec" else base.replay_command
    try:
        base.guarded(command, keywords)
    except KeyboardInterrupt:  # outside a run, which says where it stopped: as typer does
        raise SystemExit(base.EXIT_INTERRUPTED) from None
    return True
