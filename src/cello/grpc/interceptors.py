"""What the gRPC port's server does around every method, as ``grpc.aio`` interceptors, outermost first:

- ``Measuring`` — ``cello_grpc_calls_total{service, method, code}`` and ``cello_grpc_call_seconds{service,
  method}`` with ``app.enable_prometheus()``, and an access log line per call with ``app.enable_logging()`` (``rpc``,
  ``code``, ``duration_ms``, ``client``, ``request_id`` — the caller's ``x-request-id`` metadata, or a new id);
- ``Guarding`` — the app's authenticators and guards and the service's own (``cello.grpc.auth``), then the
  service's middleware (``cello.grpc.admission``); the health and reflection services answer anyone;
- ``Errors`` — a request message that does not decode is ``INVALID_ARGUMENT`` (grpcio alone says ``INTERNAL``), an
  exception the method did not expect ``INTERNAL`` with no internals (outside debug mode), logged.

Each is a set of ``Hooks`` — before the method, for an exception it raised, after it — and ``wrapped`` runs hooks
around any method: ``async`` or plain (in the server's thread pool), answering once or a stream.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import orjson

from . import auth
from .admission import Admission, Passage, Refused
from .codes import INTERNAL_MESSAGE, UNDECODABLE

if TYPE_CHECKING:
    from ..app import App

__all__ = ["PUBLIC_SERVICES", "Errors", "Guarding", "Hooks", "Measuring", "call_metrics", "recording", "wrapped"]

logger = logging.getLogger("cello.grpc")

# answered without credentials, like /health and the documentation
PUBLIC_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                             "grpc.reflection.v1.ServerReflection"})  # fmt: skip

_KINDS = (("unary_unary", grpc.unary_unary_rpc_method_handler), ("unary_stream", grpc.unary_stream_rpc_method_handler),
          ("stream_unary", grpc.stream_unary_rpc_method_handler),
          ("stream_stream", grpc.stream_stream_rpc_method_handler))  # fmt: skip


class Hooks:
    """What an interceptor does around one call of a method. ``enter`` (``enter_plain`` for a plain method, in the
    server's thread pool) runs first and returns the request the method gets; ``fail`` (``fail_plain``) gets an
    exception the method raised — not an abort, not a cancellation — and raises (a plain stream's may instead set
    the call's code and return, ending the stream); ``leave`` runs last, always, with what ended the call (None: it
    ended well)."""

    async def enter(self, request: Any, context: Any) -> Any:
        return request

    def enter_plain(self, request: Any, context: Any) -> Any:
        return request

    async def fail(self, exc: Exception, context: Any) -> None:
        raise exc

    def fail_plain(self, exc: Exception, context: Any) -> None:
        raise exc

    def leave(self, context: Any, error: BaseException | None) -> None:
        pass


def rewrapped(handler: Any, hooks: Hooks, deserializer: Callable[[Any], Any] | None = None) -> Any:
    """``handler`` with its method run inside ``hooks``, and its request deserializer replaced by
    ``deserializer(it)`` when given."""
    for kind, make in _KINDS:
        behavior = getattr(handler, kind)
        if behavior is not None:
            read = handler.request_deserializer
            return make(wrapped(behavior, kind.endswith("stream"), hooks),
                        deserializer(read) if deserializer and read else read, handler.response_serializer)  # fmt: skip
    return handler


def wrapped(behavior: Callable[..., Any], streams: bool, hooks: Hooks) -> Callable[..., Any]:
    """``behavior`` run inside ``hooks``; ``streams``: whether it answers a stream."""
    if inspect.isasyncgenfunction(behavior):

        async def produce(request: Any, context: Any) -> Any:
            error: BaseException | None = None
            try:
                request = await hooks.enter(request, context)
                try:
                    async for item in behavior(request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await hooks.fail(exc, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                hooks.leave(context, error)

        return produce
    if inspect.iscoroutinefunction(behavior):

        async def answer(request: Any, context: Any) -> Any:
            error: BaseException | None = None
            try:
                request = await hooks.enter(request, context)
                try:
                    return await behavior(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await hooks.fail(exc, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                hooks.leave(context, error)

        return answer
    if streams:

        def produce_plain(request: Any, context: Any) -> Any:
            context, error = recording(context), None
            try:
                request = hooks.enter_plain(request, context)
                try:
                    yield from behavior(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    hooks.fail_plain(exc, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                hooks.leave(context, error)

        return produce_plain

    def answer_plain(request: Any, context: Any) -> Any:
        context, error = recording(context), None
        try:
            request = hooks.enter_plain(request, context)
            try:
                return behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                hooks.fail_plain(exc, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            hooks.leave(context, error)

    return answer_plain


class _Recording:
    """A plain method's context, remembering the code and details set on it: grpcio's context for methods in its
    thread pool has no ``code()``, which the hooks read to know how a call ended."""

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


def _code(context: Any) -> grpc.StatusCode | None:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else None


# -- auth and middleware -------------------------------------------------------------------------------------


class Guarding(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The app's authenticators and guards and the service's own guards before the method, then the service's
    middleware around it; the health and reflection services answer anyone, like ``/health``."""

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
        return rewrapped(handler, _Decided(decided, admission, request, asyncio.get_running_loop()))


class _Decided(Hooks):
    """One call through the auth layer's verdict and the service's middleware: refused, or run as the verdict's
    user, its passage through the middleware ended when it ends."""

    __slots__ = ("decided", "admission", "request", "loop", "passage", "token")

    def __init__(self, decided: auth.Verdict, admission: Admission | None, request: auth.CallRequest,
                 loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        self.decided = decided
        self.admission = admission
        self.request = request
        self.loop = loop
        self.passage: Passage | None = None
        self.token: Any = None

    async def enter(self, request: Any, context: Any) -> Any:
        decided = self.decided
        if decided.code is not None:
            await context.abort(decided.code, decided.message)
        if self.admission is not None:
            self.request.set_peer(context.peer())
            try:
                self.passage = await self.admission.admit(self.request)
            except Refused as refused:
                await context.abort(refused.code, refused.message, tuple(refused.metadata))
        self.token = auth.bind(decided.user)
        return request

    def enter_plain(self, request: Any, context: Any) -> Any:
        decided = self.decided
        if decided.code is not None:
            context.abort(decided.code, decided.message)
        if self.admission is not None:
            self.request.set_peer(context.peer())
            try:  # NOTE: the middleware runs on the event loop, this method in the server's thread pool
                self.passage = asyncio.run_coroutine_threadsafe(self.admission.admit(self.request), self.loop).result()
            except Refused as refused:
                context.abort(refused.code, refused.message, tuple(refused.metadata))
        self.token = auth.bind(decided.user)
        return request

    def leave(self, context: Any, error: BaseException | None) -> None:
        if self.token is not None:
            auth.unbind(self.token)
        if self.passage is not None:
            unset = grpc.StatusCode.OK if error is None else grpc.StatusCode.CANCELLED
            self.passage.finish(_code(context) or unset)


# -- errors ----------------------------------------------------------------------------------------------------


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


class Errors(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """INVALID_ARGUMENT for a request that does not decode, INTERNAL (masked outside debug mode, logged with its
    traceback) for an exception; a code the method set before raising is kept (the generated base class's
    UNIMPLEMENTED)."""

    def __init__(self, *, debug: bool) -> None:
        self.debug = debug

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        hooks = _Failing(handler_call_details.method, bool(handler.request_streaming),
                         bool(handler.response_streaming), self.debug)  # fmt: skip
        return rewrapped(handler, hooks, _lenient)


class _Failing(Hooks):
    __slots__ = ("method", "streamed", "streams", "debug")

    def __init__(self, method: str, streamed: bool, streams: bool, debug: bool) -> None:
        self.method = method
        self.streamed = streamed  # its requests come as a stream
        self.streams = streams  # it answers a stream
        self.debug = debug

    async def enter(self, request: Any, context: Any) -> Any:
        if self.streamed:
            return _checked_stream(request, context)
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)
        return request

    def enter_plain(self, request: Any, context: Any) -> Any:
        if self.streamed:
            return _checked_stream_plain(request, context)
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)
        return request

    def _status(self, exc: Exception, context: Any) -> tuple[grpc.StatusCode, str]:
        code = _code(context)
        if code not in (None, grpc.StatusCode.OK):  # set, then raised (as the generated base methods do)
            return code, context.details() or ""  # type: ignore[return-value]
        logger.error("gRPC method %s failed", self.method, exc_info=exc)
        return grpc.StatusCode.INTERNAL, str(exc) if self.debug else INTERNAL_MESSAGE

    async def fail(self, exc: Exception, context: Any) -> None:
        await context.abort(*self._status(exc, context))

    def fail_plain(self, exc: Exception, context: Any) -> None:
        code, message = self._status(exc, context)
        if self.streams:
            # NOTE: grpcio can lose an abort raised in a plain generator that has yielded (the client then waits
            # for its deadline); a code set before the generator ends always arrives
            context.set_code(code)
            context.set_details(message)
            return
        context.abort(code, message)


# -- metrics and the access log --------------------------------------------------------------------------------

_metrics: dict[str, Any] = {}


def call_metrics() -> tuple[Any, Any]:
    """``cello_grpc_calls_total`` and ``cello_grpc_call_seconds``, made once per process."""
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


class Measuring(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every call, and logs it; outermost, so it sees the status the others settled on."""

    def __init__(self, metrics: bool, access: Any) -> None:
        self.calls: Any = None
        self.seconds: Any = None
        if metrics:
            self.calls, self.seconds = call_metrics()
        self.access = access

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return rewrapped(
            handler, _Measured(self, handler_call_details.method, handler_call_details.invocation_metadata)
        )

    def record(self, call: _Measured, code: str, context: Any) -> None:
        elapsed = time.perf_counter() - call.started
        if self.calls is not None:
            self.calls.labels(call.service, call.method, code).inc()
            self.seconds.labels(call.service, call.method).observe(elapsed)
        access = self.access
        if access is not None and access.logger.isEnabledFor(access.level) and call.path not in access.skip_paths:
            fields = {"rpc": call.path, "code": code, "duration_ms": round(elapsed * 1000, 3),
                      "client": context.peer() if hasattr(context, "peer") else None,
                      "request_id": call.request_id()}  # fmt: skip
            if access.format == "json":
                message = orjson.dumps(fields).decode()
            else:
                message = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
            access.logger.log(access.level, message, extra={"grpc": fields})


class _Measured(Hooks):
    """One call, as the metrics and the access log name it."""

    __slots__ = ("measuring", "path", "service", "method", "metadata", "started")

    def __init__(self, measuring: Measuring, path: str, metadata: Any) -> None:
        self.measuring = measuring
        self.path = path
        self.service, _, self.method = path.lstrip("/").partition("/")
        self.metadata = metadata
        self.started = time.perf_counter()

    def request_id(self) -> str:
        given = next((value for name, value in self.metadata or () if name.lower() == "x-request-id"), None)
        # NOTE: the caller's id when it is a sane one (as RequestId takes a header's), else a new one
        sane = isinstance(given, str) and 0 < len(given) <= 128 and given.isprintable()
        return given if sane else uuid.uuid4().hex  # type: ignore[return-value]

    async def enter(self, request: Any, context: Any) -> Any:
        self.started = time.perf_counter()
        return request

    def enter_plain(self, request: Any, context: Any) -> Any:
        self.started = time.perf_counter()
        return request

    def leave(self, context: Any, error: BaseException | None) -> None:
        if isinstance(error, asyncio.CancelledError):
            code = "CANCELLED"
        else:
            found = _code(context)
            code = found.name if found is not None else ("UNKNOWN" if error is not None else "OK")
        self.measuring.record(self, str(code), context)
