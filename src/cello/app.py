"""App: registration, configuration, lifecycle and run(). Nothing here runs per request.

An App is a granian RSGI application (``__rsgi__``) and a plain ASGI application (``__call__``) at once; the
engine adapters in ``cello.engine`` hold the request-time code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .dto.errors import ValidationErrorFormat
from .http.exceptions import ConfigurationError
from .http.uploads import MultipartLimits
from .openapi.config import OpenAPIConfig
from .routing.blueprint import Registrar
from .routing.router import Route, Router
from .shortcuts import Shortcuts
from .templating import Templates

if TYPE_CHECKING:
    from .di import Dependencies, Resolver
    from .dispatch import Dispatcher

F = TypeVar("F", bound=Callable[..., Any])
Lifespan = Callable[["App"], Any]

logger = logging.getLogger("cello")

DEFAULT_MAX_BODY = 16 * 1024 * 1024


@dataclass
class AppConfig:
    """Settings read at startup; see ``App`` for what each means."""

    debug: bool = False
    max_body_size: int = DEFAULT_MAX_BODY
    threadpool: bool = True
    threadpool_size: int = 40
    redirect_slashes: bool = True
    trusted_proxies: frozenset[Any] = field(default_factory=frozenset)
    multipart: MultipartLimits = field(default_factory=MultipartLimits)
    background_limit: int = 100
    shutdown_timeout: float = 30.0
    validation_errors: ValidationErrorFormat = field(default_factory=ValidationErrorFormat)
    openapi: OpenAPIConfig | None = field(default_factory=OpenAPIConfig)
    websocket_max_size: int = 1024 * 1024
    websocket_idle_timeout: float | None = None
    websocket_threads: int = 1000
    body_timeout: float = 30.0
    strict_content_type: bool = True


def _parse_proxies(proxies: Iterable[str]) -> frozenset[Any]:
    parsed: set[Any] = set()
    for proxy in proxies:
        if proxy == "*":
            parsed.add("*")
            continue
        try:
            parsed.add(ipaddress.ip_network(proxy, strict=False))
        except ValueError:
            parsed.add(proxy)  # a unix socket path or host name as the engine reports it
    return frozenset(parsed)


class App(Registrar, Shortcuts):
    """A Cello application.

    ``debug``: 500 responses carry the exception and traceback (never in production).
    ``max_body_size``: bytes a request body may have before the answer is 413 (per route: ``body_limit``).
    ``body_timeout``: seconds a client has to send a whole request body (streamed uploads included) before the
    answer is 408, so a client trickling its body cannot hold a connection for ever.
    ``threadpool``: sync handlers run in a bounded thread pool (default) or, when False, inline on the loop.
    ``redirect_slashes``: a path that misses only by a trailing slash gets a 308 to the registered form.
    ``trusted_proxies``: peers (addresses or CIDR networks, ``"*"`` for any) whose X-Forwarded-For and
    X-Forwarded-Proto are believed; without them ``request.client`` is always the socket peer.
    ``lifespan``: ``lifespan(app)`` returning a (sync or async) context manager around the app's life.
    ``multipart``: default ``MultipartLimits`` for form uploads (per route: ``multipart=``).
    ``background_limit``: background-task batches running at once per worker; more wait their turn.
    ``shutdown_timeout``: seconds shutdown waits for running background tasks before cancelling them.
    ``validation_errors``: the shape of 422 answers (``ValidationErrorFormat``).
    ``openapi``: an ``OpenAPIConfig`` for /openapi.json, /docs and /redoc; ``False`` turns them off.
    ``templates``: a Jinja2 template directory (or a ``Templates``) for ``TemplateResponse`` and ``render``.
    ``websocket_max_size``: bytes a received WebSocket message may have (larger: closed with 1009).
    ``websocket_idle_timeout``: seconds a WebSocket peer may stay silent before it is closed (1001); None: never.
    ``websocket_threads``: threads for plain ``def`` WebSocket handlers, one per open connection (a pool of its
    own, apart from ``threadpool_size``).
    ``strict_content_type``: JSON body parameters read only bodies sent as JSON (``application/json`` or a
    ``+json`` type), else 415 — a defence against cross-site requests; ``False`` reads any body, for clients that
    cannot set the header (per route: ``strict_content_type=False``). ``request.json()`` reads any body anyway.
    """

    def __init__(
        self,
        *,
        debug: bool = False,
        max_body_size: int = DEFAULT_MAX_BODY,
        threadpool: bool = True,
        threadpool_size: int = 40,
        redirect_slashes: bool = True,
        trusted_proxies: Iterable[str] = (),
        lifespan: Lifespan | None = None,
        on_startup: Iterable[Callable[..., Any]] = (),
        on_shutdown: Iterable[Callable[..., Any]] = (),
        multipart: MultipartLimits | None = None,
        background_limit: int = 100,
        shutdown_timeout: float = 30.0,
        validation_errors: ValidationErrorFormat | None = None,
        openapi: OpenAPIConfig | bool | None = True,
        templates: str | os.PathLike[str] | Templates | None = None,
        websocket_max_size: int = 1024 * 1024,
        websocket_idle_timeout: float | None = None,
        websocket_threads: int = 1000,
        body_timeout: float = 30.0,
        strict_content_type: bool = True,
    ) -> None:
        super().__init__()
        if max_body_size < 0 or threadpool_size < 1:
            raise ConfigurationError("max_body_size must be >= 0 and threadpool_size >= 1")
        if body_timeout <= 0:
            raise ConfigurationError("body_timeout must be > 0")
        if background_limit < 1 or shutdown_timeout < 0:
            raise ConfigurationError("background_limit must be >= 1 and shutdown_timeout >= 0")
        if websocket_max_size < 1 or websocket_threads < 1 or (websocket_idle_timeout or 1) <= 0:
            raise ConfigurationError("websocket_max_size, websocket_threads and websocket_idle_timeout must be > 0")
        self.config = AppConfig(
            debug=debug,
            max_body_size=max_body_size,
            threadpool=threadpool,
            threadpool_size=threadpool_size,
            redirect_slashes=redirect_slashes,
            trusted_proxies=_parse_proxies(trusted_proxies),
            multipart=multipart or MultipartLimits(),
            background_limit=background_limit,
            shutdown_timeout=shutdown_timeout,
            validation_errors=validation_errors or ValidationErrorFormat(),
            openapi=OpenAPIConfig() if openapi is True else (openapi or None),
            websocket_max_size=websocket_max_size,
            websocket_idle_timeout=websocket_idle_timeout,
            websocket_threads=websocket_threads,
            body_timeout=body_timeout,
            strict_content_type=strict_content_type,
        )
        # dependency -> replacement, consulted on every resolution (tests swap real services for stand-ins here)
        self.dependency_overrides: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._dependencies: Dependencies | None = None
        self._templates: Templates | None = None
        self._response_cache: Any = None
        self._health: Any = None
        self._ranks: dict[int, int] = {}  # middleware installed by enable_* -> its place in shortcuts.ORDER
        self.singletons: dict[str, Any] = {}  # register_singleton: handler parameters filled by name
        self.brokers: list[Any] = []  # include_broker: the message brokers whose subscribers run here
        self._grpc: Any = None  # grpc_service: the gRPC services served on app.run(grpc_port=...)
        self._loop: Any = None  # the event loop the app started on (a worker's)
        if templates is not None:
            self.templates = templates if isinstance(templates, Templates) else Templates(templates)
        self.state: dict[str, Any] = {}
        self.exception_handlers: dict[type[BaseException] | int, Callable[..., Any]] = {}
        self.startup_hooks: list[Callable[..., Any]] = list(on_startup)
        # NOTE: what brings the app work from elsewhere (broker subscribers, gRPC calls, outbox relays, projectors,
        # sagas) stops here at shutdown, in the order given: after the requests under way, before the shutdown
        # hooks, which close what that work uses (a database pool closed first is reopened by its next call)
        self.drain_hooks: list[Callable[..., Any]] = []
        self.shutdown_hooks: list[Callable[..., Any]] = list(on_shutdown)
        self.lifespan = lifespan
        self._mounted_apps: list[App] = []
        self._asgi_mounts: list[tuple[str, Any]] = []
        self._dispatcher: Dispatcher | None = None
        self._lifespan_stack: contextlib.AsyncExitStack | None = None
        self._unchain_signals: Callable[[], None] | None = None
        self.started = False

    @property
    def debug(self) -> bool:
        return self.config.debug

    # -- registration -----------------------------------------------------------------------------------

    def add_route(self, route: Route) -> None:
        if self._dispatcher is not None:
            raise ConfigurationError("routes must be registered before the app starts serving")
        super().add_route(route)

    def on_startup(self, hook: F) -> F:
        self.startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: F) -> F:
        self.shutdown_hooks.append(hook)
        return hook

    def exception_handler(self, key: type[BaseException] | int) -> Callable[[F], F]:
        """Register ``handler(request, exc)`` for an exception class or an HTTP status code."""

        def decorator(handler: F) -> F:
            self.exception_handlers[key] = handler
            return handler

        return decorator

    def mount(self, prefix: str, app: Any) -> None:
        """Serve another Cello app, or any ASGI application, under ``prefix``."""
        if not prefix.startswith("/") or prefix == "/":
            raise ConfigurationError(f"mount prefix must be a path below '/': {prefix!r}")
        prefix = prefix.rstrip("/")
        if isinstance(app, App):
            self._mounted_apps.append(app)
            self.register_blueprint(app, prefix)  # type: ignore[arg-type]
        else:
            from .engine.mount import asgi_mount_routes

            self._asgi_mounts.append((prefix, app))
            for route in asgi_mount_routes(prefix, app):
                super().add_route(route)

    def collect_routes(self) -> list[Route]:
        """Every route, blueprints flattened, plus the OpenAPI (and AsyncAPI) documents, documentation pages and
        health checks."""
        from .openapi.ui import openapi_routes

        documentation = openapi_routes(self)
        if self.brokers:
            from .messaging.asyncapi import asyncapi_routes

            documentation += asyncapi_routes(self)
        for route in documentation:
            route.meta["public"] = True  # readable without credentials, also behind an app-wide authenticator
            route.meta["framework"] = True  # the framework's own: see cello.shortcuts
        health = self._health.routes() if self._health is not None else []
        return [*super().collect_routes(), *documentation, *health]

    def grpc_service(self, servicer: Any, *, guards: Iterable[Any] = (), middleware: Iterable[Any] = (),
                     web: bool = True) -> Any:  # fmt: skip
        """Serve a gRPC servicer (a subclass of the ``<Name>Servicer`` that ``cello grpc-compile`` generated) on
        ``app.run(grpc_port=...)``'s port, in every worker, with the health and reflection services
        (``cello.grpc``; needs the ``grpc`` extra), and — unless ``web=False`` — its unary and server-streaming
        methods over Connect and gRPC-Web on the app's own port (``cello.grpc.web``). The app's authenticators
        and guards protect its methods, and ``guards`` too (``cello.grpc.auth``); ``middleware`` (a ``RateLimit``,
        a ``CircuitBreaker``) runs around each of its calls (``cello.grpc.admission``)."""
        for route in self._grpc_server().add(servicer, list(guards), list(middleware), web=web):
            self.add_route(route)
        return servicer

    def configure_grpc(self, **settings: Any) -> None:
        """Settings of the app's gRPC server (``cello.grpc.server.GrpcServer.configure``): ``max_message_size``
        (bytes, each way; 4 MiB), ``compression`` (``"gzip"``, ``"deflate"`` or None), ``keepalive_time`` and
        ``keepalive_timeout`` (seconds), ``min_ping_interval`` (the least seconds between a client's pings),
        ``drain_timeout`` (seconds given to calls under way at shutdown)."""
        self._grpc_server().configure(**settings)

    def _grpc_server(self) -> Any:
        if self._grpc is None:
            from .grpc.server import GrpcServer  # NOTE: imported only by apps that serve gRPC

            self._grpc = GrpcServer(self)
            self.startup_hooks.append(self._grpc.start)
            self.drain_hooks.append(self._grpc.stop)
        return self._grpc

    def include_broker(self, broker: Any) -> Any:
        """Run a ``cello.messaging.Broker``'s subscribers in this app: connected at startup and drained at
        shutdown in every worker, its readiness reported as ``broker``."""
        self.brokers.append(broker)
        return broker.attach(self)

    def openapi(self) -> dict[str, Any]:
        """The app's OpenAPI 3.1 document (as served at ``/openapi.json``)."""
        from .openapi.schema import build_openapi

        self.dispatcher  # noqa: B018 - the document describes compiled routes
        return build_openapi(self)

    def asyncapi(self) -> dict[str, Any]:
        """The AsyncAPI 3.0 document of the app's brokers (as served at ``/asyncapi.json``)."""
        from .messaging.asyncapi import build_asyncapi

        return build_asyncapi(self)

    @property
    def router(self) -> Router:
        """The compiled routing table (compiles the app if it has not started yet)."""
        return self.dispatcher.router

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            # NOTE: imported here, like the DI machinery below, so `import cello` stays light (asyncio, inspect,
            # msgspec load when an app compiles its routes, not when a module defines them)
            from .dispatch import Dispatcher

            self._dispatcher = Dispatcher(self)
        return self._dispatcher

    @property
    def dependencies(self) -> Dependencies:
        """The app's dependency state: app-scoped values and override plans (see ``cello.di``)."""
        if self._dependencies is None:
            from .di import Dependencies

            self._dependencies = Dependencies(self)
        return self._dependencies

    def url_path_for(self, name: str, **params: Any) -> str:
        """The path of the route called ``name`` with ``params`` filled in."""
        for route in self.router:
            if route.name == name:
                path = route.path
                for key, value in params.items():
                    path = _fill(path, key, str(value))
                return path
        raise KeyError(f"no route named {name!r}")

    # -- lifecycle --------------------------------------------------------------------------------------

    async def startup(self) -> None:
        """Compile routes, enter the lifespan, run startup hooks; every engine and the test client call it."""
        if self.started:
            return
        self.dispatcher  # noqa: B018 - compile now so a bad route fails at boot, not on first request
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            for sub in self._mounted_apps:
                await sub.startup()
                stack.push_async_callback(sub.shutdown)
            if self.lifespan is not None:
                manager = self.lifespan(self)
                if hasattr(manager, "__aenter__"):
                    state = await stack.enter_async_context(manager)
                else:
                    state = stack.enter_context(manager)
                if isinstance(state, dict):
                    self.state.update(state)
            for hook in self.startup_hooks:
                await _call(hook, self)
        except BaseException:
            await stack.aclose()
            raise
        self._lifespan_stack = stack
        self._loop = asyncio.get_running_loop()
        from .engine.signals import chain_shutdown_signals

        # WebSockets and event streams are told goodbye before the server stops (see cello.engine.signals)
        self._unchain_signals = chain_shutdown_signals(self)
        self.started = True

    async def shutdown(self) -> None:
        if not self.started:
            return
        self.started = False
        if self._unchain_signals is not None:
            self._unchain_signals()
            self._unchain_signals = None
        try:
            if self._dispatcher is not None:
                await self._dispatcher.drain()
                await self._dispatcher.background.drain(self.config.shutdown_timeout)
            for hook in (*self.drain_hooks, *self.shutdown_hooks):
                try:
                    await _call(hook, self)
                except Exception:
                    logger.exception("shutdown hook %r failed", hook)
        finally:
            try:
                if self._dependencies is not None:
                    await self._dependencies.close()
            except Exception:
                logger.exception("tearing down app-scoped dependencies failed")
            if self._lifespan_stack is not None:
                stack, self._lifespan_stack = self._lifespan_stack, None
                await stack.aclose()
            if self._dispatcher is not None:
                self._dispatcher.shutdown()

    @property
    def templates(self) -> Templates:
        if self._templates is None:
            raise ConfigurationError("no templates configured: App(templates='templates') or app.templates = ...")
        return self._templates

    @templates.setter
    def templates(self, templates: Templates) -> None:
        templates.bind(self)
        self._templates = templates

    def dependency_scope(self, request: Any = None) -> contextlib.AbstractAsyncContextManager[Resolver]:
        """Resolve dependencies outside a route: ``async with app.dependency_scope() as deps:
        db = await deps.resolve(get_db)``; generator teardowns run when the block ends."""
        return self.dependencies.scope(request)

    # -- engine faces -----------------------------------------------------------------------------------

    @property
    def __rsgi__(self) -> Callable[[Any, Any], Any]:
        # granian reads this attribute once per worker; handing it the adapter's closure directly keeps
        # a method hop off every request
        from .engine.rsgi import rsgi_handler

        return rsgi_handler(self)

    def __rsgi_init__(self, loop: Any) -> None:
        loop.run_until_complete(self.startup())

    def __rsgi_del__(self, loop: Any) -> None:
        loop.run_until_complete(self.shutdown())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        asgi = self.__dict__.get("_asgi")
        if asgi is None:
            from .engine.asgi import asgi_handler

            asgi = self.__dict__["_asgi"] = asgi_handler(self)
        await asgi(scope, receive, send)

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        workers: int = 1,
        **options: Any,
    ) -> None:
        """Serve the app with the embedded granian engine; see ``cello.engine.server.run`` for options."""
        from .engine.server import run

        run(self, host=host, port=port, workers=workers, **options)


async def _call(hook: Callable[..., Any], app: App) -> None:
    import inspect

    wants_app = _accepts_argument(hook)
    result = hook(app) if wants_app else hook()
    if inspect.isawaitable(result):
        await result


def _accepts_argument(func: Callable[..., Any]) -> bool:
    import inspect

    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters)


def _fill(path: str, key: str, value: str) -> str:
    import re

    return re.sub(r"\{" + re.escape(key) + r"(?::[A-Za-z_]\w*)?\}", value.replace("\\", r"\\"), path)
