"""Native gRPC beside the HTTP app: ``app.grpc_service(servicer)`` registers a service compiled from a ``.proto``
file (``cello grpc-compile``), and ``app.run(grpc_port=50051)`` (``cello run --grpc-port``) serves every registered
service through ``grpc.aio`` on that port, in every worker, inside the worker's own event loop — started with the
app and stopped with it, in-flight calls given ``drain_timeout`` seconds to finish.

granian sends no HTTP/2 trailers, which native gRPC needs (``grpc-status``), so the gRPC server has a port of its
own; the workers share it (``SO_REUSEPORT``), as they share the HTTP port. Beside the application's services it
serves the standard health service (``grpc.health.v1.Health``, ``SERVING`` while the app's readiness checks pass —
the same checks as ``/health/ready``) and server reflection (``grpcurl list`` works).

With ``app.enable_prometheus()`` every call is counted by service, method and status code, and timed; with
``app.enable_logging()`` it gets an access log line with its request id.

A request message that does not decode is answered with ``INVALID_ARGUMENT``. An exception a method raises is
answered with ``INTERNAL`` and ``Internal server error.`` (the traceback is logged;
debug mode sends the exception's text instead); ``context.abort(...)`` and the ``grpc.StatusCode`` a method sets
are answered as they are.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc
import orjson

from ..http.exceptions import ConfigurationError
from ..security.base import Authenticator
from ..security.guards import Guard
from . import auth
from .admission import Admission, Passage, Refused
from .codes import INTERNAL_MESSAGE, UNDECODABLE

if TYPE_CHECKING:
    from ..app import App

__all__ = ["GrpcServer", "adder_of"]

logger = logging.getLogger("cello.grpc")

PORT_VARIABLE = "CELLO_GRPC_PORT"  # app.run(grpc_port=...) hands the port to the workers through it
UNSET: Any = object()  # a setting configure() leaves as it is
DEFAULT_MESSAGE_SIZE = 4 * 1024 * 1024  # grpcio's
COMPRESSIONS = {None: grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip,
                "deflate": grpc.Compression.Deflate}  # fmt: skip
# answered without credentials, like /health and the documentation
PUBLIC_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                             "grpc.reflection.v1.ServerReflection"})  # fmt: skip


def adder_of(servicer: Any) -> Callable[[Any, Any], None]:
    """The ``add_<Name>Servicer_to_server`` function grpcio-tools generated beside the servicer's base class."""
    import importlib

    for base in type(servicer).__mro__:
        module_name = getattr(base, "__module__", "")
        if module_name.endswith("_pb2_grpc") and base.__name__.endswith("Servicer"):
            adder = getattr(importlib.import_module(module_name), f"add_{base.__name__}_to_server", None)
            if adder is not None:
                return adder  # type: ignore[no-any-return]
    raise ConfigurationError(
        f"{type(servicer).__name__} is not a gRPC servicer: subclass the <Name>Servicer class that "
        "`cello grpc-compile` generated in a *_pb2_grpc module"
    )


class GrpcServer:
    """The app's gRPC services and, in a running worker, the ``grpc.aio`` server that serves them."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.services: list[tuple[Any, Callable[[Any, Any], None]]] = []
        self.names: list[str] = []  # the full names of those services, read once from their descriptors
        self.guards: dict[str, list[Any]] = {}  # service full name -> its own guards
        self.admissions: dict[str, Admission] = {}  # service full name -> its own middleware
        self.server: Any = None
        self.port: int | None = None
        self.drain_timeout = 10.0
        self.max_message_size = DEFAULT_MESSAGE_SIZE
        self.compression: str | None = None
        self.keepalive_time: float | None = None
        self.keepalive_timeout = 20.0
        self.min_ping_interval = 300.0
        self.web_routes: list[Any] = []
        self._layers: list[Any] | None = None
        self._counter: Callable[[str, str, grpc.StatusCode, float], None] | None = None
        self._watching: asyncio.Task[None] | None = None

    def add(self, servicer: Any, guards: Sequence[Any] = (), middleware: Sequence[Any] = (), *,
            web: bool = True) -> list[Any]:  # fmt: skip
        """Add a servicer; returns the routes that answer its methods over Connect and gRPC-Web (``web``)."""
        adder = adder_of(servicer)
        descriptors = _service_descriptors(adder)
        names = [descriptor.full_name for descriptor in descriptors]
        self.services.append((servicer, adder))
        self.names.extend(names)
        if guards:
            from ..security.guards import as_guard

            for name in names:
                self.guards.setdefault(name, []).extend(as_guard(guard) for guard in guards)
        if middleware:
            for name in names:
                self.admissions[name] = Admission(middleware)
        if not web:
            return []
        from .web import web_routes

        routes = web_routes(self, servicer, descriptors)
        self.web_routes.extend(routes)
        return routes

    def configure(self, *, max_message_size: int | None = None, compression: str | None = UNSET,
                  keepalive_time: float | None = UNSET, keepalive_timeout: float | None = None,
                  min_ping_interval: float | None = None, drain_timeout: float | None = None) -> None:  # fmt: skip
        """Change the settings given (``app.configure_grpc``). ``max_message_size``: the largest message taken or
        sent, in bytes, over native gRPC and (as the request body) over Connect and gRPC-Web; ``compression``:
        what native answers are compressed with (``"gzip"``, ``"deflate"``; None: nothing); ``keepalive_time``:
        seconds between the server's pings on a connection (None: grpcio's two hours), each given
        ``keepalive_timeout`` seconds for its answer; ``min_ping_interval``: the least seconds a client may wait
        between its own pings (5 minutes); ``drain_timeout``: seconds the calls under way get at shutdown."""
        if max_message_size is not None:
            if isinstance(max_message_size, bool) or not isinstance(max_message_size, int) or max_message_size < 1:
                raise ConfigurationError(f"max_message_size is a number of bytes >= 1, not {max_message_size!r}")
            self.max_message_size = max_message_size
            for route in self.web_routes:
                route.body_limit = max_message_size + 5  # NOTE: an enveloped message's 5 bytes of framing
        if compression is not UNSET:
            if compression not in COMPRESSIONS:
                raise ConfigurationError(f"compression is 'gzip', 'deflate' or None, not {compression!r}")
            self.compression = compression
        if keepalive_time is not UNSET:
            self.keepalive_time = None if keepalive_time is None else _seconds("keepalive_time", keepalive_time)
        if keepalive_timeout is not None:
            self.keepalive_timeout = _seconds("keepalive_timeout", keepalive_timeout)
        if min_ping_interval is not None:
            self.min_ping_interval = _seconds("min_ping_interval", min_ping_interval)
        if drain_timeout is not None:
            self.drain_timeout = _seconds("drain_timeout", drain_timeout)

    def _options(self) -> list[tuple[str, int]]:
        """grpcio's channel arguments for the settings."""
        options = [("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", self.max_message_size),
                   ("grpc.max_send_message_length", self.max_message_size),
                   ("grpc.http2.min_ping_interval_without_data_ms", int(self.min_ping_interval * 1000)),
                   ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
                   ("grpc.http2.ping_timeout_ms", int(self.keepalive_timeout * 1000))]  # fmt: skip
        if self.keepalive_time is not None:
            # NOTE: pings whatever the connection carries: grpcio stops pinging after two without data by default
            options += [("grpc.keepalive_time_ms", int(self.keepalive_time * 1000)),
                        ("grpc.http2.max_pings_without_data", 0)]  # fmt: skip
        return options

    def auth_layers(self) -> list[Any]:
        """The app's authenticators and guards, in its order; read once, when the first call comes (the app's
        middleware is fixed once it serves)."""
        if self._layers is None:
            self._layers = [layer for layer in self.app.middleware if isinstance(layer, (Authenticator, Guard))]
        return self._layers

    def web_calls_counted(self) -> Callable[[str, str, grpc.StatusCode, float], None]:
        """What counts a Connect or gRPC-Web call in ``cello_grpc_calls_total`` and ``cello_grpc_call_seconds``
        (``count(service, path, code, started)``), when the app exports Prometheus metrics."""

        def count(service: str, path: str, code: grpc.StatusCode, started: float) -> None:
            if self._counter is None:
                self._counter = _web_counter(self.app)
            self._counter(service, path, code, started)

        return count

    async def start(self) -> None:
        """Start serving, when a port was given (``app.run(grpc_port=...)``); the app's startup hook."""
        value = os.environ.get(PORT_VARIABLE)
        if not value or not self.services:
            return
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        server = grpc.aio.server(
            # plain (not async) methods run in this pool; async ones on the worker's event loop
            migration_thread_pool=ThreadPoolExecutor(max_workers=self.app.config.threadpool_size),
            interceptors=[
                *self._measuring(),
                _Guarding(self.app, self.guards, self.auth_layers(), self.admissions),
                _ErrorInterceptor(debug=bool(self.app.debug)),
            ],
            options=self._options(),
            compression=COMPRESSIONS[self.compression],
        )
        for servicer, adder in self.services:
            adder(servicer, server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection([reflection.SERVICE_NAME, health.SERVICE_NAME, *self.names], server)
        self.port = server.add_insecure_port(f"{os.environ.get('CELLO_GRPC_HOST', '127.0.0.1')}:{value}")
        await server.start()
        self.server = server
        self._serving = health_pb2.HealthCheckResponse.SERVING
        self._not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        await self._report()
        self._watching = asyncio.get_running_loop().create_task(self._watch())
        logger.info("gRPC: serving %s on port %s", ", ".join(self.names), self.port)

    def _measuring(self) -> list[Any]:
        """The interceptor that counts and logs calls, outermost (it sees the status the error interceptor settled
        on), when the app exports Prometheus metrics (``app.enable_prometheus()``) or logs its requests
        (``app.enable_logging()``)."""
        from ..middleware.access_log import AccessLog
        from ..middleware.metrics import Prometheus

        metrics = any(isinstance(layer, Prometheus) for layer in self.app.middleware)
        access = next((layer for layer in self.app.middleware if isinstance(layer, AccessLog)), None)
        return [_Measuring(metrics, access)] if metrics or access is not None else []

    async def stop(self) -> None:
        """Stop taking calls and give those under way ``drain_timeout`` seconds; the app's shutdown hook."""
        if self._watching is not None:
            self._watching.cancel()
            self._watching = None
        server, self.server = self.server, None
        if server is not None:
            await server.stop(self.drain_timeout)

    async def _report(self) -> None:
        """The health service's answer: the app's readiness checks (``/health/ready``), or SERVING without any."""
        checks = getattr(self.app, "_health", None)
        ready = True
        if checks is not None:
            _, ready = await checks._checked()
        status = self._serving if ready else self._not_serving
        await self.health.set("", status)
        for name in self.names:
            await self.health.set(name, status)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            try:
                await self._report()
            except Exception:  # a check that fails to run is a failed check: the next report says so
                logger.exception("gRPC health: the readiness checks failed to run")


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{name} is a number of seconds above 0, not {value!r}")
    return float(value)


def _service_descriptors(adder: Callable[..., Any]) -> list[Any]:
    """The descriptors of the services an ``add_..._to_server`` function registers (from its ``_pb2`` module)."""
    import importlib

    pb2 = importlib.import_module(adder.__module__.removesuffix("_grpc"))
    descriptor = getattr(pb2, "DESCRIPTOR", None)
    services = list(descriptor.services_by_name.values()) if descriptor is not None else []
    wanted = adder.__name__.removeprefix("add_").removesuffix("Servicer_to_server")
    chosen = [service for service in services if service.name == wanted] or services
    if not chosen:
        raise ConfigurationError(f"{pb2.__name__} describes no service: compile the .proto with `cello grpc-compile`")
    return chosen


def _web_counter(app: App) -> Callable[[str, str, grpc.StatusCode, float], None]:
    from ..middleware.metrics import Prometheus

    if not any(isinstance(layer, Prometheus) for layer in app.middleware):
        return lambda service, path, code, started: None
    calls, seconds = _calls()

    def count(service: str, path: str, code: grpc.StatusCode, started: float) -> None:
        method = path.rpartition("/")[2]
        calls.labels(service, method, code.name).inc()
        seconds.labels(service, method).observe(time.perf_counter() - started)

    return count


_KINDS = (("unary_unary", grpc.unary_unary_rpc_method_handler), ("unary_stream", grpc.unary_stream_rpc_method_handler),
          ("stream_unary", grpc.stream_unary_rpc_method_handler),
          ("stream_stream", grpc.stream_stream_rpc_method_handler))  # fmt: skip


def _rewrapped(handler: Any, wrap: Callable[[Callable[..., Any], bool], Callable[..., Any]],
               deserializer: Callable[[Any], Any] | None = None) -> Any:  # fmt: skip
    """``handler`` with its method replaced by ``wrap(method, streams)`` (streams: whether it answers a stream),
    and its request deserializer by ``deserializer(it)`` when given."""
    for kind, make in _KINDS:
        behavior = getattr(handler, kind)
        if behavior is not None:
            read = handler.request_deserializer
            return make(wrap(behavior, kind.endswith("stream")), deserializer(read) if deserializer and read else read,
                        handler.response_serializer)  # fmt: skip
    return handler


class _Undecodable:
    """A request message that did not decode: the method is answered INVALID_ARGUMENT instead of running on it."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    # NOTE: grpcio answers a deserializer's exception with INTERNAL; the message is the client's mistake
    def read(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # any decoding failure: protobuf's DecodeError, a custom deserializer's
            return _Undecodable(exc)

    return read


async def _checked_stream(requests: Any, context: Any) -> Any:
    async for item in requests:
        if isinstance(item, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)
        yield item


def _checked_stream_plain(requests: Any, context: Any) -> Any:
    for item in requests:
        if isinstance(item, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)
        yield item


class _Guarding(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The app's authenticators and guards and the service's own guards (``cello.grpc.auth``) before the method,
    then the service's middleware around it (``cello.grpc.admission``); the health and reflection services answer
    anyone, like ``/health``."""

    def __init__(self, app: App, guards: dict[str, list[Any]], layers: list[Any],
                 admissions: dict[str, Admission]) -> None:  # fmt: skip
        self.app = app
        self.guards = guards
        self.layers = layers
        self.admissions = admissions

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").partition("/")[0]
        if handler is None or service in PUBLIC_SERVICES:
            return handler
        guards = self.guards.get(service, [])
        admission = self.admissions.get(service)
        if not self.layers and not guards and admission is None:
            return handler
        request = auth.CallRequest(self.app, handler_call_details.method, handler_call_details.invocation_metadata)
        decided = await auth.verdict(request, self.layers, guards)
        step = _Step(decided, admission, request, asyncio.get_running_loop())
        return _rewrapped(handler, step.around)


class _Step:
    """One call through the auth layer's verdict and the service's middleware: refused, or run as the verdict's
    user with its passage through the middleware ended when it ends."""

    __slots__ = ("decided", "admission", "request", "loop")

    def __init__(self, decided: auth.Verdict, admission: Admission | None, request: auth.CallRequest,
                 loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        self.decided = decided
        self.admission = admission
        self.request = request
        self.loop = loop

    async def begin(self, context: Any) -> Passage | None:
        decided = self.decided
        if decided.code is not None:
            await context.abort(decided.code, decided.message)
        if self.admission is None:
            return None
        self.request.set_peer(context.peer())
        try:
            return await self.admission.admit(self.request)
        except Refused as refused:
            await context.abort(refused.code, refused.message, tuple(refused.metadata))
            raise  # NOTE: not reached: abort raises

    def begin_plain(self, context: Any) -> Passage | None:
        """``begin`` for a plain method, in the server's thread pool: the middleware runs on the event loop."""
        decided = self.decided
        if decided.code is not None:
            context.abort(decided.code, decided.message)
        if self.admission is None:
            return None
        self.request.set_peer(context.peer())
        try:
            return asyncio.run_coroutine_threadsafe(self.admission.admit(self.request), self.loop).result()
        except Refused as refused:
            context.abort(refused.code, refused.message, tuple(refused.metadata))
            raise  # NOTE: not reached: abort raises

    @staticmethod
    def end(passage: Passage | None, context: Any, unset: grpc.StatusCode) -> None:
        if passage is not None:
            code = context.code()
            passage.finish(code if isinstance(code, grpc.StatusCode) else unset)

    def around(self, behavior: Callable[..., Any], streams: bool) -> Callable[..., Any]:
        begin, begin_plain, end, user = self.begin, self.begin_plain, self.end, self.decided.user
        if inspect.isasyncgenfunction(behavior):

            async def produce(request: Any, context: Any) -> Any:
                passage = await begin(context)
                token, unset = auth.bind(user), grpc.StatusCode.CANCELLED
                try:
                    async for item in behavior(request, context):
                        yield item
                    unset = grpc.StatusCode.OK
                finally:
                    auth.unbind(token)
                    end(passage, context, unset)

            return produce
        if inspect.iscoroutinefunction(behavior):

            async def answer(request: Any, context: Any) -> Any:
                passage = await begin(context)
                token, unset = auth.bind(user), grpc.StatusCode.CANCELLED
                try:
                    reply = await behavior(request, context)
                    unset = grpc.StatusCode.OK
                    return reply
                finally:
                    auth.unbind(token)
                    end(passage, context, unset)

            return answer
        if streams:

            def produce_plain(request: Any, context: Any) -> Any:
                context = recording(context)
                passage = begin_plain(context)
                token, unset = auth.bind(user), grpc.StatusCode.CANCELLED
                try:
                    yield from behavior(request, context)
                    unset = grpc.StatusCode.OK
                finally:
                    auth.unbind(token)
                    end(passage, context, unset)

            return produce_plain

        def answer_plain(request: Any, context: Any) -> Any:
            context = recording(context)
            passage = begin_plain(context)
            token, unset = auth.bind(user), grpc.StatusCode.CANCELLED
            try:
                reply = behavior(request, context)
                unset = grpc.StatusCode.OK
                return reply
            finally:
                auth.unbind(token)
                end(passage, context, unset)

        return answer_plain


class _ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Answers an unexpected exception with INTERNAL and no internals (outside debug mode), logged with its
    traceback. Async methods are wrapped in async code, plain ones (run in the server's thread pool) in plain
    code."""

    def __init__(self, *, debug: bool) -> None:
        self.debug = debug

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        streamed = bool(handler.request_streaming)
        return _rewrapped(handler, lambda behavior, streams: self._guarded(behavior, method, streams, streamed),
                          _lenient)  # fmt: skip

    def _message(self, method: str, exc: Exception) -> str:
        logger.error("gRPC method %s failed", method, exc_info=exc)
        return str(exc) if self.debug else INTERNAL_MESSAGE

    def _guarded(self, behavior: Callable[..., Any], method: str, streams: bool, streamed: bool) -> Callable[..., Any]:
        """``behavior`` answering INVALID_ARGUMENT for a request that did not decode and INTERNAL for an exception;
        ``streams``: it answers a stream; ``streamed``: its requests come as one."""

        async def decoded(request: Any, context: Any) -> Any:
            if streamed:
                return _checked_stream(request, context)
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)
            return request

        def decoded_plain(request: Any, context: Any) -> Any:
            if streamed:
                return _checked_stream_plain(request, context)
            if isinstance(request, _Undecodable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)
            return request

        if inspect.isasyncgenfunction(behavior):

            async def produce(request: Any, context: Any) -> Any:
                request = await decoded(request, context)
                try:
                    async for item in behavior(request, context):
                        yield item
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception as exc:  # answered as INTERNAL, logged
                    await context.abort(grpc.StatusCode.INTERNAL, self._message(method, exc))

            return produce
        if inspect.iscoroutinefunction(behavior):

            async def answer(request: Any, context: Any) -> Any:
                request = await decoded(request, context)
                try:
                    return await behavior(request, context)
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception as exc:  # answered as INTERNAL, logged
                    await context.abort(grpc.StatusCode.INTERNAL, self._message(method, exc))

            return answer

        # a plain method, run in the server's thread pool, where context.abort() raises
        def failed(context: Any, exc: Exception) -> None:
            code = context.code()
            if code not in (None, grpc.StatusCode.OK):  # set, then raised (as the generated base methods do)
                context.abort(code, context.details())
            context.abort(grpc.StatusCode.INTERNAL, self._message(method, exc))

        if streams:

            def produce_plain(request: Any, context: Any) -> Any:
                context = recording(context)
                request = decoded_plain(request, context)
                try:
                    yield from behavior(request, context)
                except (grpc.RpcError, grpc.aio.AbortError):
                    raise
                except Exception as exc:
                    failed(context, exc)

            return produce_plain

        def answer_plain(request: Any, context: Any) -> Any:
            context = recording(context)
            request = decoded_plain(request, context)
            try:
                return behavior(request, context)
            except (grpc.RpcError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                failed(context, exc)

        return answer_plain


class _Recording:
    """A plain method's context, remembering the code and details set on it: grpcio's context for methods in its
    thread pool has no ``code()``, which the interceptors read to know how a call ended."""

    __slots__ = ("_context", "_code", "_details")

    def __init__(self, context: Any) -> None:
        self._context = context
        self._code: grpc.StatusCode | None = None
        self._details = ""

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code
        self._context.set_code(code)

    def set_details(self, details: str) -> None:
        self._details = details
        self._context.set_details(details)

    def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self._code, self._details = code, details
        self._context.abort(code, details, trailing_metadata)

    def abort_with_status(self, status: Any) -> None:
        self._code, self._details = status.code, status.details
        self._context.abort_with_status(status)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def recording(context: Any) -> Any:
    """``context``, able to say its code: as it is when it can (``grpc.aio``'s, or one already wrapped)."""
    return context if hasattr(context, "code") else _Recording(context)


# -- metrics -----------------------------------------------------------------------------------------------------

_metrics: dict[str, Any] = {}


def _calls() -> tuple[Any, Any]:
    if not _metrics:
        import prometheus_client

        _metrics["calls"] = prometheus_client.Counter(
            "cello_grpc_calls", "gRPC calls answered, by status code.", ["service", "method", "code"]
        )
        _metrics["seconds"] = prometheus_client.Histogram(
            "cello_grpc_call_seconds", "Time a gRPC call took (a stream: from its start to its end).",
            ["service", "method"],
        )  # fmt: skip
    return _metrics["calls"], _metrics["seconds"]


def _code_of(context: Any, default: str) -> str:
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return default if code is None else str(code)


class _Call:
    """One call, as the metrics and the access log name it."""

    __slots__ = ("path", "service", "method", "request_id")

    def __init__(self, path: str, metadata: Any) -> None:
        self.path = path
        self.service, _, self.method = path.lstrip("/").partition("/")
        given = next((value for name, value in metadata or () if name.lower() == "x-request-id"), None)
        # NOTE: the caller's id when it is a sane one (as RequestId takes a header's), else a new one
        sane = isinstance(given, str) and 0 < len(given) <= 128 and given.isprintable()
        self.request_id = given if sane else uuid.uuid4().hex


class _Measuring(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """``cello_grpc_calls_total{service, method, code}`` and ``cello_grpc_call_seconds{service, method}``, and an
    access log line per call in the format of the app's ``AccessLog`` (``rpc``, ``code``, ``duration_ms``,
    ``client``, ``request_id`` — the caller's ``x-request-id`` metadata, or a new id)."""

    def __init__(self, metrics: bool, access: Any) -> None:
        self.calls: Any = None
        self.seconds: Any = None
        if metrics:
            self.calls, self.seconds = _calls()
        self.access = access

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        call = _Call(handler_call_details.method, handler_call_details.invocation_metadata)
        return _rewrapped(handler, lambda behavior, streams: self._measured(behavior, call, streams))

    def _record(self, call: _Call, code: str, started: float, context: Any) -> None:
        elapsed = time.perf_counter() - started
        if self.calls is not None:
            self.calls.labels(call.service, call.method, code).inc()
            self.seconds.labels(call.service, call.method).observe(elapsed)
        access = self.access
        if access is not None and access.logger.isEnabledFor(access.level) and call.path not in access.skip_paths:
            fields = {"rpc": call.path, "code": code, "duration_ms": round(elapsed * 1000, 3),
                      "client": context.peer() if hasattr(context, "peer") else None,
                      "request_id": call.request_id}  # fmt: skip
            if access.format == "json":
                message = orjson.dumps(fields).decode()
            else:
                message = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
            access.logger.log(access.level, message, extra={"grpc": fields})

    def _measured(self, behavior: Callable[..., Any], call: _Call, streams: bool) -> Callable[..., Any]:
        record = self._record
        if inspect.isasyncgenfunction(behavior):

            async def produce(request: Any, context: Any) -> Any:
                started, code = time.perf_counter(), "OK"
                try:
                    async for item in behavior(request, context):
                        yield item
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except BaseException:
                    code = "UNKNOWN"
                    raise
                finally:
                    record(call, _code_of(context, code) if code != "CANCELLED" else code, started, context)

            return produce
        if inspect.iscoroutinefunction(behavior):

            async def answer(request: Any, context: Any) -> Any:
                started, code = time.perf_counter(), "OK"
                try:
                    return await behavior(request, context)
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except BaseException:
                    code = "UNKNOWN"
                    raise
                finally:
                    record(call, _code_of(context, code) if code != "CANCELLED" else code, started, context)

            return answer
        if streams:

            def produce_plain(request: Any, context: Any) -> Any:
                context = recording(context)
                started, code = time.perf_counter(), "OK"
                try:
                    yield from behavior(request, context)
                except BaseException:
                    code = "UNKNOWN"
                    raise
                finally:
                    record(call, _code_of(context, code), started, context)

            return produce_plain

        def answer_plain(request: Any, context: Any) -> Any:
            context = recording(context)
            started, code = time.perf_counter(), "OK"
            try:
                return behavior(request, context)
            except BaseException:
                code = "UNKNOWN"
                raise
            finally:
                record(call, _code_of(context, code), started, context)

        return answer_plain
