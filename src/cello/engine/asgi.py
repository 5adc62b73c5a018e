"""ASGI adapter: the same app under uvicorn, hypercorn (HTTP/3 through aioquic) or any ASGI server.

It mirrors the RSGI adapter step for step; the differences are ASGI's message passing and bytes headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..http.exceptions import BodyTimeout, ClientDisconnected
from ..http.request import ASGIRequest
from ..http.response import BYTES, FILE, Response, to_response
from ..realtime.websocket import ABNORMAL, POLICY, TEXT, WebSocket, WebSocketDisconnect
from ..realtime.websocket import BYTES as MESSAGE_BYTES
from ..routing.router import WEBSOCKET
from .common import (
    BAD_LENGTH,
    NO_BODY,
    TOO_LARGE,
    BodyClock,
    BodyTooLarge,
    body_plan,
    close_iterator,
    file_headers,
    is_empty_body_status,
    iterate_chunks,
)

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("cello.engine")

Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

FILE_CHUNK = 256 * 1024


def asgi_handler(app: App) -> Callable[[Any, Receive, Send], Any]:
    dispatcher = app.dispatcher
    resolve = dispatcher.resolve
    handle_exception = dispatcher.handle_exception
    pool = dispatcher.pool
    background = dispatcher.background
    default_limit = app.config.max_body_size
    clock = BodyClock(app.config.body_timeout)
    websocket = _websocket_handler(app)

    async def handle(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(app, receive, send)
            return
        if kind == "websocket":
            await websocket(scope, receive, send)
            return
        if kind != "http":
            return  # an ASGI message type this app does not speak
        method = scope["method"]
        path = scope["path"]
        route, params = resolve(method, path)
        limit = route.body_limit if route.body_limit is not None else default_limit
        body = b""
        stream = None
        if route.stream:
            stream = _streamer(receive, limit, clock)
        else:
            content_length = transfer_encoding = None
            for name, value in scope["headers"]:
                if name == b"content-length":
                    content_length = value.decode("latin-1")
                elif name == b"transfer-encoding":
                    transfer_encoding = value.decode("latin-1")
            plan = body_plan(content_length, transfer_encoding, scope.get("http_version", "1.1"), limit)
            if plan == TOO_LARGE:
                route = dispatcher.too_large
            elif plan == BAD_LENGTH:
                route = dispatcher.bad_length
            elif plan != NO_BODY:
                try:
                    body = await _read_body(receive, limit, clock)
                except BodyTooLarge:
                    route = dispatcher.too_large
                except ClientDisconnected:
                    route = dispatcher.body_ended
                except BodyTimeout:
                    route = dispatcher.body_timeout

        request = ASGIRequest(app, scope, method, path, params, body, stream)
        request.route = route
        try:
            result = await route.pipeline(request)
            response = result if isinstance(result, Response) else to_response(result)
        except Exception as exc:
            response = await handle_exception(request, exc)
        try:
            await _send(send, receive, request, response, pool)
        except OSError:
            pass  # the client went away mid-response
        if request._background is not None or response.background is not None:
            background.schedule(request._background, response.background, request=request)

    return handle


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _send(send: Send, receive: Receive, request: ASGIRequest, response: Response, pool: Any) -> None:
    kind = response.kind
    head_only = request.method == "HEAD"
    if kind == BYTES:
        status = response.status
        headers = response.raw_headers
        body = response.body
        if not is_empty_body_status(status):
            headers = [*headers, ("content-length", str(len(body)))]
        await send({"type": "http.response.start", "status": status, "headers": _encode(headers)})
        await send({"type": "http.response.body", "body": b"" if head_only else body})
        return
    if kind == FILE:
        await _send_file(send, request, response, pool, head_only)
        return
    trailers = response.trailers if request.sends_trailers else None  # type: ignore[attr-defined]
    start = {"type": "http.response.start", "status": response.status, "headers": _encode(response.raw_headers)}
    if trailers is not None:
        start["trailers"] = True
    await send(start)
    if head_only:
        await send({"type": "http.response.body", "body": b""})
    else:
        await _stream_until_disconnect(send, receive, response.iterator, pool)  # type: ignore[attr-defined]
    if trailers is not None:
        await send({"type": "http.response.trailers", "headers": _encode(trailers()), "more_trailers": False})


async def _send_file(send: Send, request: ASGIRequest, response: Any, pool: Any, head_only: bool) -> None:
    status, span = response.evaluate(request.method, request.headers)
    headers = file_headers(response, status, span)
    await send({"type": "http.response.start", "status": status, "headers": _encode(headers)})
    if head_only or status not in (200, 206):
        await send({"type": "http.response.body", "body": b""})
        return
    start, end = span if span is not None else (0, response.size)
    handle = await pool.run(open, response.path, "rb")
    try:
        await pool.run(handle.seek, start)
        remaining = end - start
        while remaining > 0:
            chunk = await pool.run(handle.read, min(FILE_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        if remaining > 0:  # the file shrank under us; end the body rather than hang
            await send({"type": "http.response.body", "body": b""})
    finally:
        await pool.run(handle.close)


async def _stream_until_disconnect(send: Send, receive: Receive, iterator: Any, pool: Any) -> None:
    """Send chunks as produced; a client disconnect cancels the producer so its ``finally`` runs promptly."""

    async def produce() -> None:
        chunks = iterate_chunks(iterator, pool)
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await chunks.aclose()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    producer = asyncio.ensure_future(produce())
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (producer, watcher):
            if not task.done():
                task.cancel()
        await asyncio.gather(producer, watcher, return_exceptions=True)
        await close_iterator(iterator)
    if producer.done() and not producer.cancelled() and producer.exception() is not None:
        raise producer.exception()  # type: ignore[misc]


async def _read_body(receive: Receive, limit: int, clock: BodyClock) -> bytes:
    return b"".join([chunk async for chunk in _streamer(receive, limit, clock)()])


def _streamer(receive: Receive, limit: int, clock: BodyClock) -> Callable[[], AsyncIterator[bytes]]:
    async def stream() -> AsyncIterator[bytes]:
        seen = 0
        deadline = clock.deadline()
        while True:
            message = await clock.read(receive(), deadline)
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                seen += len(chunk)
                if seen > limit:
                    raise BodyTooLarge()
                yield chunk
            if not message.get("more_body", False):
                return

    return stream


# -- WebSocket ------------------------------------------------------------------------------------------------


class ASGIWebSocket(WebSocket, ASGIRequest):
    __slots__ = ()


class _Socket:
    """The ASGI WebSocket messages as the transport ``cello.realtime`` expects."""

    __slots__ = ("scope", "receive_message", "send_message")

    def __init__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive_message = receive
        self.send_message = send

    async def accept(self, subprotocol: str | None, headers: list[tuple[str, str]]) -> None:
        await self.send_message({"type": "websocket.accept", "subprotocol": subprotocol, "headers": _encode(headers)})

    async def receive(self) -> tuple[int, str | bytes | None]:
        while True:
            message = await self.receive_message()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    return TEXT, text
                return MESSAGE_BYTES, message.get("bytes") or b""
            if kind == "websocket.disconnect":
                return 0, None

    async def send(self, data: str | bytes) -> None:
        message = (
            {"type": "websocket.send", "text": data}
            if isinstance(data, str)
            else {"type": "websocket.send", "bytes": data}
        )
        try:
            await self.send_message(message)
        except OSError:  # the servers' "client disconnected" errors
            raise WebSocketDisconnect(ABNORMAL) from None

    def start_send(self, data: str | bytes) -> None:
        return None  # ASGI sends only when awaited

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.send_message({"type": "websocket.close", "code": code, "reason": reason})
        except OSError:
            pass

    async def reject(self, response: Response) -> None:
        if "websocket.http.response" in self.scope.get("extensions", {}):
            # the server can answer the handshake with a real HTTP response: status, headers and body
            await self.send_message({"type": "websocket.http.response.start", "status": response.status,
                                     "headers": _encode(response.raw_headers)})  # fmt: skip
            await self.send_message({"type": "websocket.http.response.body", "body": response.body or b""})
            return
        await self.send_message({"type": "websocket.close", "code": POLICY})  # the server answers 403

    async def release(self) -> None:
        pass  # ASGI servers answer the peer's close themselves


def _websocket_handler(app: App) -> Callable[[dict[str, Any], Receive, Send], Any]:
    dispatcher = app.dispatcher
    resolve = dispatcher.resolve
    config = app.config

    async def handle(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        path = scope["path"]
        route, params = resolve(WEBSOCKET, path)
        ws = ASGIWebSocket(app, scope, "GET", path, params)
        ws.route = route
        ws._start(_Socket(scope, receive, send), config.websocket_max_size, config.websocket_idle_timeout)
        await ws.serve()

    return handle


async def _lifespan(app: App, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] == "lifespan.startup":
        try:
            await app.startup()
        except Exception as exc:
            logger.exception("startup failed")
            await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
    if message["type"] == "lifespan.shutdown":
        try:
            await app.shutdown()
        except Exception as exc:
            logger.exception("shutdown failed")
            await send({"type": "lifespan.shutdown.failed", "message": f"{type(exc).__name__}: {exc}"})
            return
        await send({"type": "lifespan.shutdown.complete"})
