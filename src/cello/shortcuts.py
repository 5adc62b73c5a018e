"""The app's ``enable_*`` conveniences, mixed into ``App``: each builds a middleware (or a set of routes) from
``cello.middleware`` / ``cello.security``, imported only when called, and installs it.

**Order.** Whatever order they are called in, the middleware they install take their place in one canonical
order, outermost first: telemetry, request id, metrics, access log, security headers, CORS, compression, sessions, CSRF,
authentication, guards, rate limit, cache, circuit breaker, timeout. So a cached answer still counts against the
rate limit, and the breaker sees what the handler did, not what the cache served. ``app.use(...)`` keeps the
order it is called in, after the conveniences installed before it.

**The framework's own endpoints** (metrics, health, the OpenAPI document and pages, static files) are never
rate limited, cached, broken by a circuit, timed out, or given sessions or CSRF checks, and no guard added with
``add_guard`` applies to them: monitoring must not go dark because a route of the app keeps failing.

**Names.** Cello's keywords, and the reference API's (the published "Cello" 1.x) where they differ:
``enable_cors(origins=...)`` for ``allow_origins``, ``enable_compression(min_size=...)`` for ``minimum_size``,
``enable_prometheus(endpoint=..., namespace=..., subsystem=...)`` for ``path`` and ``prefix``,
``enable_circuit_breaker(half_open_target=..., failure_codes=...)`` for ``success_threshold`` and
``failure_statuses``. Cello's own names are the preferred ones; a keyword that neither knows is a
``ConfigurationError`` naming the valid ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .http.exceptions import ConfigurationError
from .http.response import HTMLResponse, Response
from .routing.router import Route

if TYPE_CHECKING:
    from .app import AppConfig
    from .templating import Templates

F = TypeVar("F", bound=Callable[..., Any])

# the keywords some conveniences take themselves, beside those of what they build (for error messages)
_CACHING = ("store", "methods", "exclude_paths", "max_entries")
_BREAKER = ("name", "half_open_target", "failure_codes")
_PROMETHEUS = ("path", "endpoint", "namespace", "subsystem")
_TEMPLATES = ("template_dir", "auto_escape", "globals")

# the canonical order of the middleware the conveniences install, outermost first
ORDER = (
    "telemetry",
    "request_id",
    "metrics",
    "access_log",
    "security_headers",
    "cors",
    "compression",
    "sessions",
    "csrf",
    "auth",
    "guards",
    "rate_limit",
    "cache",
    "circuit_breaker",
    "timeout",
)


class Shortcuts:
    """``enable_*``, ``add_guard``, ``register_singleton``, templates and cache conveniences of ``App``."""

    # provided by App
    config: AppConfig
    middleware: list[Any]
    shutdown_hooks: list[Callable[..., Any]]
    _response_cache: Any
    _health: Any
    _templates: Templates | None
    _ranks: dict[int, int]
    _loop: Any
    singletons: dict[str, Any]
    templates: Templates

    if TYPE_CHECKING:

        def add_route(self, route: Route) -> None: ...

    def _install(self, layer: Any, slot: str) -> Any:
        """Add ``layer`` at its place in ``ORDER``: before the first installed one that comes later."""
        rank = ORDER.index(slot)
        position = len(self.middleware)
        for index, existing in enumerate(self.middleware):
            if self._ranks.get(id(existing), -1) > rank:
                position = index
                break
        self.middleware.insert(position, layer)
        self._ranks[id(layer)] = rank
        return layer

    # -- the middleware --------------------------------------------------------------------------------

    def enable_request_id(self, **options: Any) -> Any:
        from .middleware.request_id import RequestId

        return self._install(RequestId(**_checked("enable_request_id", options, RequestId)), "request_id")

    def enable_logging(self, **options: Any) -> Any:
        from .middleware.access_log import AccessLog

        return self._install(AccessLog(**_checked("enable_logging", options, AccessLog)), "access_log")

    def enable_security_headers(self, config: Any = None, **options: Any) -> Any:
        """CSP, HSTS (over TLS), X-Frame-Options, nosniff, Referrer-Policy… (``cello.security.SecurityHeaders``)."""
        from .security.headers import SecurityHeaders, SecurityHeadersConfig

        options = _checked("enable_security_headers", options, SecurityHeadersConfig, config=config)
        return self._install(SecurityHeaders(config, **options), "security_headers")

    def enable_cors(self, config: Any = None, *, origins: Iterable[str] | None = None, **options: Any) -> Any:
        """``allow_origins=[...]`` (or the reference's ``origins=``), ``allow_credentials``, … (``CORSConfig``)."""
        from .middleware.cors import CORS, CORSConfig

        _alias("enable_cors", options, "allow_origins", "origins", None if origins is None else list(origins))
        options = _checked("enable_cors", options, CORSConfig, own=["origins"], config=config)
        return self._install(CORS(config, **options), "cors")

    def enable_compression(self, *, min_size: int | None = None, **options: Any) -> Any:
        """``minimum_size`` (or the reference's ``min_size``): bytes below which answers go uncompressed."""
        from .middleware.compression import Compression

        _alias("enable_compression", options, "minimum_size", "min_size", min_size)
        options = _checked("enable_compression", options, Compression, own=["min_size"])
        return self._install(Compression(**options), "compression")

    def enable_sessions(self, config: Any = None, **options: Any) -> Any:
        """``request.session``: signed-cookie sessions, or server-side ones in a store (``SessionConfig``)."""
        from .security.sessions import SessionConfig, Sessions

        return self._install(
            Sessions(config, **_checked("enable_sessions", options, SessionConfig, config=config)), "sessions"
        )

    def enable_csrf(self, config: Any = None, **options: Any) -> Any:
        """Double-submit CSRF protection for unsafe methods (``cello.security.CSRFConfig``)."""
        from .security.csrf import CSRF, CSRFConfig

        return self._install(CSRF(config, **_checked("enable_csrf", options, CSRFConfig, config=config)), "csrf")

    def add_guard(self, guard: Any) -> Any:
        """An access rule for every route of the app (``Role("admin")``, ``Authenticated()``, a function), checked
        after authentication; the framework's own endpoints are left out."""
        from .security.guards import as_guard

        rule = as_guard(guard)
        rule.framework_routes = False  # type: ignore[attr-defined]  # see cello.dispatch
        return self._install(rule, "guards")

    def enable_rate_limit(self, config: Any = None, **options: Any) -> Any:
        from .middleware.ratelimit import RateLimit, RateLimitConfig

        return self._install(
            RateLimit(config, **_checked("enable_rate_limit", options, RateLimitConfig, config=config)), "rate_limit"
        )

    def enable_caching(
        self,
        store: Any = None,
        *,
        methods: Iterable[str] = ("GET", "HEAD"),
        exclude_paths: Iterable[str] = (),
        max_entries: int | None = None,
        **options: Any,
    ) -> Any:
        """Cache the app's cacheable answers: ``ttl``, ``vary``, ``cache_authenticated``, ``max_body``; ``methods``
        (GET and HEAD, the only ones whose answers may be reused), ``exclude_paths`` (exact, or ``prefix*``) and,
        for the memory store, ``max_entries``."""
        from .middleware.cache import Cache, ResponseCache
        from .stores.memory import MemoryStore

        options = _checked("enable_caching", options, ResponseCache, own=_CACHING, mapped=["store"])
        methods = frozenset(method.upper() for method in methods)
        if not methods or not methods <= {"GET", "HEAD"}:
            raise ConfigurationError("enable_caching(methods=...) takes GET and HEAD: other methods change state")
        if max_entries is not None:
            if store is not None:
                raise ConfigurationError("max_entries sizes the memory store; a store you give sizes itself")
            store = MemoryStore(max_keys=max_entries)
        self._response_cache = ResponseCache(store, **options)
        cache = Cache(cache=self._response_cache, defer_to_routes=True, methods=methods, exclude_paths=exclude_paths)
        return self._install(cache, "cache")

    def invalidate_cache(self, tags: Iterable[str] = (), paths: Iterable[str] = ()) -> Any:
        """Forget the cached answers under these tags (``@cache(tags=[...])``) and for these paths.

        It starts at once: in an async handler the result may be awaited to wait until it is done; a sync handler
        (in the thread pool) waits for it here. Returns how many answers were forgotten, when waited for.
        """
        work = self.cache.invalidate_many(tags=tuple(tags), paths=tuple(paths))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            return loop.create_task(work)
        app_loop = self._loop
        if app_loop is not None and app_loop.is_running():  # a sync handler's thread: the worker's loop does it
            return asyncio.run_coroutine_threadsafe(work, app_loop).result()
        return asyncio.run(work)  # no loop at all (a script, a test): just do it

    @property
    def cache(self) -> Any:
        """The app's response cache (``ResponseCache``): invalidate with ``await app.cache.invalidate(path)``."""
        if self._response_cache is None:
            from .middleware.cache import ResponseCache

            self._response_cache = ResponseCache()
        return self._response_cache

    def enable_circuit_breaker(
        self,
        name: str | None = None,
        *,
        half_open_target: int | None = None,
        failure_codes: Iterable[int] | None = None,
        **options: Any,
    ) -> Any:
        """A circuit breaker around the app's routes, one circuit per route template: a route that keeps failing
        answers 503 for a while, the others (and the framework's own endpoints) go on. ``name=...`` makes it one
        circuit shared by every route instead. ``failure_threshold``, ``reset_timeout``, ``success_threshold``
        (the reference's ``half_open_target``), ``failure_statuses`` (or ``failure_codes=[500, 503]``), … as
        ``cello.middleware.CircuitBreaker`` takes them."""
        from .middleware.circuit import CircuitBreaker

        _alias("enable_circuit_breaker", options, "success_threshold", "half_open_target", half_open_target)
        codes = None if failure_codes is None else frozenset(int(code) for code in failure_codes).__contains__
        _alias("enable_circuit_breaker", options, "failure_statuses", "failure_codes", codes)
        options = _checked(
            "enable_circuit_breaker", options, CircuitBreaker, own=_BREAKER, mapped=["name", "per_route"]
        )
        breaker = CircuitBreaker(name or "routes", per_route=name is None, **options)
        return self._install(breaker, "circuit_breaker")

    def enable_timeout(self, seconds: float) -> Any:
        from .middleware.limits import Timeout

        return self._install(Timeout(seconds), "timeout")

    def enable_body_limit(self, max_bytes: int) -> None:
        """Refuse bodies over ``max_bytes`` with 413, before reading them (the engine-level limit)."""
        if max_bytes < 0:
            raise ConfigurationError("max_bytes must be >= 0")
        self.config.max_body_size = max_bytes

    def enable_prometheus(
        self,
        path: str = "/metrics",
        *,
        endpoint: str | None = None,
        namespace: str | None = None,
        subsystem: str | None = None,
        **options: Any,
    ) -> Any:
        """Export request metrics (and the rate limiters' and breakers') at ``path`` (the reference's
        ``endpoint``). Metric names start with ``prefix`` (``cello``), or ``namespace_subsystem``."""
        from .middleware.metrics import Prometheus

        options = _checked("enable_prometheus", options, Prometheus, own=_PROMETHEUS, mapped=["path"])
        if endpoint is not None:
            if path != "/metrics":
                raise ConfigurationError("give enable_prometheus() path or endpoint (the same option), not both")
            path = endpoint
        if namespace is not None or subsystem is not None:
            if "prefix" in options:
                raise ConfigurationError("give enable_prometheus either prefix or namespace/subsystem")
            options["prefix"] = "_".join(part for part in (namespace or "cello", subsystem) if part)
        exporter = Prometheus(path, **options)

        async def metrics() -> Response:
            return Response(exporter.export(), media_type="text/plain; version=0.0.4; charset=utf-8")

        self.add_route(Route(path, ["GET"], metrics, name="metrics",
                             meta={"include_in_schema": False, "framework": True}))  # fmt: skip
        self.shutdown_hooks.append(exporter.worker_stopped)
        return self._install(exporter, "metrics")

    def enable_telemetry(self, config: Any = None, **options: Any) -> Any:
        """OpenTelemetry traces (and request metrics) of every request, database statement, Redis command and
        circuit-breaker call (``cello.telemetry.OpenTelemetryConfig``; ``pip install 'cello[telemetry]'``)."""
        from . import telemetry

        options = _checked("enable_telemetry", options, telemetry.OpenTelemetryConfig, config=config)
        middleware = telemetry.enable(self, config or telemetry.OpenTelemetryConfig(**options))  # type: ignore[arg-type]
        return self._install(middleware, "telemetry")

    # -- routes of the framework's own ----------------------------------------------------------------

    def enable_health_checks(self, config: Any = None, **options: Any) -> Any:
        """``/health/live``, ``/health/ready``, ``/health/startup`` and ``/health`` (``HealthCheckConfig``); add
        checks with ``@app.health_check(name)``. Called again, it reconfigures (the checks stay)."""
        from .middleware.health import HealthCheckConfig, HealthChecks

        options = _checked("enable_health_checks", options, HealthChecks)
        health = HealthChecks(config or HealthCheckConfig(), **options)
        if self._health is not None:
            health.checks.update(self._health.checks)
        self._health = health
        return health

    def health_check(self, name: str, timeout: float | None = None) -> Callable[[F], F]:
        """Register a readiness check: ``@app.health_check("database")`` over a sync or async function."""

        def decorator(check: F) -> F:
            if self._health is None:
                self.enable_health_checks()
            self._health.add(name, check, timeout)
            return check

        return decorator

    def enable_openapi(self, config: Any = None, **options: Any) -> Any:
        """The OpenAPI document and its pages (on by default): ``title``, ``version``, … (``OpenAPIConfig``)."""
        from .openapi.config import OpenAPIConfig

        options = _checked("enable_openapi", options, OpenAPIConfig, config=config)
        self.config.openapi = config or OpenAPIConfig(**options)
        return self.config.openapi

    # -- templates ------------------------------------------------------------------------------------

    def enable_templates(
        self,
        template_dir: str | os.PathLike[str] | list[str | os.PathLike[str]] = "templates",
        *,
        auto_escape: bool = True,
        globals: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Templates:
        """Jinja2 templates from ``template_dir``, for ``app.render`` and ``TemplateResponse`` (the same as
        ``App(templates=...)``); ``globals`` are seen by every template, ``filters`` and ``auto_reload`` too."""
        from .templating import Templates

        options = _checked("enable_templates", options, Templates, own=_TEMPLATES, mapped=["directory", "autoescape"])
        self.templates = Templates(template_dir, globals=globals, autoescape=auto_escape, **options)
        return self.templates

    def render(
        self, name: str, context: Mapping[str, Any] | None = None, /, *, status: int = 200, headers: Any = None,
        **more: Any,
    ) -> RenderedTemplate:  # fmt: skip
        """Render a template to text: ``html = app.render("page.html", {"user": user})``. Awaited, the text comes as
        an HTML response: ``return await app.render("page.html", user=user)`` (``status``/``headers`` for it)."""
        text = self.templates.render(name, {**(context or {}), **more})
        return RenderedTemplate(text, status, headers)

    def render_string(self, source: str, context: Mapping[str, Any] | None = None, /, **more: Any) -> str:
        """Render template text given inline: ``app.render_string("Hello {{ name }}", {"name": "Ada"})``."""
        return self.templates.render_string(source, {**(context or {}), **more})

    # -- dependencies ---------------------------------------------------------------------------------

    def register_singleton(self, name: str, value: Any) -> Any:
        """A value handed to every handler that declares a parameter of that name (``def h(request, db): ...``)
        without annotation or with one the value is an instance of. ``Depends`` does the same for values made
        on demand; a path parameter of the same name wins."""
        if not name.isidentifier():
            raise ConfigurationError(f"a singleton's name must be a parameter name, not {name!r}")
        self.singletons[name] = value
        return value


class RenderedTemplate(str):
    """A rendered template's text; awaited, an ``HTMLResponse`` of it (``return await app.render(...)``)."""

    def __new__(cls, text: str, status: int = 200, headers: Any = None) -> RenderedTemplate:
        rendered = super().__new__(cls, text)
        rendered.status = status
        rendered.headers = headers
        return rendered

    status: int
    headers: Any

    def __await__(self) -> Any:
        return HTMLResponse(str(self), self.status, self.headers)
        yield  # pragma: no cover - makes this a generator, i.e. awaitable


def _alias(method: str, options: dict[str, Any], name: str, alias: str, value: Any) -> None:
    """The reference API's ``alias``, given (not None), stands for Cello's ``name``; both at once is an error."""
    if value is None:
        return
    if name in options:
        raise ConfigurationError(f"give {method}() {name} or {alias} (the same option), not both")
    options[name] = value


def _checked(
    method: str,
    options: dict[str, Any],
    target: Any,
    *,
    own: Iterable[str] = (),
    mapped: Iterable[str] = (),
    config: Any = None,
) -> dict[str, Any]:
    """``options`` when every key is one ``target`` takes (a dataclass's fields, or a callable's keywords), less
    the ``mapped`` ones the method fills itself; else a ``ConfigurationError`` naming every valid keyword (those
    and the method's ``own``) — never a bare TypeError from deep inside. Keywords beside a ``config`` object are
    refused too: one of them would be ignored."""
    if dataclasses.is_dataclass(target):
        accepted = {field.name for field in dataclasses.fields(target)}
    else:
        parameters = inspect.signature(target).parameters.values()
        accepted = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    accepted -= {"self", "config", *mapped}
    unknown = sorted(set(options) - accepted)
    if unknown:
        valid = ", ".join(sorted(accepted | set(own)))
        raise ConfigurationError(f"{method}() does not take {', '.join(unknown)}; it takes {valid}")
    if config is not None and options:
        raise ConfigurationError(f"give {method}() either a config object or keywords, not both")
    return dict(options)
