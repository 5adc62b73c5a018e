"""Response caching: whole responses kept in a store for a TTL, with ETags and invalidation by key or tag.

``app.enable_caching(ttl=60)`` caches every cacheable GET of the app; ``@cache(ttl=30, tags=["books"])`` under a
route decorator caches that route alone. A response is cached when it is a 200 to a GET or HEAD, held in memory
(not a file or a stream), without ``Set-Cookie``, and not marked ``Cache-Control: no-store`` or ``private``.
Requests carrying ``Authorization`` or cookies bypass the cache unless ``cache_authenticated=True`` (one user's
page must not be served to another). The key is method, path, the query (sorted) and the values of the ``vary``
request headers.

Every cached response gets an ``ETag``; a request whose ``If-None-Match`` matches gets 304. Responses carry
``Cache-Control: max-age=<ttl>`` unless they set their own, and ``X-Cache: hit`` or ``miss``.
Invalidation: ``await app.cache.invalidate("/books/3")`` (every variant of that path),
``await app.cache.invalidate_tag("books")``, or ``app.invalidate_cache(tags=["books"])`` from any handler.
The memory store is the default; a ``RedisStore`` shares the cache between workers and machines. A store that is
down is bypassed (logged), never an error.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import orjson

from ..http.response import BYTES, Response
from ..stores.base import Store, StoreUnavailable
from ..stores.memory import MemoryStore
from ._types import CallNext

logger = logging.getLogger("cello.cache")

F = TypeVar("F", bound=Callable[..., Any])


class ResponseCache:
    """The cache of one app (``app.cache``): its store, defaults, and invalidation."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        ttl: float = 60.0,
        vary: Iterable[str] = ("accept", "accept-encoding"),
        cache_authenticated: bool = False,
        max_body: int = 1024 * 1024,
        prefix: str = "cache:",
    ) -> None:
        self.store = store or MemoryStore(max_keys=10_000)
        self.ttl = ttl
        self.vary = tuple(h.lower() for h in vary)
        self.cache_authenticated = cache_authenticated
        self.max_body = max_body
        self.prefix = prefix

    def key(self, method: str, path: str, query: str = "", headers: Any = None) -> str:
        parts = [method, path, "&".join(sorted(query.split("&"))) if query else ""]
        if headers is not None:
            parts.extend(headers.get(name) or "" for name in self.vary)
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
        return self.prefix + digest

    async def invalidate(self, path: str) -> int:
        """Forget every cached answer for ``path``: all methods, queries and header variants."""
        return await self._forget(self.prefix + "path:" + path)

    async def invalidate_tag(self, tag: str) -> int:
        """Forget every answer cached under ``tag``; returns how many were removed."""
        return await self._forget(self.prefix + "tag:" + tag)

    async def invalidate_many(self, tags: Iterable[str] = (), paths: Iterable[str] = ()) -> int:
        """Forget every answer cached under any of ``tags`` or for any of ``paths``; how many were removed."""
        removed = 0
        for tag in tags:
            removed += await self.invalidate_tag(tag)
        for path in paths:
            removed += await self.invalidate(path)
        return removed

    async def _forget(self, group: str) -> int:
        try:
            keys = await self.store.tagged(group)
            removed = await self.store.delete(*keys) if keys else 0
            await self.store.delete("tag:" + group)
            return removed
        except StoreUnavailable as exc:
            logger.warning("cache store unavailable; could not invalidate %s: %s", group, exc)
            return 0


class Cache:
    """The caching middleware; ``ttl``/``tags`` override the app cache's defaults for the routes it wraps."""

    # the framework's own endpoints (metrics, health, OpenAPI, static files) are left alone (cello.dispatch)
    framework_routes = False

    def __init__(
        self,
        ttl: float | None = None,
        tags: Iterable[str] = (),
        cache: ResponseCache | None = None,
        defer_to_routes: bool = False,
        methods: Iterable[str] = ("GET", "HEAD"),
        exclude_paths: Iterable[str] = (),
    ) -> None:
        self.ttl = ttl
        self.tags = tuple(tags)
        self._cache = cache
        self.methods = frozenset(method.upper() for method in methods)
        # exact paths, or prefixes written "prefix*"
        self.excluded = frozenset(path for path in exclude_paths if not path.endswith("*"))
        self.excluded_prefixes = tuple(path[:-1] for path in exclude_paths if path.endswith("*"))
        # the app-wide instance steps aside for routes that carry their own @cache (their ttl and tags win)
        self.defer_to_routes = defer_to_routes

    def _cache_of(self, request: Any) -> ResponseCache:
        if self._cache is not None:
            return self._cache
        cache: ResponseCache = request.app.cache  # the app's (created on first use when not configured)
        return cache

    async def __call__(self, request: Any, call_next: CallNext) -> Response:
        if request.method not in self.methods or request.path in self.excluded:
            return await call_next(request)
        if self.excluded_prefixes and request.path.startswith(self.excluded_prefixes):
            return await call_next(request)
        route = request.route
        if self.defer_to_routes and route is not None and any(type(m) is Cache for m in route.middleware):
            return await call_next(request)
        cache = self._cache_of(request)
        if not cache.cache_authenticated and (request.header("authorization") or request.header("cookie")):
            return await call_next(request)
        headers = request.headers
        key = cache.key(request.method, request.path, request.query_string, headers)
        try:
            stored = await cache.store.get(key)
        except StoreUnavailable as exc:
            logger.warning("cache store unavailable, serving %s uncached: %s", request.path, exc)
            return await call_next(request)
        if stored is not None:
            return _from_cache(stored, request)
        response: Response = await call_next(request)
        ttl = self.ttl if self.ttl is not None else cache.ttl
        if _cacheable(response, cache.max_body):
            etag = '"' + hashlib.sha256(response.body).hexdigest()[:27] + '"'
            headers_out = response.raw_headers
            if not any(k == "etag" for k, _ in headers_out):
                headers_out.append(("etag", etag))
            if not any(k == "cache-control" for k, _ in headers_out):
                headers_out.append(("cache-control", f"max-age={int(ttl)}"))
            record = orjson.dumps([response.status, headers_out, response.body.decode("latin-1"), time.time()])
            try:
                await cache.store.set(key, record, ttl=ttl)
                # every entry is found again by its path, and by each of the route's tags
                await cache.store.tag(cache.prefix + "path:" + request.path, key, ttl=ttl)
                for tag in self.tags:
                    await cache.store.tag(cache.prefix + "tag:" + tag, key, ttl=ttl)
            except StoreUnavailable as exc:
                logger.warning("cache store unavailable; %s not cached: %s", request.path, exc)
            if _matches(request.header("if-none-match"), dict(headers_out).get("etag", etag)):
                return _not_modified(headers_out)
        response.raw_headers.append(("x-cache", "miss"))
        return response


def _cacheable(response: Response, max_body: int) -> bool:
    if response.status != 200 or response.kind != BYTES or len(response.body) > max_body:
        return False
    for key, value in response.raw_headers:
        if key == "set-cookie":
            return False
        if key == "cache-control" and ("no-store" in value or "private" in value):
            return False
    return True


def _from_cache(stored: bytes, request: Any) -> Response:
    status, headers, body, stored_at = orjson.loads(stored)
    headers = [tuple(pair) for pair in headers]
    etag = next((v for k, v in headers if k == "etag"), None)
    if etag is not None and _matches(request.header("if-none-match"), etag):
        return _not_modified(headers)
    response = Response(body.encode("latin-1"), status)
    response.raw_headers = [*headers, ("age", str(max(0, int(time.time() - stored_at)))), ("x-cache", "hit")]
    return response


def _not_modified(headers: list[tuple[str, str]]) -> Response:
    kept = [(k, v) for k, v in headers if k in ("etag", "cache-control", "vary", "last-modified")]
    return Response(None, 304, kept)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))


def cache(ttl: float | None = None, tags: Iterable[str] = ()) -> Callable[[F], F]:
    """Cache one route's answers: put ``@cache(ttl=30, tags=["books"])`` under its route decorator."""

    def decorator(handler: F) -> F:
        attached = list(getattr(handler, "__cello_middleware__", ()))
        attached.append(Cache(ttl, tags))
        handler.__cello_middleware__ = attached  # type: ignore[attr-defined]
        return handler

    return decorator
