"""API-key authentication: keys from a header (``X-API-Key`` by default) or a query parameter, each with scopes.

``ApiKeyAuth(keys={"k-123…": ["orders:read"], "k-456…": ["orders:read", "orders:write"]})`` — a key's scopes are
its permissions, so ``Permission("orders:write")`` guards work on them. Or ``verify(key)`` (sync or async) for
keys kept in a database, returning the caller (a ``Principal``, mapping, object or name) or None.

Configured keys are held only as SHA-256 digests and looked up by digest: how long a lookup takes says nothing
about any key's characters, and the keys themselves are not kept in memory.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..http.exceptions import ConfigurationError
from .base import Authenticator, Principal, names, principal_from

Verifier = Callable[[str], Any]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeyAuth(Authenticator):
    """``keys``: key → scopes (a list), or → a Principal / mapping / name; or a plain list of keys.
    ``header``: where keys are read (None: not from a header). ``query``: also accept ``?<query>=key``
    (off by default: URLs end up in logs)."""

    scheme_name = "api_key"

    def __init__(
        self,
        keys: Mapping[str, Any] | Iterable[str] | None = None,
        verify: Verifier | None = None,
        *,
        header: str | None = "x-api-key",
        query: str | None = None,
        exclude_paths: Iterable[str] = (),
        optional: bool = False,
    ) -> None:
        if (keys is None) == (verify is None):
            raise ConfigurationError("ApiKeyAuth needs either keys or verify")
        if header is None and query is None:
            raise ConfigurationError("ApiKeyAuth needs a header or a query parameter to read keys from")
        super().__init__(exclude_paths, optional)
        self.header = header.lower() if header else None
        self.query = query
        self._verifier = verify
        self.is_async = verify is not None and inspect.iscoroutinefunction(verify)
        self._keys: dict[bytes, Principal] = {}
        entries = keys.items() if isinstance(keys, Mapping) else ((key, ()) for key in keys or ())
        for key, value in entries:
            if len(key) < 16:
                raise ConfigurationError("API keys need at least 16 characters")
            digest = _digest(key)
            label = "key:" + digest.hex()[:12]  # names the key in logs without revealing it
            if isinstance(value, (Principal, Mapping, str)):
                principal = principal_from(value, "api_key", label)
                assert principal is not None
            else:
                principal = Principal(label, permissions=names(list(value)), scheme="api_key")
            self._keys[digest] = principal
        where = f'header="{header}"' if header else f'query="{query}"'
        self.challenge = f"ApiKey {where}"

    def credentials(self, request: Any) -> str | None:
        if self.header is not None:
            value = request.header(self.header)
            if value:
                return value  # type: ignore[no-any-return]
        if self.query is not None:
            return request.query.get(self.query) or None  # type: ignore[no-any-return]
        return None

    def verify(self, request: Any, key: str) -> Any:
        if self._verifier is None:
            # NOTE: a lookup by digest is the timing-safe comparison here (see the module docstring)
            return self._keys.get(_digest(key))
        result = self._verifier(key)
        if inspect.isawaitable(result):
            return _principal_later(result)
        return principal_from(result, "api_key", "key")

    def openapi_scheme(self) -> dict[str, Any]:
        if self.header is not None:
            return {"type": "apiKey", "in": "header", "name": self.header}
        return {"type": "apiKey", "in": "query", "name": self.query}


async def _principal_later(result: Any) -> Principal | None:
    return principal_from(await result, "api_key", "key")
