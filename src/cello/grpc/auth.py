"""One auth layer for HTTP routes and RPCs: the app's authenticators (``JwtAuth``, API keys, Basic — what
``app.use(...)`` / ``app.enable_*`` installed) and guards (the app's, and a service's own
``app.grpc_service(servicer, guards=[...])``) decide on a gRPC call from its metadata, as they decide on a
request from its headers: ``authorization: Bearer ...`` and ``x-api-key`` travel as metadata.

A call without valid credentials is answered ``UNAUTHENTICATED``, a caller a guard refuses ``PERMISSION_DENIED``;
the method never runs. Inside it, ``cello.grpc.current_user()`` is the caller (a ``Principal``, or None).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import grpc

from ..http.datastructures import Address, parse_address
from ..http.request import Request
from ..security.base import Authenticator, Principal
from ..security.guards import Guard, current_user

__all__ = ["CallRequest", "CallRoute", "Verdict", "current_user_of_call", "verdict"]

_user: ContextVar[Principal | None] = ContextVar("cello_grpc_user", default=None)


def current_user_of_call() -> Principal | None:
    """The caller of the gRPC method running now (None: anonymous)."""
    return _user.get()


class CallRoute:
    """What a request's route is to middleware, for a gRPC method: its path (``/package.Service/Method``)."""

    __slots__ = ("path", "meta")

    def __init__(self, path: str) -> None:
        self.path = path
        self.meta: dict[str, Any] = {}


class CallRequest:
    """What Cello's authenticators, guards and middleware read of a gRPC call: its text metadata as headers
    (lower-case names; ``-bin`` metadata left out), its method's path, its peer as the client, and a context for
    what they find."""

    is_websocket = False
    method = "POST"

    def __init__(self, app: Any, path: str, metadata: Sequence[tuple[str, Any]]) -> None:
        self.app = app
        self.path = path
        self.route = CallRoute(path)
        self.headers = {name.lower(): value for name, value in metadata or () if isinstance(value, str)}
        self.context: dict[str, Any] = {}
        self.cookies: dict[str, str] = {}
        self.query: dict[str, str] = {}
        self._peer: str | None = None
        self.client: Address | None = None

    def set_peer(self, peer: str | None) -> None:
        """The caller's address, from grpc's peer (known once the call runs)."""
        # NOTE: grpc's peer is "ipv4:1.2.3.4:5678" or "ipv6:[::1]:5678"; the engines' is "1.2.3.4:5678"
        self._peer = peer.partition(":")[2] if peer and peer.startswith(("ipv4:", "ipv6:")) else None
        self.client = parse_address(self._peer)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def user(self) -> Any:
        return self.context.get("user")


class Verdict:
    """What the auth layer decided: the caller, or the status and message to answer with."""

    __slots__ = ("user", "code", "message")

    def __init__(self, user: Principal | None, code: grpc.StatusCode | None = None, message: str = "") -> None:
        self.user = user
        self.code = code
        self.message = message


async def verdict(request: CallRequest | Request, layers: Sequence[Any], guards: Sequence[Guard]) -> Verdict:
    """Run the app's authenticators and guards (``layers``, in the app's order) and the service's ``guards`` on a
    native call's metadata, or on the request of a Connect or gRPC-Web call."""
    for layer in layers:
        if isinstance(layer, Authenticator):
            secret = layer.credentials(request)
            if secret is None:
                if not layer.optional:
                    return Verdict(None, grpc.StatusCode.UNAUTHENTICATED, "Authentication is required.")
                continue
            user = layer.verify(request, secret)
            if inspect.isawaitable(user):
                user = await user
            if user is None:
                return Verdict(None, grpc.StatusCode.UNAUTHENTICATED, "The credentials are not valid.")
            request.context["user"] = user
    for guard in [*(layer for layer in layers if isinstance(layer, Guard)), *guards]:
        user = current_user(request)
        try:
            allowed = await guard.check_async(request, user)
        except Exception:  # a guard that fails refuses, as it does on a route
            allowed = False
        if not allowed:
            if user is None:
                return Verdict(None, grpc.StatusCode.UNAUTHENTICATED, "Authentication is required.")
            return Verdict(user, grpc.StatusCode.PERMISSION_DENIED, "You are not allowed to do this.")
    return Verdict(current_user(request))


def bind(user: Principal | None) -> Any:
    """Make ``user`` the current caller; returns the token to reset it with."""
    return _user.set(user)


def unbind(token: Any) -> None:
    _user.reset(token)
