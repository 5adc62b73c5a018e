"""``app.graphql(path, schema, ...)`` (and ``blueprint.graphql``): the endpoint's route.

The route is an ordinary Cello route, so the app's and blueprint's middleware, guards, CORS, rate limits and
metrics apply to it as to any other. Its ``context`` function is a dependency of the route: its parameters are
resolved per request like a handler's (``Request``, ``Header(...)``, ``Depends(...)``, generator dependencies
closed after the answer), so DataLoaders made there are new for every request and never shared.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from strawberry.schema import Schema

from ..http.exceptions import ConfigurationError, NotFound
from ..http.request import Request
from ..http.response import Response
from ..params import Depends
from ..realtime.websocket import WebSocket
from ..routing.router import WEBSOCKET, Route
from ..stores.base import Store
from ..stores.memory import MemoryStore
from . import ide
from .limits import Limits
from .metrics import OperationMetrics
from .persisted import PersistedQueries
from .view import GraphQLView, Subscriptions

__all__ = ["graphql_routes"]

# what the GraphiQL page needs on top of the app's Content-Security-Policy (cello.security.CSP.merge): its files and
# its requests to the endpoint, all from the app's own origin
GRAPHIQL_CSP = {"script_src": "'self'", "style_src": "'self'", "img_src": "'self' data:", "font_src": "'self' data:",
                "connect_src": "'self'"}  # fmt: skip


def graphql_routes(
    path: str,
    schema: Schema,
    *,
    context: Callable[..., Any] | None = None,
    root_value: Any = None,
    graphiql: bool | None = None,
    introspection: bool | None = None,
    allow_get: bool = True,
    batching: int | None = None,
    uploads: bool = False,
    persisted_queries: Mapping[str, str] | None = None,
    apq: bool | Store = False,
    apq_ttl: float = 86_400.0,
    max_depth: int | None = 15,
    max_aliases: int | None = 15,
    max_tokens: int | None = 2000,
    max_length: int | None = 100_000,
    max_cost: int | None = 5000,
    list_size: int = 10,
    cache_size: int = 256,
    subscriptions: bool | None = None,
    ping_interval: float | None = 15.0,
    connection_init_timeout: float = 10.0,
    max_subscriptions: int | None = 100,
    origins: Collection[str] = (),
    on_connect: Callable[[Any, dict[str, Any]], Any] | None = None,
    name: str | None = None,
    guards: list[Any] | None = None,
) -> list[Route]:
    """The routes answering GraphQL at ``path``: HTTP, and WebSocket for subscriptions (see ``Registrar.graphql``
    for the options)."""
    if not isinstance(schema, Schema):
        raise ConfigurationError(f"app.graphql() serves a strawberry.Schema, not {type(schema).__name__}")
    if context is not None and not callable(context):
        raise ConfigurationError(f"context is a function returning the resolvers' context, not {context!r}")
    if batching is not None and (isinstance(batching, bool) or not isinstance(batching, int) or batching < 1):
        raise ConfigurationError(f"batching is the most operations in one request (>= 1) or None, not {batching!r}")
    for option, value in (("ping_interval", ping_interval), ("connection_init_timeout", connection_init_timeout)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigurationError(f"{option} is a number of seconds above 0, not {value!r}")
    if max_subscriptions is not None and (isinstance(max_subscriptions, bool) or max_subscriptions < 1):
        raise ConfigurationError(f"max_subscriptions is a whole number >= 1 or None, not {max_subscriptions!r}")
    if isinstance(origins, str):
        raise ConfigurationError("origins is a list of origins (https://app.example.com), not one string")
    if subscriptions is None:  # served where the schema has subscriptions (a WebSocket route costs the app RSGI)
        subscriptions = schema.subscription is not None
    served = Subscriptions(
        protocols=Subscriptions.protocols if subscriptions else (),
        ping_interval=ping_interval,
        connection_init_timeout=float(connection_init_timeout),
        max_subscriptions=max_subscriptions,
        origins=tuple(origins),
        on_connect=on_connect,
    )
    if apq is True:
        store: Store | None = MemoryStore()
    elif apq is False or apq is None:
        store = None
    elif isinstance(apq, Store):
        store = apq
    else:
        raise ConfigurationError(f"apq is True, False or a cello store (RedisStore for several workers), not {apq!r}")
    persisted = None
    if persisted_queries is not None or store is not None:
        persisted = PersistedQueries(persisted_queries, store, apq_ttl)
    limits = Limits(max_depth=max_depth, max_aliases=max_aliases, max_tokens=max_tokens, max_length=max_length,
                    max_cost=max_cost, list_size=list_size, cache_size=cache_size)  # fmt: skip
    views: dict[int, GraphQLView] = {}  # per app: whether errors are masked and introspection on follow its debug

    def ide_on(app: Any) -> bool:
        return bool(app.debug) if graphiql is None else graphiql

    def introspection_on(app: Any) -> bool:  # GraphiQL needs it
        return (bool(app.debug) or ide_on(app)) if introspection is None else introspection

    def view_for(request: Request) -> GraphQLView:
        app = request.app
        view = views.get(id(app))
        if view is None:
            measured = _prometheus_on(app)
            metrics = OperationMetrics(request.route.path if request.route else path) if measured else None
            view = views[id(app)] = GraphQLView(
                schema, limits=limits, introspection=introspection_on(app), mask_errors=not app.debug,
                allow_get=allow_get, batching=batching, root_value=root_value, subscriptions=served, metrics=metrics,
                graphiql=ide_on(app), persisted=persisted, uploads=uploads,
            )  # fmt: skip
        return view

    if context is None:

        async def graphql_endpoint(request: Request) -> Response:
            return await view_for(request).answer(request, None)

        async def graphql_websocket(websocket: WebSocket) -> None:
            await view_for(websocket).answer_websocket(websocket, None)

    else:
        dependency = Depends(context)

        async def graphql_endpoint(request: Request, values: Any = dependency) -> Response:  # type: ignore[misc]
            return await view_for(request).answer(request, values)

        async def graphql_websocket(websocket: WebSocket, values: Any = dependency) -> None:  # type: ignore[misc]
            await view_for(websocket).answer_websocket(websocket, values)

    name = name or "graphql"
    middleware = list(guards or ())

    def described(app: Any, method: str) -> dict[str, Any]:
        return openapi_operation(method, schema if introspection_on(app) else None)

    meta: dict[str, Any] = {"strict_content_type": False, "openapi": described, "tags": ["GraphQL"],
                            "graphql": schema}  # fmt: skip
    if graphiql is not False:  # the page is answered at the endpoint's own path
        meta["security_headers"] = {"csp_merge": GRAPHIQL_CSP}
    routes = [Route(path, ["GET", "POST"], graphql_endpoint, name=name, middleware=middleware, meta=meta)]
    if graphiql is not False:

        async def graphiql_asset(request: Request, asset: str) -> Response:
            if not view_for(request).graphiql:
                raise NotFound()
            return ide.asset(request, asset)

        asset_meta = {"include_in_schema": False, "security_headers": {"csp_merge": GRAPHIQL_CSP}}
        routes.append(Route(ide.assets_path(path) + "/{asset}", ["GET"], graphiql_asset, name=f"{name}_graphiql",
                            meta=asset_meta))  # fmt: skip
    if subscriptions:
        # NOTE: the handshake must answer with the protocol chosen: app.run() serves such an app through ASGI
        websocket_meta = {**meta, "websocket_subprotocols": True, "include_in_schema": False}
        routes.append(Route(path, [WEBSOCKET], graphql_websocket, name=f"{name}_websocket", middleware=middleware,
                            meta=websocket_meta))  # fmt: skip
    return routes


def _prometheus_on(app: Any) -> bool:
    """Whether the app exports Prometheus metrics (``app.enable_prometheus()``): then operations are measured."""
    from ..middleware.metrics import Prometheus

    return any(isinstance(layer, Prometheus) for layer in app.middleware)


# -- the OpenAPI description -----------------------------------------------------------------------------------

_RESULT = {
    "type": "object",
    "properties": {
        "data": {"type": ["object", "null"], "description": "the operation's result"},
        "errors": {"type": "array", "items": {"type": "object"}, "description": "GraphQL errors"},
        "extensions": {"type": "object"},
    },
}


def openapi_operation(method: str, schema: Schema | None) -> dict[str, Any]:
    """The endpoint as an OpenAPI operation: its request and answers; with ``schema`` (introspection on), its SDL
    as ``x-graphql-schema`` (a stranger learns nothing from the document that introspection would not tell)."""
    content = {media: {"schema": _RESULT} for media in ("application/graphql-response+json", "application/json")}
    operation: dict[str, Any] = {
        "summary": "GraphQL " + ("queries" if method == "GET" else "queries and mutations"),
        "description": "A GraphQL endpoint (GraphQL over HTTP). Subscriptions: WebSocket at the same path "
        "(graphql-transport-ws, graphql-ws) or Server-Sent Events (Accept: text/event-stream).",
        "responses": {
            "200": {"description": "A GraphQL answer", "content": content},
            "400": {"description": "A document that does not parse or validate", "content": content},
            "default": {"description": "Error", "content": {"application/problem+json": {"schema": {}}}},
        },
    }
    if method == "GET":
        text = {"type": "string"}
        operation["parameters"] = [
            {"name": "query", "in": "query", "required": True, "schema": text},
            {"name": "variables", "in": "query", "schema": text, "description": "a JSON object"},
            {"name": "operationName", "in": "query", "schema": text},
            {"name": "extensions", "in": "query", "schema": text, "description": "a JSON object"},
        ]
    else:
        request = {
            "type": "object",
            "required": ["query"],
            "properties": {
                "query": {"type": "string"},
                "variables": {"type": ["object", "null"]},
                "operationName": {"type": ["string", "null"]},
                "extensions": {"type": ["object", "null"]},
            },
        }
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": request}}}
    if schema is not None:
        operation["x-graphql-schema"] = schema.as_str()
    return operation
