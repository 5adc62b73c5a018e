"""Routes and the router: static paths from one dict, dynamic ones from a segment radix tree.

A path resolves to a ``MethodMap`` (method → Route). The map answers a missing method itself, through
``__missing__``, with the route that produces 405 — so the hot path is two dict lookups for a static route.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from ..http.exceptions import ConfigurationError
from .converters import PATH, Converter, get_converter
from .matcher import Matcher, compile_matcher

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
# the method a WebSocket route is registered under: the upgrade is a GET, but a path may serve both
WEBSOCKET = "WEBSOCKET"
PARAM_PATTERN = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_][A-Za-z0-9_]*))?\}")


class Route:
    """One handler at one path for some methods, plus what was declared with it.

    ``pipeline`` is filled in when the app compiles its routes: the handler wrapped in its hooks and
    middleware, an ``async (request) -> result`` callable.
    """

    __slots__ = (
        "path",
        "methods",
        "handler",
        "name",
        "threadpool",
        "stream",
        "body_limit",
        "middleware",
        "owners",
        "meta",
        "pipeline",
        "param_names",
        "signature",
    )

    def __init__(
        self,
        path: str,
        methods: list[str],
        handler: Callable[..., Any],
        *,
        name: str | None = None,
        threadpool: bool | None = None,
        stream: bool = False,
        body_limit: int | None = None,
        middleware: list[Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not path.startswith("/"):
            raise ConfigurationError(f"route path must start with '/': {path!r}")
        self.path = path
        self.methods = [m.upper() for m in methods]
        for method in self.methods:
            if method not in HTTP_METHODS and method != WEBSOCKET:
                raise ConfigurationError(f"unknown HTTP method {method!r} for {path}")
        self.handler = handler
        self.name = name or getattr(handler, "__name__", path)
        self.threadpool = threadpool
        self.stream = stream
        self.body_limit = body_limit
        self.middleware = list(middleware or ())
        # blueprints the route was registered through, outermost first; their hooks and middleware apply
        self.owners: list[Any] = []
        self.meta = dict(meta or {})
        self.pipeline: Callable[[Any], Any] = _uncompiled
        self.param_names = [m.group(1) for m in PARAM_PATTERN.finditer(path)]
        # the handler's classified signature, set when the app compiles (read by OpenAPI generation)
        self.signature: Any = None

    @property
    def is_websocket(self) -> bool:
        return self.methods == [WEBSOCKET]

    def with_prefix(self, prefix: str, owner: Any) -> Route:
        route = Route(
            join_path(prefix, self.path),
            self.methods,
            self.handler,
            name=self.name,
            threadpool=self.threadpool,
            stream=self.stream,
            body_limit=self.body_limit,
            middleware=self.middleware,
            meta=self.meta,
        )
        route.owners = [owner, *self.owners]
        return route

    def __repr__(self) -> str:
        return f"<Route {','.join(self.methods)} {self.path} -> {self.name}>"


async def _uncompiled(request: Any) -> Any:
    raise RuntimeError("route pipelines are compiled when the app starts")


def join_path(prefix: str, path: str) -> str:
    prefix = prefix.rstrip("/")
    if path == "/" and prefix:
        return prefix
    return prefix + path


class MethodMap(dict[str, Route]):
    """The routes of one path by method; ``map[method]`` falls back to the 405 route."""

    not_allowed: Route

    def __missing__(self, method: str) -> Route:
        return self.not_allowed


class _Node:
    __slots__ = ("children", "params", "catchall", "methods")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        # typed converters are tried before plain {name}, in registration order otherwise
        self.params: list[tuple[str, Converter, bool, _Node]] = []
        self.catchall: tuple[str, MethodMap] | None = None
        self.methods: MethodMap | None = None


class Router:
    """Holds every route of an app, already flattened (blueprint prefixes applied)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.static: dict[str, MethodMap] = {}
        self._root = _Node()
        self._dynamic: dict[str, MethodMap] = {}
        self._matcher: Matcher | None = None

    def add(self, route: Route) -> None:
        if "{" in route.path:
            methods = self._dynamic.get(route.path)
            if methods is None:
                methods = self._dynamic[route.path] = self._insert(route.path)
        else:
            methods = self.static.setdefault(route.path, MethodMap())
        self._matcher = None
        for method in route.methods:
            if method in methods:
                raise ConfigurationError(f"{method} {route.path} is registered twice")
            methods[method] = route
        self.routes.append(route)

    def _insert(self, path: str) -> MethodMap:
        node = self._root
        segments = path.split("/")[1:]
        for position, segment in enumerate(segments):
            match = PARAM_PATTERN.fullmatch(segment)
            if match is None:
                if "{" in segment or "}" in segment:
                    raise ConfigurationError(f"a path parameter must fill a whole segment: {segment!r} in {path}")
                node = node.children.setdefault(segment, _Node())
                continue
            name, kind = match.group(1), match.group(2) or "str"
            if kind == PATH:
                if position != len(segments) - 1:
                    raise ConfigurationError(f"{{{name}:path}} must be the last segment of {path}")
                if node.catchall is not None:
                    if node.catchall[0] != name:
                        raise ConfigurationError(f"conflicting catch-all parameters at {path}")
                    return node.catchall[1]
                methods = MethodMap()
                node.catchall = (name, methods)
                return methods
            convert = get_converter(kind)
            for existing_name, existing_convert, _typed, child in node.params:
                if existing_convert is convert:
                    if existing_name != name:
                        raise ConfigurationError(
                            f"{path}: parameter {{{name}}} clashes with {{{existing_name}}} at the same place"
                        )
                    node = child
                    break
            else:
                child = _Node()
                node.params.append((name, convert, kind != "str", child))
                # typed converters first so {id:int} wins over {slug} for "42"
                node.params.sort(key=lambda entry: not entry[2])
                node = child
        if node.methods is None:
            node.methods = MethodMap()
        return node.methods

    @property
    def match_dynamic(self) -> Matcher:
        """``(path, method) -> (route, params) | None`` over the dynamic routes, compiled on first use."""
        if self._matcher is None:
            self._matcher = compile_matcher(self._root)
        return self._matcher

    def method_maps(self) -> Iterator[MethodMap]:
        yield from self.static.values()
        # "/a/{x}" and "/a/{x:str}" share one map; yield it once
        yield from {id(m): m for m in self._dynamic.values()}.values()

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)
