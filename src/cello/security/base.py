"""What every authentication middleware shares: the identity it finds, where it looks, and how it says no.

An authenticator (``JwtAuth``, ``BasicAuth``, ``ApiKeyAuth``) reads credentials from the request; when they
check out it puts a ``Principal`` in ``request.context["user"]`` (``request.user``), which guards read. Missing
credentials get 401 with a ``WWW-Authenticate`` challenge; wrong ones get the same 401 with no hint of what was
wrong (the reason goes to the ``cello.security`` logger at debug level, never to the client).

Paths in ``exclude_paths`` (exact, or a prefix ending in ``*``) and routes declared ``public=True`` are let
through without credentials; so are the app's own documentation pages. With ``optional=True`` a request without
credentials goes through anonymously (``request.user`` is None) while bad credentials are still refused.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import inspect
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..http.exceptions import ConfigurationError, HTTPException
from ..http.response import ProblemResponse, Response

logger = logging.getLogger("cello.security")

MIN_SECRET_BYTES = 32
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 6265 token


def secret_bytes(secret: str | bytes, what: str) -> bytes:
    """The secret as bytes, refused (at configuration time) when shorter than 32 bytes."""
    data = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(data) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{what} needs a secret of at least {MIN_SECRET_BYTES} bytes, e.g. secrets.token_urlsafe(32)"
        )
    return data


def check_cookie_name(name: str) -> None:
    if not _COOKIE_NAME.fullmatch(name):
        raise ConfigurationError(f"{name!r} is not a valid cookie name")


class Signer:
    """HMAC-SHA256 signatures (base64url, unpadded) under a key derived from ``secret`` for one ``purpose``.

    NOTE: deriving a key per purpose means one secret shared by sessions and CSRF protection never makes a value
    signed for one valid for the other. The keyed HMAC is built once; each signature copies it, which is cheaper
    than keying a new one per request.
    """

    def __init__(self, secret: bytes, purpose: bytes) -> None:
        self._mac = hmac.new(hmac.digest(secret, purpose, "sha256"), digestmod=hashlib.sha256)

    def sign(self, data: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(data)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")

    def verify(self, data: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(signature, self.sign(data))


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``id``, its ``roles`` and ``permissions``, the ``scheme`` that vouched for it
    (``"jwt"``, ``"basic"``, ``"api_key"``, ``"session"``…) and what that scheme knew (``claims``)."""

    id: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    scheme: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict)


def names(value: Any) -> frozenset[str]:
    """Roles or permissions from a claim or attribute: a list of names, or one string (space-separated, as the
    OAuth ``scope`` claim is)."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, Iterable):
        return frozenset(str(item) for item in value)
    return frozenset()


def principal_from(user: Any, scheme: str, fallback_id: str = "") -> Principal | None:
    """A verifier's answer as a Principal: a Principal, a mapping or object with ``id``/``roles``/
    ``permissions``, a plain name, or True (then ``fallback_id``, the name the caller gave, is its id)."""
    if user is None or user is False:
        return None
    if user is True:
        return Principal(fallback_id, scheme=scheme)
    if isinstance(user, Principal):
        return user
    if isinstance(user, str):
        return Principal(user, scheme=scheme)
    if isinstance(user, Mapping):
        user_id = user.get("id", user.get("sub", user.get("username")))
        return Principal(
            str(user_id),
            names(user.get("roles", user.get("role"))),
            names(user.get("permissions", user.get("scopes"))),
            scheme,
            dict(user),
        )
    user_id = getattr(user, "id", None) or getattr(user, "username", None) or str(user)
    return Principal(
        str(user_id),
        names(getattr(user, "roles", None)),
        names(getattr(user, "permissions", None)),
        scheme,
        {"user": user},
    )


class PathFilter:
    """``exclude_paths``: exact paths, or prefixes written with a trailing ``*`` (``"/public/*"``)."""

    def __init__(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        self.exact = frozenset(p for p in paths if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in paths if p.endswith("*"))

    def __call__(self, path: str) -> bool:
        return path in self.exact or (bool(self.prefixes) and path.startswith(self.prefixes))


def is_public(request: Any) -> bool:
    """Routes declared ``public=True`` (the documentation pages are) need no credentials."""
    route = request.route
    return route is not None and route.meta.get("public") is True


def challenge(request: Any, header: str | None, detail: str) -> Response:
    """401 with a ``WWW-Authenticate`` challenge (when there is one to give) and a problem+json body."""
    error = HTTPException(401, detail, headers={"www-authenticate": header} if header else None)
    return ProblemResponse.from_exception(error, request.path)


def forbidden(request: Any, detail: str = "You are not allowed to do this.") -> Response:
    return ProblemResponse.from_exception(HTTPException(403, detail), request.path)


class Authenticator(abc.ABC):
    """Base of the authentication middleware: find credentials, verify them, set ``request.user``.

    Subclasses give ``credentials(request)`` (the presented secret, or None) and ``verify(request, secret)``
    (a Principal or None; an awaitable of one when ``is_async``), the ``challenge`` header for a 401, and their
    OpenAPI security scheme. Synchronous ones run as enter/leave middleware (``cello.middleware.base``).
    """

    is_async = False
    scheme_name = "auth"
    challenge = ""  # WWW-Authenticate for a request without credentials
    invalid_challenge = ""  # ...and for one whose credentials were refused

    def __init__(self, exclude_paths: Iterable[str] = (), optional: bool = False) -> None:
        self.excluded = PathFilter(exclude_paths)
        self.optional = optional

    @abc.abstractmethod
    def credentials(self, request: Any) -> str | None:
        """The secret the request presents (a token, a key, encoded Basic credentials), or None."""

    @abc.abstractmethod
    def verify(self, request: Any, secret: str) -> Any:
        """The caller as a Principal, or None when ``secret`` is refused (an awaitable of either when async)."""

    @abc.abstractmethod
    def openapi_scheme(self) -> dict[str, Any]:
        """This authenticator's OpenAPI security scheme object."""

    @property
    def uses_hooks(self) -> bool:
        return not self.is_async

    def _exempt(self, request: Any) -> bool:
        return self.excluded(request.path) or is_public(request)

    def _missing(self, request: Any) -> Response | None:
        if self.optional:
            request.context.setdefault("auth_challenge", self.challenge)  # for a guard that refuses later
            return None
        return challenge(request, self.challenge, "Authentication is required.")

    def _verified(self, request: Any, user: Principal | None) -> Response | None:
        if user is None:
            return challenge(request, self.invalid_challenge or self.challenge, "The credentials are not valid.")
        request.context["user"] = user
        return None

    def enter(self, request: Any) -> Any:
        if self._exempt(request):
            return None
        secret = self.credentials(request)
        if secret is None:
            return self._missing(request)
        return self._verified(request, self.verify(request, secret))

    def leave(self, request: Any, response: Response, state: Any) -> Response:
        return response

    async def __call__(self, request: Any, call_next: Any) -> Response:
        if not self._exempt(request):
            secret = self.credentials(request)
            if secret is None:
                refusal = self._missing(request)
            else:
                user = self.verify(request, secret)
                refusal = self._verified(request, await user if inspect.isawaitable(user) else user)
            if refusal is not None:
                return refusal
        return await call_next(request)  # type: ignore[no-any-return]


class UserLoader:
    """``app.use(UserLoader(load))``: ``load(request)`` (sync or async) finds the caller — say from
    ``request.session["user_id"]`` and a database — returning a Principal, a mapping or object with
    ``id``/``roles``/``permissions``, or None for anonymous. Runs only when no authenticator set a user."""

    def __init__(self, load: Any) -> None:
        self.load = load
        self.uses_hooks = not inspect.iscoroutinefunction(load)

    def enter(self, request: Any) -> Any:
        if request.context.get("user") is None:
            self._set(request, self.load(request))
        return None

    def leave(self, request: Any, response: Response, state: Any) -> Response:
        return response

    async def __call__(self, request: Any, call_next: Any) -> Response:
        if request.context.get("user") is None:
            found = self.load(request)
            self._set(request, await found if inspect.isawaitable(found) else found)
        return await call_next(request)  # type: ignore[no-any-return]

    @staticmethod
    def _set(request: Any, found: Any) -> None:
        user = principal_from(found, "loader")
        if user is not None:
            request.context["user"] = user
