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

import orjson

from flux._engine.errors import SecretError

__all__ = ["SecretError", "Secrets", "missing_secrets", "redact", "unredact"]


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
            ValueError: `The following secrets were not found: [...]`, naming every missing one
                (the task's failure, recorded like any other).
            SecretError: when the secrets file cannot be read or is readable by others.
        """
        out: dict[str, str] = {}
        missing: list[str] = []
        from_file: dict[str, Any] | None = None
        for name in names:
            value = os.environ.get(name)
            if value is None:
                if from_file is None:
                    from_file = self._file()
                value = from_file.get(name)
            if not isinstance(value, str) or not value:
                missing.append(name)
            else:
                out[name] = value
        if missing:
            raise missing_secrets(missing)
        return out

    def save(self, name: str, value: str) -> None:
        """Writes a secret to the secrets file (created 0600, replaced atomically)."""
        if self.path is None:
            raise SecretError("this store keeps no secrets file; set FLUX_SECRETS_FILE")
        data = self._file()
        data[name] = value
        self._write(data)

    def remove(self, name: str) -> None:
        """Deletes a secret from the secrets file (nothing happens if it is not there)."""
        data = self._file()
        if name in data:
            del data[name]
            self._write(data)

    def names(self) -> list[str]:
        """The names of the secrets in the file (the environment is not listed)."""
        return sorted(self._file())

    def _write(self, data: dict[str, Any]) -> None:
        assert self.path is not None
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        tmp = f"{self.path}.new-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, orjson.dumps(data))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


def missing_secrets(names: list[str]) -> ValueError:
    """The failure of a task whose secrets are not all set."""
    return ValueError(f"The following secrets were not found: {names}")


def redact(tree: Any, secrets: dict[str, str]) -> tuple[Any, bool]:
    """Returns a recorded value (SPEC.md 3) with every secret value replaced by `[secret:NAME]`,
    and whether any was.

    Redaction works on values, never on the encoding of another type: a secret inside a string
    (or a bytes value, or an exception's message and traceback) is replaced where it stands; a
    number whose text is a secret becomes the string `[secret:NAME]`; the text of a datetime,
    a UUID, a timedelta and the like is left alone, since it is not a value the secret can be
    hidden in, and rewriting it would make it unreadable.
    """
    if not secrets:
        return tree, False
    walker = _Redactor({value: f"[secret:{name}]" for value, name in secrets.items()})
    return walker.walk(tree), walker.changed


def unredact(tree: Any, secrets: dict[str, str]) -> Any:
    """The inverse of `redact` for what is read back: every `[secret:NAME]` of a secret known
    now (`secrets`: value -> name) is replaced by its current value, so that the workflow sees
    the real value on replay as it did live (SPEC.md 4.7). A number that was redacted comes
    back as the secret's text."""
    if not secrets:
        return tree
    walker = _Redactor({f"[secret:{name}]": value for value, name in secrets.items()}, numbers=False)
    return walker.walk(tree)


class _Redactor:
    def __init__(self, pairs: dict[str, str], numbers: bool = True) -> None:
        self.pairs = pairs  # text found -> text put in its place
        self.numbers = numbers
        self.changed = False

    def text(self, node: str) -> str:
        out = node
        for found, put in self.pairs.items():
            if found in out:
                out = out.replace(found, put)
        if out != node:
            self.changed = True
        return out

    def number(self, node: Any, text: str) -> Any:
        put = self.pairs.get(text) if self.numbers else None
        if put is None:
            return node
        self.changed = True
        return put

    def walk(self, node: Any) -> Any:
        t = type(node)
        if t is str:
            return self.text(node)
        if t is int or t is float:
            return self.number(node, repr(node) if t is float else str(node))
        if t is list:
            return [self.walk(x) for x in node]
        if t is not dict:
            return node
        first = next(iter(node), None)
        if not isinstance(first, str) or first[:1] != "$":
            return {self.walk(k): self.walk(v) for k, v in node.items()}
        body = node[first]
        if first == "$bytes" and isinstance(body, str):
            return self.bytes(node)
        if first in ("$tuple", "$set", "$frozenset") and isinstance(body, list):
            items = [self.walk(x) for x in body]
            if first != "$tuple":
                items.sort(key=orjson.dumps)  # sets keep their canonical order
            return {first: items}
        if first == "$dict" and isinstance(body, list):
            return {first: [[self.walk(k), self.walk(v)] for k, v in body]}
        if first in ("$dataclass", "$pydantic", "$namedtuple"):
            fields = node.get("v")
            if isinstance(fields, dict):
                return {**node, "v": {k: self.walk(v) for k, v in fields.items()}}
            return {**node, "v": self.walk(fields)}
        if first in ("$int", "$decimal") and isinstance(body, str):
            replaced = self.number(node, body)
            return replaced
        if first == "$ext":
            return {**node, "v": self.walk(node.get("v"))}
        if first == "$error":
            out = dict(node)
            for key in ("msg", "tb", "args", "attrs", "cause"):
                if key in out and out[key] is not None:
                    out[key] = self.walk(out[key])
            return out
        return node  # $datetime, $date, $time, $timedelta, $uuid, $float, $enum, $blob

    def bytes(self, node: dict[str, Any]) -> dict[str, Any]:
        raw = base64.b64decode(node["$bytes"])
        out = raw
        for found, put in self.pairs.items():
            secret = found.encode("utf-8")
            if secret in out:
                out = out.replace(secret, put.encode())
        if out == raw:
            return node
        self.changed = True
        return {**node, "$bytes": base64.b64encode(out).decode("ascii")}
