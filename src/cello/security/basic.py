"""HTTP Basic authentication (RFC 7617): ``app.use(BasicAuth(users={"admin": "…"}))`` or a verifier.

For a handful of fixed accounts pass ``users``; for a user database pass ``verify(username, password)`` (sync or
async) returning the user (a ``Principal``, a mapping or object with ``id``/``roles``/``permissions``), True,
or None/False. Passwords from ``users`` are compared in constant time, and an unknown name costs the same
comparison as a known one, so timing tells an attacker neither. Use it over TLS only: the password travels in
every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..http.exceptions import ConfigurationError
from .base import Authenticator, Principal, names, principal_from

Verifier = Callable[[str, str], Any]


def _digest(secret: str) -> bytes:
    # NOTE: comparing fixed-length digests keeps compare_digest's time independent of the password's length
    return hashlib.sha256(secret.encode()).digest()


class BasicAuth(Authenticator):
    """``BasicAuth(users={"alice": "s3cret"}, roles={"alice": ["admin"]})`` or ``BasicAuth(verify=check)``.

    ``realm``: shown by browsers in the login prompt. ``exclude_paths`` / ``optional``: see ``cello.security``.
    """

    scheme_name = "basic"

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        verify: Verifier | None = None,
        *,
        roles: Mapping[str, Iterable[str]] | None = None,
        realm: str = "Restricted",
        exclude_paths: Iterable[str] = (),
        optional: bool = False,
    ) -> None:
        if (users is None) == (verify is None):
            raise ConfigurationError("BasicAuth needs either users or verify")
        super().__init__(exclude_paths, optional)
        self._users = {name: _digest(password) for name, password in (users or {}).items()}
        self._roles = {name: names(list(r)) for name, r in (roles or {}).items()}
        self._verifier = verify
        self.is_async = verify is not None and inspect.iscoroutinefunction(verify)
        self.challenge = f'Basic realm="{realm}", charset="UTF-8"'
        self._unknown = _digest("\x00unknown user")

    def credentials(self, request: Any) -> str | None:
        authorization = request.header("authorization")
        if authorization is None:
            return None
        scheme, _, encoded = authorization.partition(" ")
        return encoded.strip() if scheme.lower() == "basic" else None

    def verify(self, request: Any, encoded: str) -> Any:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, colon, password = decoded.partition(":")
        if not colon:
            return None
        if self._verifier is None:
            expected = self._users.get(username)
            matches = hmac.compare_digest(_digest(password), expected or self._unknown)
            if not (matches and expected is not None):
                return None
            return Principal(username, self._roles.get(username, frozenset()), scheme="basic")
        result = self._verifier(username, password)
        if inspect.isawaitable(result):
            return _principal_later(result, username)
        return principal_from(result, "basic", username)

    def openapi_scheme(self) -> dict[str, Any]:
        return {"type": "http", "scheme": "basic"}


async def _principal_later(result: Any, username: str) -> Principal | None:
    return principal_from(await result, "basic", username)
