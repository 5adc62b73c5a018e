"""Compiles an app's routes into pipelines once, then resolves and runs requests through them.

Engine adapters call ``resolve(method, path)`` and ``await route.pipeline(request)``, and hand any exception to
``handle_exception``. 404, 405, automatic HEAD/OPTIONS and trailing-slash redirects are routes too, wrapped in
the app's middleware like any other, so middleware (CORS, logging, rate limits, metrics) sees every request.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .background import BackgroundRunner
from .handlers import Endpoint, ThreadPool, compile_handler
from .http.exceptions import (
    BadRequest,
    BodyTimeout,
    ClientDisconnected,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestValidationError,
    ServiceUnavailable,
)
from .http.request import EMPTY_PARAMS, Request
from .http.response import ProblemResponse, RedirectResponse, Response, to_response
from .routing.router import WEBSOCKET, MethodMap, Route, Router

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger("cello.error")

ExceptionHandler = Callable[[Request, BaseException], Any]


class Dispatcher:
    def __init__(self, app: App) -> None:
        self.app = app
        self.pool = ThreadPool(app.config.threadpool_size)
        # NOTE: a pool of its own for plain-def WebSocket handlers: each holds its thread for a whole connection,
        # and a few long chats must not starve every sync HTTP handler of the worker
        self.websocket_pool = ThreadPool(app.config.websocket_threads, "cello-ws")
        self.background = BackgroundRunner(self.pool, app.config.background_limit, app)
        self.router = Router()
        for route in app.collect_routes():
            self.router.add(route)
        self.static = self.router.static
        self._match_dynamic = self.router.match_dynamic
        # the open WebSocket connections of this worker, closed with 1001 ("going away") at shutdown
        self.websockets: set[Any] = set()
        for route in self.router.routes:
            route.pipeline = self._pipeline(route, self._endpoint(route))
        for methods in self.router.method_maps():
            self._complete(methods)
        self.not_found = self._internal_route(
            "not_found", _not_found if self._may_be_handled(NotFound, 404) else _answer_not_found
        )
        self.bad_path = self._internal_route("bad_path", _bad_path)
        self.redirect = self._internal_route("redirect_slash", _redirect_slash)
        self.too_large = self._internal_route("body_too_large", _too_large)
        self.bad_length = self._internal_route("bad_content_length", _bad_length)
        self.body_ended = self._internal_route("body_ended", _body_ended)
        self.body_timeout = self._internal_route("body_timeout", _body_timeout)
        self.redirect_slashes = app.config.redirect_slashes

    def _endpoint(self, route: Route) -> Endpoint:
        config = self.app.config
        if not config.strict_content_type:  # the app's default; a route's own option wins
            route.meta.setdefault("strict_content_type", False)
        if not route.is_websocket:
            return compile_handler(route, self.pool, config.threadpool, self.app.singletons)
        from .realtime.websocket import websocket_endpoint  # NOTE: only apps with WebSocket routes import it

        # a plain def handler runs in the WebSocket pool, arranged by websocket_endpoint; compile it as inline
        return websocket_endpoint(  # type: ignore[no-any-return]
            route, lambda r: compile_handler(r, self.pool, False, self.app.singletons), self.websocket_pool
        )

    async def close_websockets(self, code: int = 1001) -> None:
        """Close every open WebSocket of this worker (at shutdown: 1001, going away)."""
        for socket in list(self.websockets):
            try:
                await socket.close(code, "server shutting down")
            except Exception:  # one broken connection must not keep the others open
                logger.debug("closing a WebSocket at shutdown failed", exc_info=True)

    async def drain(self) -> None:
        """The server is about to stop: say goodbye to long-lived connections — WebSockets get 1001 and event
        streams end — so that it need not wait for clients that would otherwise stay forever."""
        sse = sys.modules.get("cello.realtime.sse")  # NOTE: loaded only if the app streams events at all
        if sse is not None:
            sse.end_streams()
        await self.close_websockets()

    # -- resolution (hot path) --------------------------------------------------------------------------

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, Any]]:
        methods = self.static.get(path)
        if methods is not None:
            return methods[method], EMPTY_PARAMS
        if "\ufffd" in path:
            # NOTE: engines decode percent-escapes that are not UTF-8 into U+FFFD; refusing is safer than handing a
            # handler a lossy parameter. Static paths never contain it, so only this branch pays for the check.
            return self.bad_path, EMPTY_PARAMS
        found = self._match_dynamic(path, method)
        if found is not None:
            return found
        return self._unmatched(path), EMPTY_PARAMS

    def _unmatched(self, path: str) -> Route:
        # NOTE: never redirect "//host/" to "//host": a Location starting with // leaves the site
        if self.redirect_slashes and path != "/" and not path.startswith("//"):
            alternative = path[:-1] if path.endswith("/") else path + "/"
            if alternative in self.static or self._match_dynamic(alternative, "GET") is not None:
                return self.redirect
        return self.not_found

    # -- errors -----------------------------------------------------------------------------------------

    async def handle_exception(self, request: Request, exc: BaseException) -> Response:
        if request._background is not None:
            request._background.discard_tasks()  # a failed request schedules nothing
        handler = self._find_handler(request, exc)
        if handler is not None:
            try:
                result = handler(request, exc)
                if inspect.isawaitable(result):
                    result = await result
                return to_response(result)
            except Exception as handler_exc:  # a broken handler must not take the worker down
                logger.exception("exception handler %r failed", handler, exc_info=handler_exc)
                return self._internal_error(request, handler_exc)
        if isinstance(exc, RequestValidationError):
            fmt = self.app.config.validation_errors
            body = fmt.body(exc.errors, request.path)
            return ProblemResponse(body, fmt.status, exc.headers, media_type=fmt.media_type)
        if isinstance(exc, HTTPException):
            if isinstance(exc, ServiceUnavailable):  # the client is told nothing of the cause: the log is
                logger.warning("%s %s: %s", request.method, request.path, exc.cause)
            return ProblemResponse.from_exception(exc, request.path)
        return self._internal_error(request, exc)

    def _find_handler(self, request: Request, exc: BaseException) -> ExceptionHandler | None:
        owners = request.route.owners if request.route is not None else []
        # the innermost mounted app's handlers win over the outer app's
        for registry in [
            *(o.exception_handlers for o in reversed(owners) if hasattr(o, "exception_handlers")),
            self.app.exception_handlers,
        ]:
            if not registry:
                continue
            for cls in type(exc).__mro__:
                if cls in registry:
                    return registry[cls]  # type: ignore[no-any-return]
            if isinstance(exc, HTTPException) and exc.status in registry:
                return registry[exc.status]  # type: ignore[no-any-return]
        if not isinstance(exc, HTTPException) and 500 in self.app.exception_handlers:
            return self.app.exception_handlers[500]  # type: ignore[no-any-return]
        return None

    def _internal_error(self, request: Request, exc: BaseException) -> Response:
        logger.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
        problem: dict[str, Any] = {
            "type": "about:blank",
            "title": "Internal Server Error",
            "status": 500,
            "instance": request.path,
        }
        if self.app.config.debug:
            problem["detail"] = f"{type(exc).__name__}: {exc}"
            problem["traceback"] = traceback.format_exception(exc)
        return ProblemResponse(problem, 500)

    # -- compilation ------------------------------------------------------------------------------------

    def _pipeline(self, route: Route, endpoint: Endpoint) -> Endpoint:
        app = self.app
        owners = route.owners
        middleware = [*app.middleware, *(m for o in owners for m in o.middleware), *route.middleware]
        if route.meta.get("framework"):
            # the framework's own endpoints (metrics, health, OpenAPI, static files) must keep answering when the
            # app's routes fail or are limited: no rate limit, cache, breaker, timeout, session, CSRF or app guard
            middleware = [layer for layer in middleware if getattr(layer, "framework_routes", True)]
        before = [*app.before_request_hooks, *(h for o in owners for h in o.before_request_hooks)]
        after = [*(h for o in reversed(owners) for h in o.after_request_hooks), *app.after_request_hooks]
        if not (middleware or before or after):
            return endpoint  # nothing to wrap: the handler itself is the pipeline
        for layer in middleware:
            # a middleware reading route options works them out now: a mistake fails startup, not a request
            prepare = getattr(layer, "prepare_route", None)
            if prepare is not None:
                prepare(route)
        if middleware and not (before or after) and all(getattr(m, "uses_hooks", False) for m in middleware):
            # the common stack: only enter/leave middleware, no hooks. One coroutine for all of it, the handler
            # and the conversion of its result.
            return _hook_layer(middleware, endpoint, self.handle_exception)
        inner = self._with_hooks(endpoint, before, after)
        # consecutive middleware offering enter/leave hooks share one coroutine (see cello.middleware.base)
        groups: list[list[Any]] = []
        for layer in middleware:
            hooked = getattr(layer, "uses_hooks", False)
            if hooked and groups and getattr(groups[-1][0], "uses_hooks", False):
                groups[-1].append(layer)
            else:
                groups.append([layer])
        for group in reversed(groups):
            hooked = getattr(group[0], "uses_hooks", False)
            inner = _hook_layer(group, inner) if hooked else _wrap(group[0], inner)
        return inner

    def _with_hooks(self, endpoint: Endpoint, before: list[Any], after: list[Any]) -> Endpoint:
        """Run hooks around the handler and turn its result or exception into a Response.

        Converting exceptions here, inside the middleware, is what lets middleware see (and decorate) error
        responses such as 404s and 422s.
        """
        before_calls = [_as_async(h) for h in before]
        after_calls = [_as_async(h) for h in after]
        handle_exception = self.handle_exception

        if not (before_calls or after_calls):

            async def convert(request: Request) -> Response:
                try:
                    result = await endpoint(request)
                    return result if isinstance(result, Response) else to_response(result)
                except Exception as exc:
                    return await handle_exception(request, exc)

            return convert

        async def run(request: Request) -> Response:
            try:
                result = None
                for hook in before_calls:
                    result = await hook(request)
                    if result is not None:
                        break
                else:
                    result = await endpoint(request)
                response = to_response(result)
            except Exception as exc:
                response = await handle_exception(request, exc)
            for hook in after_calls:
                replaced = await hook(request, response)
                if replaced is not None:
                    response = to_response(replaced)
            return response

        return run

    def _complete(self, methods: MethodMap) -> None:
        """Add automatic HEAD and OPTIONS, and the 405 route, to one path's method map."""
        sample = next(iter(methods.values()))
        if set(methods) == {WEBSOCKET}:
            # a WebSocket-only path: plain HTTP requests are told to upgrade
            methods.not_allowed = self._internal_route("upgrade_required", _upgrade_required, like=sample)
            return
        if "GET" in methods and "HEAD" not in methods:
            methods["HEAD"] = methods["GET"]
        allowed = sorted({*methods, "OPTIONS"} - {WEBSOCKET})
        if "OPTIONS" not in methods:
            allow_header = ", ".join(allowed)

            async def options(request: Request) -> Response:
                return Response(None, 204, [("allow", allow_header)])

            methods["OPTIONS"] = self._internal_route("options", options, like=sample)

        if self._may_be_handled(MethodNotAllowed, 405):

            async def not_allowed(request: Request) -> Response:
                raise MethodNotAllowed(allowed)
        else:
            error = MethodNotAllowed(allowed)

            async def not_allowed(request: Request) -> Response:
                return ProblemResponse.from_exception(error, request.path)

        methods.not_allowed = self._internal_route("method_not_allowed", not_allowed, like=sample)

    def _may_be_handled(self, error: type[HTTPException], status: int) -> bool:
        """Whether an exception handler of this app or a mounted one could take ``error``.

        When none could, the framework's 404 and 405 are answered directly instead of raised and caught, which
        makes them several times cheaper (unmatched paths are what scanners flood a server with).
        """
        apps = [self.app]
        for app in apps:
            apps.extend(app._mounted_apps)
        keys = {key for app in apps for key in app.exception_handlers}
        return status in keys or any(cls in keys for cls in error.__mro__)

    def _internal_route(
        self, name: str, endpoint: Callable[[Request], Awaitable[Any]], like: Route | None = None
    ) -> Route:
        """A framework-made route; it gets the app's middleware (and, with ``like``, that path's blueprints')."""
        route = Route(like.path if like else "/", [], endpoint, name=name)
        route.meta["internal"] = True
        if like is not None:
            route.owners = like.owners
        route.pipeline = self._pipeline(route, endpoint)
        return route

    def shutdown(self) -> None:
        self.pool.shutdown()
        self.websocket_pool.shutdown()


def _wrap(middleware: Any, call_next: Endpoint) -> Endpoint:
    # NOTE: a partial, not a closure: calling it returns the middleware's own coroutine, one frame per layer
    # instead of two
    return functools.partial(middleware, call_next=call_next)


def _hook_layer(
    middleware: list[Any], call_next: Endpoint, handle_exception: Callable[..., Awaitable[Response]] | None = None
) -> Endpoint:
    """One coroutine running several enter/leave middleware around ``call_next`` (cello.middleware.base): the
    same order and semantics as nesting them, without a coroutine per layer. With ``handle_exception``,
    ``call_next`` is the bare handler, whose result or exception becomes a response here.

    NOTE: the chain is written out as straight-line code, compiled once per route — for three middleware::

        s0 = e0(request)
        if isinstance(s0, Response): return s0
        s1 = e1(request)
        if isinstance(s1, Response): return l0(request, s1, s0)
        ...
        return l0(request, l1(request, l2(request, response, s2), s1), s0)

    A loop over lists of hooks does the same with about twice the interpreter work per middleware, and this
    runs on every request of every route with middleware.
    """
    count = len(middleware)
    namespace: dict[str, Any] = {"Response": Response, "to_response": to_response, "call_next": call_next,
                                 "handle_exception": handle_exception}  # fmt: skip
    lines = ["async def layer(request):"]
    for index, layer in enumerate(middleware):
        namespace[f"e{index}"] = layer.enter
        namespace[f"l{index}"] = layer.leave
        lines.append(f"    s{index} = e{index}(request)")
        lines.append(f"    if isinstance(s{index}, Response):  # an answer: the rest of the chain is skipped")
        lines.append(f"        return {_leaves(index - 1, f's{index}')}")
    if handle_exception is None:
        lines.append("    response = await call_next(request)")
    else:
        lines += [
            "    try:",
            "        result = await call_next(request)",
            "        response = result if isinstance(result, Response) else to_response(result)",
            "    except Exception as exc:",
            "        response = await handle_exception(request, exc)",
        ]
    lines.append(f"    return {_leaves(count - 1, 'response')}")
    exec(compile("\n".join(lines), "<cello middleware chain>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["layer"]  # type: ignore[no-any-return]


def _leaves(last: int, inner: str) -> str:
    """``l0(request, l1(request, <inner>, s1), s0)``: the leave hooks of middleware 0..last, innermost first."""
    for index in range(last, -1, -1):
        inner = f"l{index}(request, {inner}, s{index})"
    return inner


def _as_async(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    if inspect.iscoroutinefunction(func):
        return func

    async def call(*args: Any) -> Any:
        return func(*args)

    return call


async def _not_found(request: Request) -> Response:
    raise NotFound()


async def _answer_not_found(request: Request) -> Response:
    return ProblemResponse({"type": "about:blank", "title": "Not Found", "status": 404, "instance": request.path}, 404)


async def _bad_path(request: Request) -> Response:
    raise BadRequest("The request path is not valid UTF-8.")


async def _too_large(request: Request) -> Response:
    raise PayloadTooLarge("The request body is larger than this endpoint accepts.")


async def _bad_length(request: Request) -> Response:
    raise BadRequest("The Content-Length header is not a number.")


async def _body_ended(request: Request) -> Response:
    raise ClientDisconnected()


async def _body_timeout(request: Request) -> Response:
    raise BodyTimeout()


async def _upgrade_required(request: Request) -> Response:
    error = HTTPException(
        426, "This path speaks WebSocket only.", headers={"upgrade": "websocket", "connection": "Upgrade"}
    )
    return ProblemResponse.from_exception(error, request.path)


async def _redirect_slash(request: Request) -> Response:
    path = request.path
    target = path[:-1] if path.endswith("/") else path + "/"
    query = request.query_string
    # NOTE: the path arrives percent-decoded: encoded again, a "%3F" or "%23" in it stays data instead of starting
    # a query or a fragment in Location (RFC 3986's path characters stay as they are)
    location = quote(target, safe="/:@!$&'()*+,;=")
    # 308 keeps the method and body, unlike 301/302
    return RedirectResponse(location + ("?" + query if query else ""), status=308)
