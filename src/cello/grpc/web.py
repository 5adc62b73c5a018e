"""Connect and gRPC-Web on the app's own port: each unary and server-streaming method of a service added with
``app.grpc_service(servicer)`` is also answered at ``POST /<package.Service>/<Method>`` — the path both protocols
use — by the same servicer object, under every engine (neither protocol needs HTTP trailers).

The request's Content-Type chooses the protocol and the message encoding:

- ``application/proto`` / ``application/json``: a Connect unary call; an error is an HTTP status and a JSON body
  ``{"code": "unauthenticated", "message": ..., "details": [...]}``.
- ``application/connect+proto`` / ``application/connect+json``: a Connect streaming call; the messages come
  enveloped (a flags byte, a 4-byte length), closed by an end-of-stream envelope carrying the error, if any.
- ``application/grpc-web`` (``+proto``) / ``application/grpc-web+json``: gRPC-Web; enveloped messages, then a
  trailer frame with ``grpc-status`` and ``grpc-message``.

JSON is protobuf's canonical JSON mapping (``google.protobuf.json_format``). Request bodies may be gzip-compressed
(``Content-Encoding`` / ``Connect-Content-Encoding`` / ``grpc-encoding``); answers are sent uncompressed. Deadlines
come from ``connect-timeout-ms`` or ``grpc-timeout``. Client-streaming and bidirectional methods need a transport
that streams both ways at once, so they stay on the native gRPC port; here they are answered ``unimplemented``.

The servicer's method gets a context with the ``grpc.ServicerContext`` calls a method makes —
``abort``, ``abort_with_status`` (rich error details from grpcio-status travel as Connect error details and as
gRPC-Web's ``grpc-status-details-bin``), ``set_code``, ``set_details``, ``invocation_metadata`` (the request's
headers), ``peer``, ``time_remaining``, ``set_trailing_metadata``, ``send_initial_metadata`` — awaitable where
``grpc.aio``'s are, for ``async def`` methods.

The framing is five bytes; the connectrpc package serves its own generated service classes (not grpcio's servicers)
and its envelope codec is private API, so the wire formats are written here.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import inspect
import logging
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import grpc
import orjson
from google.protobuf import json_format, message_factory

from ..http.request import Request
from ..http.response import Response, StreamingResponse
from ..routing.router import Route
from . import auth
from .admission import Passage, Refused
from .codes import HTTP_STATUS, INTERNAL_MESSAGE, UNDECODABLE, connect_code

if TYPE_CHECKING:
    from .server import GrpcServer

__all__ = ["web_routes"]

logger = logging.getLogger("cello.grpc")


DETAILS_KEY = "grpc-status-details-bin"

# protocols, by the Content-Type's media type: (protocol, codec)
CONNECT, CONNECT_STREAM, GRPC_WEB = "connect", "connect-stream", "grpc-web"
PROTOCOLS = {
    "application/proto": (CONNECT, "proto"), "application/json": (CONNECT, "json"),
    "application/connect+proto": (CONNECT_STREAM, "proto"), "application/connect+json": (CONNECT_STREAM, "json"),
    "application/grpc-web": (GRPC_WEB, "proto"), "application/grpc-web+proto": (GRPC_WEB, "proto"),
    "application/grpc-web+json": (GRPC_WEB, "json"),
}  # fmt: skip
GRPC_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class CallError(Exception):
    """How a call ended, when not with OK: its code, message and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, message: str = "", metadata: Sequence[tuple[str, Any]] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = list(metadata)


class _Method:
    """One method of a service, as the routes call it."""

    __slots__ = ("path", "input", "output", "behavior", "streams", "is_async")

    def __init__(self, service: str, descriptor: Any, servicer: Any) -> None:
        self.path = f"/{service}/{descriptor.name}"
        self.input = message_factory.GetMessageClass(descriptor.input_type)
        self.output = message_factory.GetMessageClass(descriptor.output_type)
        self.behavior = getattr(servicer, descriptor.name)
        self.streams = bool(descriptor.server_streaming)
        self.is_async = inspect.iscoroutinefunction(self.behavior) or inspect.isasyncgenfunction(self.behavior)


# -- the context a method gets --------------------------------------------------------------------------------


class WebContext:
    """The ``grpc.ServicerContext`` of a call over Connect or gRPC-Web, for a plain method."""

    def __init__(self, request: Request, deadline: float | None) -> None:
        self._request = request
        self._deadline = deadline  # time.monotonic() by which the call must end
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: list[tuple[str, Any]] = []
        self.initial: list[tuple[str, Any]] = []
        self._done = False

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._request.headers.items())

    def peer(self) -> str:
        client = self._request.client
        if client is None:
            return "unknown"
        return f"ipv6:[{client.host}]:{client.port}" if ":" in client.host else f"ipv4:{client.host}:{client.port}"

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self._trailing = list(metadata)

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return tuple(self._trailing)

    def send_initial_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self.initial = list(metadata)

    def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[Any] = ()) -> None:
        raise CallError(code, details, [*self._trailing, *trailing_metadata])

    def abort_with_status(self, status: Any) -> None:
        raise CallError(status.code, status.details, [*self._trailing, *status.trailing_metadata])

    def is_active(self) -> bool:
        return not self._done

    def cancelled(self) -> bool:
        return self._done and self._code is grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        return self._done

    def auth_context(self) -> dict[str, Any]:
        return {}

    def set_compression(self, compression: Any) -> None:
        """Answers are sent uncompressed: nothing to set."""

    def disable_next_message_compression(self) -> None:
        """Answers are sent uncompressed: nothing to disable."""


class AsyncWebContext(WebContext):
    """The context of an ``async def`` method: ``abort`` and ``send_initial_metadata`` are awaited, as in
    ``grpc.aio``."""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[Any] = ()) -> None:  # type: ignore[override]
        super().abort(code, details, trailing_metadata)

    async def abort_with_status(self, status: Any) -> None:  # type: ignore[override]
        super().abort_with_status(status)

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:  # type: ignore[override]
        super().send_initial_metadata(metadata)


# -- the routes --------------------------------------------------------------------------------------------------


def web_routes(server: GrpcServer, servicer: Any, service_descriptors: Sequence[Any]) -> list[Route]:
    """A route per method of the services: unary and server-streaming methods answered, the others refused."""
    routes = []
    for service in service_descriptors:
        for descriptor in service.methods:
            method = _Method(service.full_name, descriptor, servicer)
            if descriptor.client_streaming:
                endpoint = _refusing(method)
            else:
                endpoint = _endpoint(server, service.full_name, method)
            # NOTE: public: the call's credentials are checked inside, to answer in the call's own protocol
            meta = {"include_in_schema": False, "public": True, "strict_content_type": False, "grpc": True}
            routes.append(Route(method.path, ["POST"], endpoint, name=f"grpc:{method.path}",
                                body_limit=server.max_message_size + 5, meta=meta))  # fmt: skip
    return routes


def _refusing(method: _Method) -> Callable[[Request], Any]:
    async def refuse(request: Request) -> Response:
        protocol, codec = _protocol_of(request) or (CONNECT, "json")
        error = CallError(grpc.StatusCode.UNIMPLEMENTED, "A client-streaming method is served over native gRPC only.")
        return _failed(protocol, codec, error)

    return refuse


def _endpoint(server: GrpcServer, service: str, method: _Method) -> Callable[[Request], Any]:
    context_type = AsyncWebContext if method.is_async else WebContext
    counted = server.web_calls_counted()
    admission = server.admissions.get(service)

    async def answer(request: Request) -> Response:
        started = time.perf_counter()
        found = _protocol_of(request)
        if found is None:
            # NOTE: what Connect's spec asks for an unknown Content-Type: 415, and the types it takes
            return Response(status=415, headers={"accept-post": ", ".join(PROTOCOLS)})
        protocol, codec = found
        passage: Passage | None = None

        def ended(code: grpc.StatusCode) -> None:
            counted(service, method.path, code, started)
            if passage is not None:
                passage.finish(code)

        try:
            deadline = _deadline(request, protocol)
            message = _decoded(method.input, await _request_message(request, protocol), codec)
            verdict = await auth.verdict(request, server.auth_layers(), server.guards.get(service, []))
            if verdict.code is not None:
                raise CallError(verdict.code, verdict.message)
            if admission is not None:
                passage = await admission.admit(request)
        except Refused as refused:
            ended(refused.code)
            return _failed(protocol, codec, CallError(refused.code, refused.message, refused.metadata))
        except CallError as error:
            ended(error.code)
            return _failed(protocol, codec, error)
        context = context_type(request, deadline)
        if method.streams:
            frames = _ended_with(_streamed(server, method, message, context, protocol, codec, verdict.user), ended,
                                 context)  # fmt: skip
            # NOTE: the headers leave with the first frame, so that metadata the method sends before it goes too
            first = await anext(frames)
            return StreamingResponse(_chained(first, frames), headers=_initial(context),
                                     media_type=request.content_type)  # fmt: skip
        try:
            reply = await _called(server, method, message, context, verdict.user)
        except CallError as error:
            ended(error.code)
            return _failed(protocol, codec, error)
        except BaseException:  # cancelled: the client left
            ended(grpc.StatusCode.CANCELLED)
            raise
        finally:
            context._done = True
        ended(grpc.StatusCode.OK)
        body = _encoded(reply, codec)
        headers = _initial(context)
        if protocol == CONNECT:
            headers.extend(_as_headers(context._trailing, prefix="trailer-"))
            return Response(body, headers=headers, media_type=request.content_type)
        trailer = _grpc_web_trailer(grpc.StatusCode.OK, "", context._trailing)
        if protocol == CONNECT_STREAM:
            trailer = _envelope(orjson.dumps(_end_of_stream(None, context._trailing)), 0x02)
        return Response(_envelope(body) + trailer, headers=headers, media_type=request.content_type)

    return answer


def _protocol_of(request: Request) -> tuple[str, str] | None:
    """The call's protocol and message codec, by its Content-Type; None when it names neither."""
    return PROTOCOLS.get(request.content_type.partition(";")[0].strip().lower())


def _deadline(request: Request, protocol: str) -> float | None:
    """The call's deadline (``time.monotonic()``) from ``connect-timeout-ms`` or ``grpc-timeout``, or None."""
    if protocol == GRPC_WEB:
        value = request.header("grpc-timeout")
        if value is None:
            return None
        amount, unit = value[:-1], value[-1:]
        if not amount.isdigit() or len(amount) > 8 or unit not in GRPC_TIMEOUT_UNITS:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"grpc-timeout {value!r} is not a timeout")
        return time.monotonic() + int(amount) * GRPC_TIMEOUT_UNITS[unit]
    value = request.header("connect-timeout-ms")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 10:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"connect-timeout-ms {value!r} is not a timeout")
    return time.monotonic() + int(value) / 1000


async def _request_message(request: Request, protocol: str) -> bytes:
    """The bytes of the one request message: the body, or the body's one envelope; decompressed."""
    body = bytes(await request.body())
    if protocol == CONNECT:
        return _decompressed(body, request.header("content-encoding"))
    if len(body) < 5 or len(body) != 5 + int.from_bytes(body[1:5], "big"):
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "The request body is not one enveloped message.")
    data = body[5:]
    if body[0] & 0x01:
        header = "connect-content-encoding" if protocol == CONNECT_STREAM else "grpc-encoding"
        return _decompressed(data, request.header(header) or "unknown")
    return data


def _decompressed(data: bytes, encoding: str | None) -> bytes:
    if encoding in (None, "identity"):
        return data
    if encoding == "gzip":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "The request body is not valid gzip.") from None
    raise CallError(grpc.StatusCode.UNIMPLEMENTED, f"Compression {encoding!r} is not supported (gzip, identity).")


def _decoded(message_type: Any, data: bytes, codec: str) -> Any:
    try:
        if codec == "json":
            return json_format.Parse(data or b"{}", message_type(), ignore_unknown_fields=True)
        return message_type.FromString(data)
    except Exception:  # protobuf's DecodeError, json_format's ParseError, a text that is not UTF-8
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE) from None


def _encoded(message: Any, codec: str) -> bytes:
    if codec == "json":
        return orjson.dumps(json_format.MessageToDict(message))
    return bytes(message.SerializeToString())


def _envelope(data: bytes, flags: int = 0) -> bytes:
    return bytes((flags,)) + len(data).to_bytes(4, "big") + data


# -- calling the method ----------------------------------------------------------------------------------------


async def _called(server: GrpcServer, method: _Method, message: Any, context: WebContext, user: Any) -> Any:
    """The method's reply; a CallError for how it failed (its abort, its set code, an exception, the deadline)."""
    token = auth.bind(user)
    try:
        async with asyncio.timeout(context.time_remaining()):
            if method.is_async:
                reply = await method.behavior(message, context)
            else:
                reply = await server.app.dispatcher.pool.run(method.behavior, message, context)
    except CallError:
        raise
    except TimeoutError:
        raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded.") from None
    except Exception as exc:
        raise _failure(server, method, context, exc) from None
    finally:
        auth.unbind(token)
    if context._code not in (None, grpc.StatusCode.OK):  # set without raising: that is the answer, as in grpcio
        raise CallError(context._code, context._details, context._trailing)
    if not isinstance(reply, method.output):
        raise _failure_of(server, method, TypeError(f"returned {type(reply).__name__}, not {method.output.__name__}"))
    return reply


def _failure(server: GrpcServer, method: _Method, context: WebContext, exc: Exception) -> CallError:
    if context._code not in (None, grpc.StatusCode.OK):  # the method set its code, then raised (as generated stubs do)
        return CallError(context._code, context._details, context._trailing)
    return _failure_of(server, method, exc)


def _failure_of(server: GrpcServer, method: _Method, exc: Exception) -> CallError:
    logger.error("gRPC method %s failed", method.path, exc_info=exc)
    return CallError(grpc.StatusCode.INTERNAL, str(exc) if server.app.debug else INTERNAL_MESSAGE)


async def _streamed(server: GrpcServer, method: _Method, message: Any, context: WebContext, protocol: str,
                    codec: str, user: Any) -> AsyncIterator[bytes]:  # fmt: skip
    """The enveloped replies of a server-streaming method, then the envelope or frame that ends the stream."""
    error: CallError | None = None
    replies = _replies(server, method, message, context)
    try:
        while True:
            # NOTE: each step binds the caller and keeps the deadline on its own: the steps after the first run in
            # the engine's sending task, where a context variable or a timeout set by the first would not hold
            token = auth.bind(user)
            try:
                async with asyncio.timeout(context.time_remaining()):
                    reply = await anext(replies, None)
            finally:
                auth.unbind(token)
            if reply is None:
                break
            yield _envelope(_encoded(reply, codec))
        if context._code not in (None, grpc.StatusCode.OK):
            error = CallError(context._code, context._details, context._trailing)
    except CallError as raised:
        error = raised
    except TimeoutError:
        error = CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded.")
    except Exception as exc:
        error = _failure(server, method, context, exc)
    finally:
        context._done = True
        await replies.aclose()  # NOTE: the client gone or the deadline passed: the method's own finally runs
    context._code = error.code if error is not None else grpc.StatusCode.OK
    if protocol == GRPC_WEB:
        if error is None:
            yield _grpc_web_trailer(grpc.StatusCode.OK, "", context._trailing)
        else:
            yield _grpc_web_trailer(error.code, error.message, error.metadata)
    else:
        yield _envelope(orjson.dumps(_end_of_stream(error, context._trailing)), 0x02)


async def _replies(server: GrpcServer, method: _Method, message: Any, context: WebContext,
                   ) -> AsyncGenerator[Any, None]:  # fmt: skip
    if method.is_async:
        replies = method.behavior(message, context)
        try:
            async for reply in replies:
                yield reply
        finally:
            await replies.aclose()
        return
    # NOTE: a plain generator runs in the pool one step at a time: the event loop never waits on it
    plain = iter(method.behavior(message, context))
    done = object()
    try:
        while (reply := await server.app.dispatcher.pool.run(next, plain, done)) is not done:
            yield reply
    finally:
        if hasattr(plain, "close"):
            await server.app.dispatcher.pool.run(plain.close)


async def _ended_with(frames: AsyncIterator[bytes], ended: Callable[[grpc.StatusCode], None], context: WebContext,
                      ) -> AsyncIterator[bytes]:  # fmt: skip
    """The frames, and ``ended(code)`` once they stop: the code the stream ended with, or CANCELLED."""
    try:
        async for frame in frames:
            yield frame
    finally:
        ended(grpc.StatusCode.CANCELLED if context._code is None else context._code)


async def _chained(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for frame in rest:
        yield frame


# -- answers -----------------------------------------------------------------------------------------------------


def _failed(protocol: str, codec: str, error: CallError) -> Response:
    """The answer to a call that failed before any reply, in its protocol."""
    if protocol == CONNECT:
        body = orjson.dumps(_error_json(error))
        headers = _as_headers([(name, value) for name, value in error.metadata if name != DETAILS_KEY],
                              prefix="trailer-")  # fmt: skip
        return Response(body, status=HTTP_STATUS.get(error.code, 500), headers=headers, media_type="application/json")
    content_type = f"application/{'connect' if protocol == CONNECT_STREAM else 'grpc-web'}+{codec}"
    if protocol == CONNECT_STREAM:
        return Response(_envelope(orjson.dumps(_end_of_stream(error, [])), 0x02), media_type=content_type)
    # NOTE: gRPC-Web's trailers-only answer: the status in the headers, and again as a trailer frame for clients
    # that read only the body
    headers = [("grpc-status", str(error.code.value[0])), ("grpc-message", _percent_encoded(error.message))]
    return Response(_grpc_web_trailer(error.code, error.message, error.metadata), headers=headers,
                    media_type=content_type)  # fmt: skip


def _error_json(error: CallError) -> dict[str, Any]:
    answer: dict[str, Any] = {"code": connect_code(error.code)}
    if error.message:
        answer["message"] = error.message
    details = _details(error.metadata)
    if details:
        answer["details"] = details
    return answer


def _details(metadata: Sequence[tuple[str, Any]]) -> list[dict[str, str]]:
    """Rich error details (a ``google.rpc.Status`` in ``grpc-status-details-bin``) as Connect's error details."""
    from google.rpc import status_pb2

    data = next((value for name, value in metadata if name == DETAILS_KEY), None)
    if not isinstance(data, bytes):
        return []
    status = status_pb2.Status.FromString(data)
    return [{"type": detail.TypeName(), "value": base64.b64encode(detail.value).decode().rstrip("=")}
            for detail in status.details]  # fmt: skip


def _end_of_stream(error: CallError | None, trailing: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    end: dict[str, Any] = {}
    if error is not None:
        end["error"] = _error_json(error)
        trailing = [(name, value) for name, value in error.metadata if name != DETAILS_KEY]
    metadata: dict[str, list[str]] = {}
    for name, value in _as_headers(trailing):
        metadata.setdefault(name, []).append(value)
    if metadata:
        end["metadata"] = metadata
    return end


def _grpc_web_trailer(code: grpc.StatusCode, message: str, metadata: Sequence[tuple[str, Any]]) -> bytes:
    lines = [f"grpc-status:{code.value[0]}", f"grpc-message:{_percent_encoded(message)}"]
    lines.extend(f"{name}:{value}" for name, value in _as_headers(metadata))
    return _envelope(("\r\n".join(lines) + "\r\n").encode(), 0x80)


def _as_headers(metadata: Sequence[tuple[str, Any]], prefix: str = "") -> list[tuple[str, str]]:
    """Metadata as header lines: ``-bin`` values base64-encoded, as gRPC carries them in HTTP headers."""
    lines = []
    for name, value in metadata:
        name = name.lower()
        if name.endswith("-bin") and isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        lines.append((prefix + name, str(value)))
    return lines


def _initial(context: WebContext) -> list[tuple[str, str]]:
    return _as_headers(context.initial)


def _percent_encoded(message: str) -> str:
    """``grpc-message`` is percent-encoded UTF-8: what is not printable ASCII, and ``%`` itself."""
    return quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
