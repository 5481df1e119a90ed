"""Who may call the server: the token, the Host header, and requests from other sites.

One ASGI middleware (`Guard`) checks every request before any route sees it:

- Host: a server bound to a loopback address answers only requests addressed to a loopback
  name (127.0.0.1, localhost, [::1]); a web page elsewhere cannot reach it through a DNS name
  that resolves to 127.0.0.1 (DNS rebinding).
- Token: when one is set, every route but `/healthz` needs `Authorization: Bearer <token>`, or
  HTTP Basic with the token as the password (how a browser sends it to the console, and with
  every request of the page, EventSource included). Compared in constant time; never echoed.
- Other sites: a POST (or any method that changes something) sent by a page of another origin
  (`Sec-Fetch-Site: cross-site`/`same-site`, or an `Origin` that is not this server) is refused,
  with or without a token: a browser would attach cached credentials to it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import stat
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from flux._engine.errors import InvalidOptionError
from flux.serve.problems import problem

__all__ = ["TOKEN_ENV", "Guard", "Headers", "load_token"]

TOKEN_ENV = "FLUX_SERVE_TOKEN"
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_OPEN_PATHS = {"/healthz"}

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def load_token(token_file: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The server's token: the first line of `token_file`, else $FLUX_SERVE_TOKEN, else None.

    Raises:
        InvalidOptionError: a token file that is missing, not a regular file, readable or
            writable by group or others, or empty; an empty variable.
    """
    environ = os.environ if environ is None else environ
    if token_file is not None:
        try:
            fd = os.open(token_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as err:
            raise InvalidOptionError(f"--token-file {token_file}: cannot open it ({err.strerror})") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidOptionError(f"--token-file {token_file}: not a regular file")
            if info.st_mode & 0o077:
                raise InvalidOptionError(
                    f"--token-file {token_file}: readable or writable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                    f"run chmod 600 {token_file}"
                )
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        token = data.decode("utf-8", "replace").splitlines()[0].strip() if data.strip() else ""
        if not token:
            raise InvalidOptionError(f"--token-file {token_file}: the file is empty; write the token on its first line")
        return token
    value = environ.get(TOKEN_ENV)
    if value is None:
        return None
    if not value.strip():
        raise InvalidOptionError(f"${TOKEN_ENV} is set but empty; unset it or give it a token")
    return value.strip()


def _host_name(host_header: str) -> str:
    """The host part of a Host header (`127.0.0.1:8000` -> `127.0.0.1`, `[::1]:80` -> `[::1]`)."""
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def is_loopback(host: str) -> bool:
    return host in _LOOPBACK_NAMES or host.startswith("127.")


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self._token = token.encode("utf-8") if token else None
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> Any:
        path = scope.get("path", "")
        host_header = headers.get("host", "")
        if self.loopback_only and not is_loopback(_host_name(host_header)):
            return problem(
                421, "MisdirectedRequest", "this server answers requests to 127.0.0.1 or localhost only", path
            )
        if path in _OPEN_PATHS:
            return None
        if self._token is not None and not self._authorized(headers.get("authorization", "")):
            refused = problem(401, "Unauthorized", "this server needs its token: Authorization: Bearer <token>", path)
            # One challenge per header: a browser reads Basic (it then asks for the token and
            # sends it with every request of the page), an API client Bearer.
            refused.raw_headers.append((b"www-authenticate", b'Basic realm="flux", charset="UTF-8"'))
            refused.raw_headers.append((b"www-authenticate", b'Bearer realm="flux"'))
            return refused
        if scope.get("method", "GET") not in _SAFE_METHODS and self._from_elsewhere(headers, host_header):
            return problem(
                403,
                "CrossSiteRequest",
                "requests that change executions or schedules are refused from other sites",
                path,
            )
        return None

    def _authorized(self, header: str) -> bool:
        assert self._token is not None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        given = b""
        if scheme == "bearer":
            given = value.strip().encode("utf-8")
        elif scheme == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            given = decoded.partition(b":")[2]
        # Compared even when nothing was given, so that the time taken says nothing.
        return hmac.compare_digest(given, self._token) and bool(given)

    @staticmethod
    def _from_elsewhere(headers: dict[str, str], host_header: str) -> bool:
        if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            return True
        origin = headers.get("origin")
        if origin is None:
            return False
        return origin.partition("://")[2] != host_header


_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", _CSP.encode()),
]


class Headers:
    """Adds the same safety headers to every response: no sniffing, no referrer, no framing, and
    a content security policy that lets a page load and call nothing but this server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope.get("path", "").startswith("/api/")

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _HEADERS if k not in present]
                if api and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, with_headers)
