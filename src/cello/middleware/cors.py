"""CORS: which other origins may call this app from a browser, with what.

``app.enable_cors(allow_origins=["https://app.example"], allow_credentials=True)`` or ``app.use(CORS(...))``.
Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here for every path, also paths
without an OPTIONS route (the middleware sees the framework's 404/405 answers too). Responses to allowed origins
carry exactly one ``Access-Control-Allow-Origin`` (the request's origin, or ``*`` when any origin is allowed
without credentials) and ``Vary: Origin`` whenever the answer depends on the origin. A disallowed origin gets
the response without CORS headers, which the browser then blocks; a disallowed preflight gets 403.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..http.exceptions import ConfigurationError, Forbidden
from ..http.response import ProblemResponse, Response, add_vary
from .base import HookMiddleware

SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})
ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


@dataclass
class CORSConfig:
    """``allow_origins``: exact origins, or ``["*"]`` for any. ``allow_origin_regex``: a pattern matched in full.
    ``allow_methods`` / ``allow_headers``: what preflights may ask for (``["*"]`` for any).
    ``allow_credentials``: cookies and Authorization across origins (then ``*`` is answered with the origin).
    ``expose_headers``: response headers scripts may read. ``max_age``: seconds a browser may cache a preflight.
    """

    allow_origins: list[str] = field(default_factory=list)
    allow_origin_regex: str | None = None
    allow_methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    allow_headers: list[str] = field(default_factory=list)
    allow_credentials: bool = False
    expose_headers: list[str] = field(default_factory=list)
    max_age: int = 600


class CORS(HookMiddleware):
    """The CORS middleware; see ``CORSConfig`` for the options (also accepted as keywords)."""

    def __init__(self, config: CORSConfig | None = None, **options: Any) -> None:
        config = config or CORSConfig(**options)
        self.config = config
        self.any_origin = "*" in config.allow_origins
        self.origins = frozenset(o.rstrip("/") for o in config.allow_origins if o != "*")
        self.origin_pattern = re.compile(config.allow_origin_regex) if config.allow_origin_regex else None
        self.any_method = "*" in config.allow_methods
        self.methods = frozenset(m.upper() for m in config.allow_methods)
        self.any_header = "*" in config.allow_headers
        self.headers = frozenset(h.lower() for h in config.allow_headers) | SAFELISTED_HEADERS
        if config.max_age < 0:
            raise ConfigurationError("CORS max_age must be >= 0")
        self.allow_methods_header = ", ".join(sorted(ALL_METHODS if self.any_method else self.methods))
        self.expose_header = ", ".join(config.expose_headers)
        self.credentials = config.allow_credentials
        self.max_age = str(config.max_age)
        # "*" cannot carry credentials, and a specific answer varies by origin
        self._star = self.any_origin and not self.credentials and self.origin_pattern is None
        tail = []
        if self.credentials:
            tail.append(("access-control-allow-credentials", "true"))
        if self.expose_header:
            tail.append(("access-control-expose-headers", self.expose_header))
        self._tail = tuple(tail)

    def allows(self, origin: str) -> bool:
        if self.any_origin or origin in self.origins:
            return True
        return self.origin_pattern is not None and self.origin_pattern.fullmatch(origin) is not None

    def enter(self, request: Any) -> Any:
        origin = request.header("origin")
        if origin is None:
            return None  # not a cross-origin browser request: nothing to add
        if request.method == "OPTIONS" and request.header("access-control-request-method") is not None:
            return self._preflight(request, origin)
        return origin

    def leave(self, request: Any, response: Response, origin: Any) -> Response:
        if origin is None:
            return response
        if self.allows(origin):
            self._decorate(response, origin)
        elif not self.any_origin:
            add_vary(response, "Origin")
        return response

    def _allow_origin_value(self, origin: str) -> str:
        return "*" if self._star else origin

    def _decorate(self, response: Response, origin: str) -> None:
        headers = response.raw_headers
        has_vary = False
        for key, _ in headers:  # one pass for both questions: this runs on every cross-origin response
            if key == "vary":
                has_vary = True
            elif key == "access-control-allow-origin":  # a handler set one: ours replaces it
                headers[:] = [(k, v) for k, v in headers if k != "access-control-allow-origin"]
                has_vary = "vary" in (k for k, _ in headers)
                break
        value = "*" if self._star else origin
        headers.append(("access-control-allow-origin", value))
        if self._tail:
            headers.extend(self._tail)
        if value != "*":
            if has_vary:
                add_vary(response, "Origin")
            else:
                headers.append(("vary", "Origin"))

    def _preflight(self, request: Any, origin: str) -> Response:
        method = (request.header("access-control-request-method") or "").upper()
        requested = [h.strip().lower() for h in (request.header("access-control-request-headers") or "").split(",")]
        requested = [h for h in requested if h]
        refused = not self.allows(origin)
        refused = refused or not (self.any_method or method in self.methods)
        refused = refused or not (self.any_header or all(h in self.headers for h in requested))
        if refused:
            error = Forbidden("This cross-origin request is not allowed (origin, method or headers).")
            refusal = ProblemResponse.from_exception(error, request.path)
            if not self.any_origin:
                add_vary(refusal, "Origin")
            return refusal
        response = Response(None, 204)
        value = self._allow_origin_value(origin)
        headers = response.raw_headers
        headers.append(("access-control-allow-origin", value))
        headers.append(("access-control-allow-methods", self.allow_methods_header))
        if requested:
            headers.append(("access-control-allow-headers", ", ".join(requested)))
        if self.credentials:
            headers.append(("access-control-allow-credentials", "true"))
        headers.append(("access-control-max-age", self.max_age))
        add_vary(response, "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers")
        return response
