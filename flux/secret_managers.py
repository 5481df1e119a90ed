"""Secrets as Flux programs manage them: `SecretManager.current()` with `save`, `remove`, `get`,
`all`, over the secrets this engine hands to tasks (SPEC.md 4.7).

Values live in the secrets file (`$FLUX_SECRETS_FILE`, else `<store>/secrets.json`, mode 0600);
an environment variable of the same name wins over the file when a secret is read.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

__all__ = ["FileSecretManager", "SecretManager"]


class SecretManager(ABC):
    """Keeps named secrets."""

    @abstractmethod
    def save(self, name: str, value: Any) -> None: ...

    @abstractmethod
    def remove(self, name: str) -> None: ...

    @abstractmethod
    async def get(self, secret_requests: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    def all(self) -> list[str]:
        """The names of every secret kept."""

    @staticmethod
    def current(store: Any = None) -> SecretManager:
        """The secret manager of the store (default: the one `FLUX_STORE`, `FLUX_HOME` or
        `.flux` names)."""
        return FileSecretManager(store)


class FileSecretManager(SecretManager):
    """The store's secrets file; reading also looks at the environment first."""

    def __init__(self, store: Any = None) -> None:
        from flux._engine.secrets import Secrets
        from flux._engine.store import open_store

        self._secrets = Secrets(open_store(store).secrets_file())

    def save(self, name: str, value: Any) -> None:
        """Writes `name` to the secrets file (its value as text).

        Raises:
            ValueError: for an empty name.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"secret name {name!r} must be a non-empty str")
        self._secrets.save(name, value if isinstance(value, str) else str(value))

    def remove(self, name: str) -> None:
        self._secrets.remove(name)

    def get_sync(self, secret_requests: list[str]) -> dict[str, Any]:
        """The values of the named secrets.

        Raises:
            ValueError: `The following secrets were not found: [...]`.
        """
        return self._secrets.get(list(secret_requests), "")

    async def get(self, secret_requests: list[str]) -> dict[str, Any]:
        return await asyncio.to_thread(self.get_sync, secret_requests)

    def all(self) -> list[str]:
        return self._secrets.names()
