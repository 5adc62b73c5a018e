"""Route registration shared by App and Blueprint: method decorators, hooks, middleware, nesting."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..http.exceptions import ConfigurationError
from .router import Route, join_path

F = TypeVar("F", bound=Callable[..., Any])

# A middleware is ``async (request, call_next) -> Response``; call_next(request) runs the rest of the chain.
Middleware = Callable[[Any, Callable[[Any], Any]], Any]

# what a route may say beside its handler, read by the parts named (a misspelt option must not pass unnoticed)
ROUTE_OPTIONS = frozenset(
    {
        "status_code",  # the status of results that are not responses; the documented success status
        "response_model",  # the type results are converted to and documented as (None: as returned)
        "tags", "summary", "description", "deprecated", "include_in_schema", "responses",  # OpenAPI
        "security", "public",  # OpenAPI security; public: readable without credentials behind an app-wide auth
        "multipart",  # MultipartLimits for this route's forms
        "csrf_exempt",  # enable_csrf skips this route
        "security_headers",  # this route's own security headers
        "strict_content_type",  # False: JSON body parameters read bodies of any Content-Type
    }
)  # fmt: skip


class Registrar:
    """Collects routes, hooks and middleware; App and Blueprint both are one."""

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self.before_request_hooks: list[Callable[..., Any]] = []
        self.after_request_hooks: list[Callable[..., Any]] = []
        self.middleware: list[Middleware] = []
        self._blueprints: list[tuple[Blueprint, str]] = []

    # -- routes -----------------------------------------------------------------------------------------

    def route(
        self,
        path: str,
        methods: Iterable[str] = ("GET",),
        *,
        name: str | None = None,
        threadpool: bool | None = None,
        stream: bool = False,
        body_limit: int | None = None,
        middleware: Iterable[Middleware] = (),
        guards: Iterable[Callable[..., Any]] = (),
        **meta: Any,
    ) -> Callable[[F], F]:
        """Register the decorated function for ``methods`` at ``path``.

        ``threadpool``: run a sync handler in the worker's thread pool (default) or inline on the event loop
        (``False``, for handlers that never block). ``stream``: don't read the body first; the handler
        iterates ``request.stream()``. ``body_limit``: this route's maximum body size in bytes.
        ``middleware``: this route's own middleware, inside the app's and blueprints'. ``guards``: access rules
        (``cello.security.Role("admin")``…), checked after every middleware, so after authentication.
        ``strict_content_type=False``: JSON body parameters read bodies of any Content-Type (see ``App``).
        """
        unknown = meta.keys() - ROUTE_OPTIONS
        if unknown:
            known = ", ".join(
                sorted({"name", "threadpool", "stream", "body_limit", "middleware", "guards"} | ROUTE_OPTIONS)
            )
            raise ConfigurationError(
                f"{path}: unknown route option(s) {', '.join(sorted(unknown))}; the options are {known}"
            )
        methods = list(methods)
        if guards:
            from ..security.guards import as_guard  # NOTE: imported only by apps that use guards

            guards = [as_guard(guard) for guard in guards]

        def decorator(handler: F) -> F:
            # decorators such as @cache(...) attach middleware to the function itself; they run inside the route's
            attached = getattr(handler, "__cello_middleware__", ())
            self.add_route(
                Route(
                    path,
                    methods,
                    handler,
                    name=name,
                    threadpool=threadpool,
                    stream=stream,
                    body_limit=body_limit,
                    middleware=[*middleware, *attached, *guards],
                    meta=meta,
                )
            )
            return handler

        return decorator

    def add_route(self, route: Route) -> None:
        self._routes.append(route)

    def get(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["GET"], **options)

    def post(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["POST"], **options)

    def put(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["PUT"], **options)

    def patch(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["PATCH"], **options)

    def delete(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["DELETE"], **options)

    def head(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["HEAD"], **options)

    def options(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route(path, ["OPTIONS"], **options)

    def graphql(self, path: str, schema: Any, *, guards: Iterable[Callable[..., Any]] = (), **options: Any) -> None:
        """Serve a ``strawberry.Schema`` at ``path`` (``cello.graphql``; needs the ``graphql`` extra): POST and
        GET (queries only) as the GraphQL-over-HTTP specification says.

        ``context``: a function whose parameters are resolved per request like a handler's (``Request``,
        ``Depends(...)``...), returning a dict of values for ``info.context`` (or a context object of the
        application's own). ``root_value``; ``graphiql`` (the IDE, served by the app at ``path`` to browsers;
        default: on in debug mode only); ``introspection`` (default: on in debug mode or with GraphiQL; errors of
        resolvers are masked outside debug mode); ``allow_get`` (``True``); ``batching``: the most operations one
        request may hold (``None``: no batches); limits, checked before anything runs: ``max_depth`` (15),
        ``max_aliases`` (15), ``max_tokens`` (2000), ``max_length`` (100,000 characters of a document),
        ``max_cost`` (5000, fields resolved, a list counting ``list_size`` items unless its ``first``/``limit``
        argument says), ``cache_size`` (256 parsed and validated documents); ``uploads`` (``False``: multipart
        uploads, which need a ``GraphQL-Preflight`` header); ``persisted_queries`` (``{sha256: document}``: the
        only operations run) or ``apq`` (``True`` or a store: automatic persisted queries, kept ``apq_ttl``
        seconds); ``name``; ``guards``, for the whole endpoint.

        Subscriptions (``subscriptions``: by default, when the schema has a subscription type) over WebSocket at
        the same path — graphql-transport-ws and the legacy graphql-ws — and over SSE (graphql-sse, distinct
        connections: ``Accept: text/event-stream``):
        ``ping_interval`` (15 s), ``connection_init_timeout`` (10 s), ``max_subscriptions`` per connection (100),
        ``origins`` (other origins whose pages may open the WebSocket), ``on_connect(context, params)`` (at
        ``connection_init``: ``False`` refuses the connection, a dict is the acknowledgement's payload).
        """
        from ..graphql.endpoint import graphql_routes  # NOTE: imported only by apps that serve GraphQL

        if guards:
            from ..security.guards import as_guard

            guards = [as_guard(guard) for guard in guards]
        for route in graphql_routes(path, schema, guards=list(guards), **options):
            self.add_route(route)

    def websocket(self, path: str, **options: Any) -> Callable[[F], F]:
        """Register a WebSocket handler (``cello.realtime``): ``async def h(ws)``, or a plain ``def`` that runs in
        a thread of its own with blocking ``ws.send_text`` / ``ws.recv``. Options as for ``route``."""
        from .router import WEBSOCKET

        return self.route(path, [WEBSOCKET], **options)

    def static(
        self,
        prefix: str,
        directory: str | os.PathLike[str],
        *,
        name: str = "static",
        index: str | None = "index.html",
        follow_symlinks: bool = True,
    ) -> None:
        """Serve the files below ``directory`` at ``prefix`` (see ``cello.staticfiles``).

        ``url_for(name, path="css/site.css")`` builds their URLs; ``index`` is served for a directory.
        """
        from ..staticfiles import static_handler

        handler = static_handler(directory, index=index, follow_symlinks=follow_symlinks)
        self.add_route(
            Route(join_path(prefix, "/{path:path}"), ["GET"], handler, name=name, threadpool=False,
                  meta={"include_in_schema": False, "static": os.fspath(directory), "framework": True})
        )  # fmt: skip

    # -- hooks and middleware ---------------------------------------------------------------------------

    def before_request(self, hook: F) -> F:
        """``hook(request)`` runs before the handler; returning anything but None answers instead of it."""
        self.before_request_hooks.append(hook)
        return hook

    def after_request(self, hook: F) -> F:
        """``hook(request, response)`` runs after the handler; it may return a replacement response."""
        self.after_request_hooks.append(hook)
        return hook

    def use(self, middleware: Middleware) -> Middleware:
        """Add a middleware ``async (request, call_next) -> Response`` around every route registered here."""
        if not callable(middleware):
            raise ConfigurationError(f"middleware must be callable, got {middleware!r}")
        self.middleware.append(middleware)
        return middleware

    # -- nesting ----------------------------------------------------------------------------------------

    def register_blueprint(self, blueprint: Blueprint, prefix: str | None = None) -> None:
        if blueprint is self:
            raise ConfigurationError("a blueprint cannot contain itself")
        self._blueprints.append((blueprint, blueprint.prefix if prefix is None else prefix))

    def collect_routes(self) -> list[Route]:
        """Every route of this registrar and its blueprints, prefixes joined, blueprints recorded as owners."""
        routes = list(self._routes)
        for blueprint, prefix in self._blueprints:
            for route in blueprint.collect_routes():
                routes.append(route.with_prefix(prefix, blueprint))
        return routes


class Blueprint(Registrar):
    """A group of routes under a prefix, with its own hooks and middleware; nestable."""

    def __init__(self, prefix: str = "", name: str | None = None) -> None:
        super().__init__()
        if prefix and not prefix.startswith("/"):
            raise ConfigurationError(f"blueprint prefix must start with '/': {prefix!r}")
        self.prefix = prefix.rstrip("/")
        self.name = name or (self.prefix.strip("/").replace("/", ".") or "blueprint")

    def url_path(self, path: str) -> str:
        return join_path(self.prefix, path)

    def __repr__(self) -> str:
        return f"<Blueprint {self.name} {self.prefix or '/'}>"
