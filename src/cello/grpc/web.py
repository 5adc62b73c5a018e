"""Connect, gRPC-Web and gRPC on the app's own port: each method of a service added with
``app.grpc_service(servicer)`` is also answered at ``POST /<package.Service>/<Method>`` — the path all three
protocols use — by the same servicer object.

The request's Content-Type chooses the protocol and the message encoding (``cello.grpc.wire``):

- ``application/proto`` / ``application/json``: a Connect unary call; an error is an HTTP status and a JSON body
  ``{"code": "unauthenticated", "message": ..., "details": [...]}``.
- ``application/connect+proto`` / ``application/connect+json``: a Connect streaming call; the messages come
  enveloped (a flags byte, a 4-byte length), closed by an end-of-stream envelope carrying the error, if any.
- ``application/grpc-web`` (``+proto``) / ``application/grpc-web+json``: gRPC-Web; enveloped messages, then a
  trailer frame with ``grpc-status`` and ``grpc-message``.
- ``application/grpc`` (``+proto``, ``+json``): native gRPC, which ends a call with HTTP trailers — served where
  the server can send them (hypercorn, over HTTP/2: ``request.sends_trailers``); under granian such a call is
  answered ``UNIMPLEMENTED`` and native gRPC has its own port (``app.run(grpc_port=...)``).

Neither Connect nor gRPC-Web needs trailers, so both work under every engine, over HTTP/1.1 and HTTP/2. JSON is
protobuf's canonical JSON mapping. Request messages may be gzip-compressed; answers are sent uncompressed.
Deadlines come from ``connect-timeout-ms`` or ``grpc-timeout``. A request's messages are read whole before the
method runs, so a client-streaming method works over every protocol that can carry several messages, and a
bidirectional one answers once its requests have all come: a conversation that waits for answers before it
sends more belongs on the native gRPC port.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import orjson
from google.protobuf import message_factory

from ..http.exceptions import HTTPException
from ..http.request import Request
from ..http.response import Response, StreamingResponse
from ..routing.router import Route
from . import auth
from .admission import Passage, Refused
from .codes import INTERNAL_MESSAGE
from .context import AsyncWebContext, CallError, WebContext
from .wire import (
    CONNECT,
    CONNECT_STREAM,
    GRPC,
    GRPC_WEB,
    PROTOCOLS,
    as_headers,
    deadline_of,
    decoded,
    encoded,
    end_of_stream,
    envelope,
    failed,
    grpc_status_lines,
    grpc_web_trailer,
    protocol_of,
    request_messages,  # fmt: skip
)

if TYPE_CHECKING:
    from .server import GrpcServer

__all__ = ["web_routes"]

logger = logging.getLogger("cello.grpc")

NO_TRAILERS = ("Native gRPC needs HTTP trailers, which this server cannot send: call the app's gRPC port "
               "(app.run(grpc_port=...)), or use Connect or gRPC-Web here.")  # fmt: skip


class _Method:
    """One method of a service, as the routes call it."""

    __slots__ = ("path", "input", "output", "behavior", "streams", "streamed", "is_async")

    def __init__(self, service: str, descriptor: Any, servicer: Any) -> None:
        self.path = f"/{service}/{descriptor.name}"
        self.input = message_factory.GetMessageClass(descriptor.input_type)
        self.output = message_factory.GetMessageClass(descriptor.output_type)
        self.behavior = getattr(servicer, descriptor.name)
        self.streams = bool(descriptor.server_streaming)  # it answers a stream
        self.streamed = bool(descriptor.client_streaming)  # its requests come as one
        self.is_async = inspect.iscoroutinefunction(self.behavior) or inspect.isasyncgenfunction(self.behavior)


def web_routes(server: GrpcServer, servicer: Any, service_descriptors: Sequence[Any]) -> list[Route]:
    """A route per method of the services."""
    routes = []
    for service in service_descriptors:
        for descriptor in service.methods:
            method = _Method(service.full_name, descriptor, servicer)
            # NOTE: public: the call's credentials are checked inside, to answer in the call's own protocol
            meta = {"include_in_schema": False, "public": True, "strict_content_type": False, "grpc": True}
            routes.append(Route(method.path, ["POST"], _endpoint(server, service.full_name, method),
                                name=f"grpc:{method.path}", body_limit=server.max_message_size + 5,
                                meta=meta))  # fmt: skip
    return routes


def _endpoint(server: GrpcServer, service: str, method: _Method) -> Callable[[Request], Any]:
    context_type = AsyncWebContext if method.is_async else WebContext
    counted = server.web_calls_counted()
    admission = server.admissions.get(service)
    guards = server.guards.get(service, [])  # NOTE: given with the service, before its routes are made

    async def answer(request: Request) -> Response:
        started = time.perf_counter()
        found = protocol_of(request)
        if found is None:
            # NOTE: what Connect's spec asks for an unknown Content-Type: 415, and the types it takes; not a call of
            # any of its protocols, so the answer is the app's own problem+json
            raise HTTPException(415, "A call here is Connect, gRPC-Web or gRPC; see Accept-Post for the content "
                                     "types taken.", {"Accept-Post": ", ".join(PROTOCOLS)})  # fmt: skip
        protocol, codec = found
        passage: Passage | None = None

        def ended(code: grpc.StatusCode) -> None:
            counted(service, method.path, code, started)
            if passage is not None:
                passage.finish(code)

        try:
            if protocol == GRPC and not request.sends_trailers:
                raise CallError(grpc.StatusCode.UNIMPLEMENTED, NO_TRAILERS)
            if protocol == CONNECT and (method.streams or method.streamed):
                raise CallError(grpc.StatusCode.UNIMPLEMENTED, "A streaming method takes application/connect+proto "
                                                               "or application/connect+json.")  # fmt: skip
            deadline = deadline_of(request, protocol)
            messages = [decoded(method.input, data, codec) for data in await request_messages(request, protocol)]
            if not method.streamed and len(messages) != 1:
                raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "The method takes one request message.")
            verdict = await auth.verdict(request, server.auth_layers(), guards)
            if verdict.code is not None:
                raise CallError(verdict.code, verdict.message)
            if admission is not None:
                passage = await admission.admit(request)
        except Refused as refused:
            ended(refused.code)
            error = CallError(refused.code, refused.message, refused.metadata)
            return failed(protocol, codec, error, trailers=request.sends_trailers)
        except CallError as error:
            ended(error.code)
            return failed(protocol, codec, error, trailers=request.sends_trailers)
        context = context_type(request, deadline)
        argument = _requests(messages, method.is_async) if method.streamed else messages[0]
        media_type = request.content_type
        if method.streams:
            frames = _ended_with(_streamed(server, method, argument, context, protocol, codec, verdict.user), ended,
                                 context)  # fmt: skip
            # NOTE: the headers leave with the first frame, so that metadata the method sends before it goes too
            first = await anext(frames)
            trailers = (lambda: context.final) if protocol == GRPC else None
            return StreamingResponse(_chained(first, frames), headers=as_headers(context.initial),
                                     media_type=media_type, trailers=trailers)  # fmt: skip
        try:
            reply = await _called(server, method, argument, context, verdict.user)
        except CallError as error:
            ended(error.code)
            return failed(protocol, codec, error, trailers=request.sends_trailers)
        except BaseException:  # cancelled: the client left
            ended(grpc.StatusCode.CANCELLED)
            raise
        finally:
            context._done = True
        ended(grpc.StatusCode.OK)
        body = encoded(reply, codec)
        headers = as_headers(context.initial)
        if protocol == CONNECT:
            headers.extend(as_headers(context._trailing, prefix="trailer-"))
            return Response(body, headers=headers, media_type=media_type)
        if protocol == GRPC:
            final = grpc_status_lines(grpc.StatusCode.OK, "", context._trailing)
            return StreamingResponse((envelope(body),), headers=headers, media_type=media_type,
                                     trailers=lambda: final)  # fmt: skip
        if protocol == CONNECT_STREAM:
            return Response(envelope(body) + envelope(orjson.dumps(end_of_stream(None, context._trailing)), 0x02),
                            headers=headers, media_type=media_type)  # fmt: skip
        trailer = grpc_web_trailer(grpc.StatusCode.OK, "", context._trailing)
        return Response(envelope(body) + trailer, headers=headers, media_type=media_type)

    return answer


def _requests(messages: list[Any], is_async: bool) -> Any:
    """A client-streaming method's requests: an async iterator for an ``async def`` method, else a plain one."""
    if not is_async:
        return iter(messages)

    async def each() -> AsyncIterator[Any]:
        for message in messages:
            yield message

    return each()


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
    if context._code not in (None, grpc.StatusCode.OK):  # set, then raised: as the generated base methods do
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
            yield envelope(encoded(reply, codec))
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
    code, message, metadata = (
        (error.code, error.message, error.metadata) if error else (context._code, "", context._trailing)
    )
    if protocol == GRPC:  # NOTE: the status goes in the HTTP trailers, sent after this last (empty) chunk
        context.final = grpc_status_lines(code, message, metadata)
        yield b""
    elif protocol == GRPC_WEB:
        yield grpc_web_trailer(code, message, metadata)
    else:
        yield envelope(orjson.dumps(end_of_stream(error, context._trailing)), 0x02)


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
