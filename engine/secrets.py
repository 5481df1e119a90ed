"""Keeps secret values out of everything the engine writes (SPEC.md "Secrets").

A task that asked for secrets gets their values; the executor remembers them for the run and
passes every value and error it records through `redact`, which replaces each occurrence of a
secret value in any string with `[secret:NAME]`. Only this module sees both the values and
the names.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from typing import Any

from flux._engine.errors import SecretError

__all__ = ["SecretError", "Secrets", "redact"]


class Secrets:
    """Where secret values come from: the environment first, then a private JSON file.

    The file is `$FLUX_SECRETS_FILE`, else the store's (`<home>/secrets.json` for a file
    store): an object of name -> string, readable by its owner only (mode 0600 or stricter), or
    it is refused. A store that keeps no secrets file leaves the environment only.
    """

    def __init__(self, store_file: str | None) -> None:
        self.path = os.environ.get("FLUX_SECRETS_FILE") or store_file

    def _file(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise SecretError(f"{self.path}: cannot open the secrets file ({err.strerror})") from None
        try:
            mode = os.fstat(fd).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SecretError(
                    f"{self.path}: the secrets file is readable by others (mode {stat.S_IMODE(mode):o}); "
                    f"run `chmod 600 {self.path}`"
                )
            with os.fdopen(os.dup(fd), "rb") as fh:
                data = fh.read()
        finally:
            os.close(fd)
        try:
            loaded = json.loads(data)
        except ValueError:
            raise SecretError(f"{self.path}: the secrets file is not a JSON object of name -> value") from None
        if not isinstance(loaded, dict):
            raise SecretError(f"{self.path}: the secrets file is not a JSON object of name -> value")
        return loaded

    def get(self, names: list[str] | tuple[str, ...], task: str) -> dict[str, str]:
        """The values of `names`.

        Raises:
            SecretError: naming the first missing secret and where it was looked for.
        """
        out: dict[str, str] = {}
        from_file: dict[str, Any] | None = None
        for name in names:
            value = os.environ.get(name)
            if value is None:
                if from_file is None:
                    from_file = self._file()
                value = from_file.get(name)
            if not isinstance(value, str) or not value:
                where = f" or add it to {self.path}" if self.path else " (this store keeps no secrets file)"
                raise SecretError(f"task {task!r} needs secret {name!r}: set the environment variable {name}{where}")
            out[name] = value
        return out


def redact(tree: Any, secrets: dict[str, str]) -> tuple[Any, bool]:
    """Returns `tree` with every secret value in its strings replaced, and whether any was."""
    if not secrets:
        return tree, False
    changed = False

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, str):
            out = node
            for value, name in secrets.items():
                if value in out:
                    out = out.replace(value, f"[secret:{name}]")
            if out is not node:
                changed = changed or out != node
            return out
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            if "$bytes" in node and isinstance(node["$bytes"], str):
                return _redact_bytes(node)
            return {walk(k): walk(v) for k, v in node.items()}
        return node

    def _redact_bytes(node: dict[str, Any]) -> dict[str, Any]:
        nonlocal changed
        raw = base64.b64decode(node["$bytes"])
        out = raw
        for value, name in secrets.items():
            secret = value.encode("utf-8")
            if secret in out:
                out = out.replace(secret, f"[secret:{name}]".encode())
        if out == raw:
            return node
        changed = True
        return {**node, "$bytes": base64.b64encode(out).decode("ascii")}

    result = walk(tree)
    return result, changed
