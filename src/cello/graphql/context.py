"""What a resolver gets as ``info.context``: the Cello request, the response being made, and the values of the
endpoint's ``context`` function (resolved per request like a route's parameters, ``Depends`` included)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import strawberry
from strawberry.http.temporal_response import TemporalResponse

from ..http.request import Request

__all__ = ["Context", "Info", "Response"]


class Response(TemporalResponse):
    """The response a resolver may shape: ``status_code`` and ``headers`` (``info.context.response``)."""

    # the media type the client accepted (GraphQL over HTTP: application/graphql-response+json or application/json)
    media_type: str = "application/json"


class Context(Mapping[str, Any]):
    """``info.context``: ``request`` (``cello.Request``, with ``request.user``, ``request.context`` and the
    session; over WebSocket the ``cello.WebSocket``), ``response`` (status and headers of an HTTP answer),
    ``connection_params`` (over WebSocket: the ``connection_init`` payload) and whatever the endpoint's
    ``context`` function returned, as attributes and as items: ``info.context.request``,
    ``info.context["loaders"]``."""

    __slots__ = ("request", "response", "connection_params", "_values")

    def __init__(self, request: Request, response: Response | None, values: Mapping[str, Any] | None = None) -> None:
        self.request = request
        self.response = response
        # a WebSocket's: the payload of its connection_init (the client's token, say)
        self.connection_params: dict[str, Any] | None = None
        self._values: Mapping[str, Any] = values or {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"the GraphQL context has no {name!r}") from None

    def __getitem__(self, key: str) -> Any:
        if key == "request":
            return self.request
        if key == "response":
            return self.response
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        yield "request"
        yield "response"
        yield from (key for key in self._values if key not in ("request", "response"))

    def __len__(self) -> int:
        return 2 + sum(1 for key in self._values if key not in ("request", "response"))


# ``def resolver(self, info: Info) -> ...``: strawberry's Info with Cello's context (root value untyped)
Info = strawberry.Info[Context, Any]
