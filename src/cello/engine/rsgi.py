"""granian RSGI adapter: the default and fastest face. The only module that knows granian's protocol object.

Per request: resolve the route (a dict lookup for static paths), read the body within its limit, build the lazy
request, await the route's pipeline, and hand bytes, a file or a stream to granian's native response calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson
from granian.rsgi import ProtocolClosed  # type: ignore[attr-defined]

from ..http.exceptions import BodyTimeout, ClientDisconnected
from ..http.request import EMPTY_PARAMS, RSGIRequest
from ..http.response import BYTES, FILE, JSON_TYPE, Response, dump_json, to_response
from ..realtime.websocket import ABNORMAL, NORMAL, WebSocket, WebSocketDisconnect
from ..routing.router import WEBSOCKET
from .common import (
    NO_BODY,
    READ_ALL,
    READ_CHUNKS,
    TOO_LARGE,
    BodyClock,
    BodyTooLarge,
    body_plan,
    close_iterator,
    file_headers,
    iterate_chunks,
)

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("cello.engine")

_JSON_HEADERS = [("content-type", JSON_TYPE)]
dumps = orjson.dumps


def rsgi_handler(app: App) -> Callable[[Any, Any], Any]:
    dispatcher = app.dispatcher
    static = dispatcher.static
    resolve = dispatcher.resolve
    handle_exception = dispatcher.handle_exception
    pool = dispatcher.pool
    background = dispatcher.background
    default_limit = app.config.max_body_size
    clock = BodyClock(app.config.body_timeout)
    websocket = _websocket_handler(app)

    async def handle(scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            await websocket(scope, proto)
            return
        method = scope.method
        path = scope.path
        methods = static.get(path)
        if methods is not None:
            route = methods[method]
            params = EMPTY_PARAMS
        else:
            route, params = resolve(method, path)

        body = b""
        receive = None
        # NOTE: GET and HEAD content has no defined meaning (RFC 9110 §9.3.1), so it is not read: this keeps two
        # header lookups off the most common requests. The engine still frames and discards such a body.
        if method != "GET" and method != "HEAD":
            limit = route.body_limit if route.body_limit is not None else default_limit
            if route.stream:
                receive = _streamer(proto, limit, clock, scope.http_version)
            else:
                headers = scope.headers
                plan = body_plan(
                    headers.get("content-length"), headers.get("transfer-encoding"), scope.http_version, limit
                )
                if plan == READ_ALL:
                    try:
                        body = await clock.read(proto(), clock.deadline())
                    except ProtocolClosed:
                        route = dispatcher.body_ended
                    except BodyTimeout:
                        route = dispatcher.body_timeout
                elif plan == READ_CHUNKS:
                    try:
                        body = await _read_limited(proto, limit, clock, scope.http_version)
                    except BodyTooLarge:
                        route = dispatcher.too_large
                    except ClientDisconnected:
                        route = dispatcher.body_ended
                    except BodyTimeout:
                        route = dispatcher.body_timeout
                elif plan != NO_BODY:
                    route = dispatcher.too_large if plan == TOO_LARGE else dispatcher.bad_length
        elif route.stream:
            limit = default_limit if route.body_limit is None else route.body_limit
            receive = _streamer(proto, limit, clock, scope.http_version)

        request = RSGIRequest(app, scope, method, path, params, body, receive)
        request.route = route
        try:
            result = await route.pipeline(request)
            if result.__class__ is dict:
                proto.response_bytes(200, _JSON_HEADERS, dump_json(result))
                if request._background is not None:
                    background.schedule(request._background, request=request)
                return
            response = result if isinstance(result, Response) else to_response(result)
        except Exception as exc:
            response = await handle_exception(request, exc)
        try:
            await _send(proto, request, response, pool)
        except ProtocolClosed:
            pass  # the client went away mid-response; nothing is left to tell it
        except Exception as exc:  # a response the engine refused (e.g. an invalid header value)
            _last_resort(proto, request, exc)
        if request._background is not None or response.background is not None:
            background.schedule(request._background, response.background, request=request)

    return handle


async def _send(proto: Any, request: RSGIRequest, response: Response, pool: Any) -> None:
    kind = response.kind
    if kind == BYTES:
        proto.response_bytes(response.status, response.raw_headers, response.body)
        return
    if kind == FILE:
        status, span = response.evaluate(request.method, request.headers)  # type: ignore[attr-defined]
        headers = file_headers(response, status, span)
        if span is not None:
            proto.response_file_range(status, headers, response.path, span[0], span[1])  # type: ignore[attr-defined]
        elif status == 200 and request.method != "HEAD":
            proto.response_file(status, headers, response.path)  # type: ignore[attr-defined]
        else:
            proto.response_bytes(status, headers, b"")
        return
    iterator = response.iterator  # type: ignore[attr-defined]
    transport = proto.response_stream(response.status, response.raw_headers)

    async def produce() -> None:
        chunks = iterate_chunks(iterator, pool)
        try:
            async for chunk in chunks:
                await transport.send_bytes(chunk)
        finally:
            await chunks.aclose()

    # NOTE: a producer waiting for its next chunk would not notice a client that left until it next sends;
    # granian says so at once, and the producer is cancelled where it waits (its `finally` runs now)
    producer = asyncio.ensure_future(produce())
    watcher = asyncio.ensure_future(proto.client_disconnect())
    try:
        await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()  # NOTE: not awaited: granian's future may not finish on cancel, and nothing waits on it
        if not producer.done():
            producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        await close_iterator(iterator)
        # NOTE: granian ends the body only when the transport is freed (RSGI has no call to end or abort it); a
        # failed producer's traceback would keep it alive, and the client waiting, until the garbage collector ran
        transport = None
    if producer.done() and not producer.cancelled() and producer.exception() is not None:
        # the status and headers are out: a failure can only end the body early (an ASGI server aborts instead)
        logger.error(
            "the response stream of %s %s failed; its body ends early",
            request.method,
            request.path,
            exc_info=producer.exception(),
        )


# -- WebSocket ------------------------------------------------------------------------------------------------


class RSGIWebSocket(WebSocket, RSGIRequest):
    __slots__ = ()


class _Socket:
    """granian's WebSocket protocol as the transport ``cello.realtime`` expects.

    NOTE: RSGI accepts without a subprotocol or extra headers and closes without a reason: asking for those
    here is refused rather than silently dropped (serve through ASGI when a subprotocol must be chosen).
    """

    __slots__ = ("proto", "transport")

    def __init__(self, proto: Any) -> None:
        self.proto = proto
        self.transport: Any = None

    async def accept(self, subprotocol: str | None, headers: list[tuple[str, str]]) -> None:
        if subprotocol is not None or headers:
            raise RuntimeError(
                "granian's RSGI interface cannot send a WebSocket subprotocol or handshake headers; serve the app "
                "through ASGI (cello run --interface asgi, uvicorn or hypercorn) to choose one"
            )
        self.transport = await self.proto.accept()

    async def receive(self) -> tuple[int, str | bytes | None]:
        try:
            message = await self.transport.receive()
        except ProtocolClosed:
            return 0, None
        kind = message.kind
        return (kind, message.data) if kind else (0, None)  # granian's close message has no data at all

    async def send(self, data: str | bytes) -> None:
        try:
            if isinstance(data, str):
                await self.transport.send_str(data)
            else:
                await self.transport.send_bytes(data)
        except ProtocolClosed:
            raise WebSocketDisconnect(ABNORMAL) from None

    def start_send(self, data: str | bytes) -> Any:
        # granian's send future runs on its own runtime from the moment it is created
        return self.transport.send_str(data) if isinstance(data, str) else self.transport.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        self.proto.close(code)

    async def reject(self, response: Response) -> None:
        # before the upgrade, granian answers plain HTTP with this status (and no body)
        self.proto.close(response.status)

    async def release(self) -> None:
        # NOTE: also after the peer closed: granian completes the closing handshake (and frees the connection)
        # only when the app closes its side; a second close is a no-op
        self.proto.close(NORMAL)


def _websocket_handler(app: App) -> Callable[[Any, Any], Any]:
    dispatcher = app.dispatcher
    resolve = dispatcher.resolve
    config = app.config

    async def handle(scope: Any, proto: Any) -> None:
        path = scope.path
        route, params = resolve(WEBSOCKET, path)
        ws = RSGIWebSocket(app, scope, "GET", path, params)
        ws.route = route
        ws._start(_Socket(proto), config.websocket_max_size, config.websocket_idle_timeout)
        await ws.serve()

    return handle


def _streamer(proto: Any, limit: int, clock: BodyClock, http_version: str) -> Callable[[], AsyncIterator[bytes]]:
    # NOTE: granian ends a body with one empty chunk, and hands over an HTTP/1.1 body whose chunked framing broke
    # (an invalid chunk size) as an empty chunk followed by that end; request trailers, which nothing here reads,
    # arrive the same way and are refused with it. In HTTP/2 an empty DATA frame is a legitimate way to end a body.
    framed = http_version.startswith("1")

    async def receive() -> AsyncIterator[bytes]:
        seen = 0
        chunks = aiter(proto)
        deadline = clock.deadline()
        ending = False
        while True:
            try:
                chunk = await clock.read(anext(chunks), deadline)
            except StopAsyncIteration:
                return
            except ProtocolClosed:
                raise ClientDisconnected() from None
            if not chunk:
                if ending:
                    raise ClientDisconnected()
                ending = framed
                continue
            if ending:
                raise ClientDisconnected()
            seen += len(chunk)
            if seen > limit:
                raise BodyTooLarge()
            yield chunk

    return receive


async def _read_limited(proto: Any, limit: int, clock: BodyClock, http_version: str) -> bytes:
    return b"".join([chunk async for chunk in _streamer(proto, limit, clock, http_version)()])


def _last_resort(proto: Any, request: RSGIRequest, exc: Exception) -> None:
    logger.error("could not send the response to %s %s", request.method, request.path, exc_info=exc)
    try:
        proto.response_bytes(500, [("content-type", "application/problem+json")], _INTERNAL)
    except Exception:  # noqa: S110 - the response had already started or the client is gone
        pass


_INTERNAL = b'{"type":"about:blank","title":"Internal Server Error","status":500}'
