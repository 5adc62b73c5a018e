"""The middleware suite. One contract for all of it: ``async (request, call_next) -> Response``.

A middleware is any callable of that shape — usually an object configured once (``CORS(...)``), whose
``__call__`` receives the request and the rest of the chain. Attach it to the app (``app.use(mw)``), a blueprint
(``bp.use(mw)``) or a route (``@app.get(path, middleware=[mw])``); ``app.enable_*()`` are shortcuts that build
one with keyword options and install it on the app. Each route's chain is compiled once at startup: app
middleware outermost (in the order added), then blueprint middleware, then the route's; a route without any pays
nothing. Inside the chain exceptions have already become responses, so middleware sees 404s, 405s, 422s and 500s
like any other answer, and preflight ``OPTIONS`` for paths without an OPTIONS route.

The security middleware (``JwtAuth``, ``BasicAuth``, ``ApiKeyAuth``, guards, sessions, CSRF, security headers)
lives in ``cello.security`` and is re-exported here, imported on first use.
"""

from .access_log import AccessLog
from .cache import Cache, ResponseCache, cache
from .circuit import CircuitBreaker, CircuitOpenError
from .compression import Compression
from .cors import CORS, CORSConfig
from .health import HealthCheckConfig, HealthChecks
from .limits import BodyLimit, Timeout
from .ratelimit import AdaptiveRateLimitConfig, RateLimit, RateLimitConfig
from .request_id import RequestId, RequestIdLogFilter

__all__ = [
    "CORS",
    "AccessLog",
    "AdaptiveRateLimitConfig",
    "BodyLimit",
    "CORSConfig",
    "Cache",
    "CircuitBreaker",
    "CircuitOpenError",
    "Compression",
    "HealthCheckConfig",
    "HealthChecks",
    "Prometheus",
    "RateLimit",
    "RateLimitConfig",
    "RequestId",
    "RequestIdLogFilter",
    "ResponseCache",
    "Timeout",
    "cache",
]


_SECURITY = frozenset({
    "JwtConfig", "JwtAuth", "BasicAuth", "ApiKeyAuth", "Principal", "UserLoader", "Guard", "Role", "Permission",
    "Authenticated", "And", "Or", "Not", "Session", "SessionConfig", "Sessions", "CSRFConfig", "CSRF",
    "SecurityHeaders", "SecurityHeadersConfig", "CSP", "HSTS", "PermissionsPolicy",
})  # fmt: skip


def __getattr__(name: str) -> object:
    # prometheus-client is an extra: import the exporter only when asked for
    if name == "Prometheus":
        from .metrics import Prometheus

        return Prometheus
    if name in _SECURITY:  # the security package pulls in PyJWT: only for apps that use it
        from .. import security

        return getattr(security, name)
    raise AttributeError(f"module 'cello.middleware' has no attribute {name!r}")
