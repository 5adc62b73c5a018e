"""``app.graphql(path, schema, ...)`` (and ``blueprint.graphql``): the endpoint's route.

The route is an ordinary Cello route, so the app's and blueprint's middleware, guards, CORS, rate limits and
metrics apply to it as to any other. Its ``context`` function is a dependency of the route: its parameters are
resolved per request like a handler's (``Request``, ``Header(...)``, ``Depends(...)``, generator dependencies
closed after the answer), so DataLoaders made there are new for every request and never shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strawberry.schema import Schema

from ..http.exceptions import ConfigurationError
from ..http.request import Request
from ..http.response import Response
from ..params import Depends
from ..routing.router import Route
from .limits import Limits
from .view import GraphQLView

__all__ = ["graphql_route"]


def graphql_route(
    path: str,
    schema: Schema,
    *,
    context: Callable[..., Any] | None = None,
    root_value: Any = None,
    introspection: bool | None = None,
    allow_get: bool = True,
    batching: int | None = None,
    max_depth: int | None = 15,
    max_aliases: int | None = 15,
    max_tokens: int | None = 2000,
    max_cost: int | None = 5000,
    list_size: int = 10,
    cache_size: int = 256,
    name: str | None = None,
    guards: list[Any] | None = None,
) -> Route:
    """The route answering GraphQL at ``path`` (see ``Registrar.graphql`` for the options)."""
    if not isinstance(schema, Schema):
        raise ConfigurationError(f"app.graphql() serves a strawberry.Schema, not {type(schema).__name__}")
    if context is not None and not callable(context):
        raise ConfigurationError(f"context is a function returning the resolvers' context, not {context!r}")
    if batching is not None and (isinstance(batching, bool) or not isinstance(batching, int) or batching < 1):
        raise ConfigurationError(f"batching is the most operations in one request (>= 1) or None, not {batching!r}")
    limits = Limits(max_depth=max_depth, max_aliases=max_aliases, max_tokens=max_tokens, max_cost=max_cost,
                    list_size=list_size, cache_size=cache_size)  # fmt: skip
    views: dict[int, GraphQLView] = {}  # per app: whether errors are masked and introspection on follow its debug

    def view_for(request: Request) -> GraphQLView:
        app = request.app
        view = views.get(id(app))
        if view is None:
            debug = bool(app.debug)
            view = views[id(app)] = GraphQLView(
                schema, limits=limits, introspection=debug if introspection is None else introspection,
                mask_errors=not debug, allow_get=allow_get, batching=batching, root_value=root_value,
            )  # fmt: skip
        return view

    if context is None:

        async def graphql_endpoint(request: Request) -> Response:
            return await view_for(request).answer(request, None)

    else:
        dependency = Depends(context)

        async def graphql_endpoint(request: Request, values: Any = dependency) -> Response:  # type: ignore[misc]
            return await view_for(request).answer(request, values)

    meta: dict[str, Any] = {"include_in_schema": False, "strict_content_type": False}
    return Route(path, ["GET", "POST"], graphql_endpoint, name=name or "graphql", middleware=list(guards or ()),
                 meta=meta)  # fmt: skip
