"""A lean WebSocket server: an app's WebSocket routes at a few kilobytes per connection.

    cello run app:app --websocket-server --port 8001     # next to the HTTP server, behind the same proxy

granian keeps about 160 KB of buffers per WebSocket connection and the ASGI servers 18-30 KB; this server is an
asyncio protocol with wsproto framing, so an idle connection costs its protocol object, wsproto's state and the
handler's coroutine. It speaks the full WebSocket API of ``cello.realtime`` (subprotocols, handshake headers,
close codes and reasons, a refused handshake answered with its real status and problem+json body) and adds what
the other engines leave out: a heartbeat — one task pings every connection each ``ping_interval`` seconds and
drops those that stayed silent for ``ping_timeout`` more — and 1001 for every connection when the process is
told to stop. A peer that stops reading is given ``send_timeout`` seconds to drain what was sent to it, then
dropped (1008): it can stall its sender (or a broadcast to its room) no longer than that, and cannot grow the
server's memory. A connection that has not completed its handshake after ``handshake_timeout`` seconds is
dropped. Plain HTTP requests get 426 Upgrade Required: serve HTTP from the main server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..http.response import Response
from ..realtime.websocket import ABNORMAL, BYTES, GOING_AWAY, POLICY, TEXT, TOO_BIG, WebSocketDisconnect
from ..routing.router import WEBSOCKET
from .asgi import ASGIWebSocket

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("cello.engine")

_UPGRADE_REQUIRED = b'{"type":"about:blank","title":"Upgrade Required","status":426}'


class _Connection(asyncio.Protocol):
    """One TCP connection: the handshake, then frames to and from the app's WebSocket."""

    __slots__ = ("app", "server", "transport", "conn", "socket", "inbox", "waiter", "parts", "size", "seen",
                 "closed", "task", "writable")  # fmt: skip

    def __init__(self, app: App, server: _Server) -> None:
        self.app = app
        self.server = server
        self.transport: Any = None
        self.conn = WSConnection(ConnectionType.SERVER)
        self.socket: ASGIWebSocket | None = None
        self.inbox: deque[tuple[int, str | bytes | None]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.parts: list[Any] = []  # a message arriving in several frames
        self.size = 0
        self.seen = time.monotonic()  # last sign of life from the peer
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self.writable: asyncio.Future[None] | None = None  # set while the peer is not reading fast enough

    # -- asyncio callbacks ----------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections.add(self)
        # NOTE: a peer that never completes its handshake (trickled or endless headers) is dropped on time
        asyncio.get_running_loop().call_later(self.server.handshake_timeout, self._handshake_deadline)

    def _handshake_deadline(self) -> None:
        if self.socket is None and not self.transport.is_closing():
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.seen = time.monotonic()
        try:
            self.conn.receive_data(data)
            for event in self.conn.events():
                self._handle(event)
        except RemoteProtocolError as exc:
            self._refuse_plain(exc)
        except LocalProtocolError:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self._deliver((0, None))
        self.resume_writing()

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- frames ---------------------------------------------------------------------------------------------

    def _handle(self, event: Any) -> None:
        if isinstance(event, Request):
            self.socket = self._socket(event)
            self.task = asyncio.ensure_future(self.socket.serve())
        elif isinstance(event, (TextMessage, BytesMessage)):
            self.parts.append(event.data)
            self.size += len(event.data)
            if self.size > self.app.config.websocket_max_size:
                self._close_now(TOO_BIG, "message too big")
                return
            if event.message_finished:
                data: str | bytes = ("" if isinstance(event, TextMessage) else b"").join(self.parts)
                self.parts, self.size = [], 0
                self._deliver((TEXT if isinstance(event, TextMessage) else BYTES, data))
        elif isinstance(event, Ping):
            self._write(event.response())
        elif isinstance(event, Pong):
            pass  # `seen` was refreshed by data_received
        elif isinstance(event, CloseConnection):
            self._write(event.response())
            self.closed = True
            self.transport.close()
            self._deliver((0, None))

    def _socket(self, request: Request) -> ASGIWebSocket:
        path, _, query = request.target.partition("?")
        headers = [(b"host", request.host.encode()), *((bytes(k), bytes(v)) for k, v in request.extra_headers)]
        if request.subprotocols:
            headers.append((b"sec-websocket-protocol", ", ".join(request.subprotocols).encode()))
        peer = self.transport.get_extra_info("peername") or ("", 0)
        local = self.transport.get_extra_info("sockname") or ("", 0)
        scope = {"type": "websocket", "path": path, "query_string": query.encode(), "headers": headers,
                 "client": tuple(peer[:2]), "server": tuple(local[:2]), "scheme": "ws", "http_version": "1.1",
                 "subprotocols": list(request.subprotocols), "extensions": {}}  # fmt: skip
        route, params = self.app.dispatcher.resolve(WEBSOCKET, path)
        socket = ASGIWebSocket(self.app, scope, "GET", path, params)
        socket.route = route
        config = self.app.config
        socket._start(self, config.websocket_max_size, config.websocket_idle_timeout)  # type: ignore[arg-type]
        return socket

    def _deliver(self, message: tuple[int, str | bytes | None]) -> None:
        self.inbox.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _write(self, event: Any) -> None:
        if not self.transport.is_closing():
            self.transport.write(self.conn.send(event))

    def _close_now(self, code: int, reason: str) -> None:
        with contextlib.suppress(LocalProtocolError):
            self._write(CloseConnection(code=code, reason=reason))
        self.closed = True
        self.transport.close()
        self._deliver((0, None))

    def _refuse_plain(self, exc: Exception) -> None:
        """Not a WebSocket handshake: a plain HTTP request, or garbage."""
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 426 Upgrade Required\r\nupgrade: websocket\r\nconnection: close\r\n"
                                 b"content-type: application/problem+json\r\ncontent-length: "
                                 + str(len(_UPGRADE_REQUIRED)).encode() + b"\r\n\r\n" + _UPGRADE_REQUIRED)  # fmt: skip
            self.transport.close()

    # -- the transport cello.realtime.WebSocket talks to -------------------------------------------------------

    async def accept(self, subprotocol: str | None, headers: list[tuple[str, str]]) -> None:
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self._write(AcceptConnection(subprotocol=subprotocol, extra_headers=extra))

    async def receive(self) -> tuple[int, str | bytes | None]:
        while not self.inbox:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.inbox.popleft()

    async def send(self, data: str | bytes) -> None:
        if self.closed or self.transport.is_closing():
            raise WebSocketDisconnect(ABNORMAL)
        self._write(TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data))
        writable = self.writable
        if writable is not None:
            # NOTE: the peer is not reading: wait for its buffer to drain, but not for ever — a client that stopped
            # reading would otherwise hold its sender (and a broadcast to its room) and grow this process's memory
            try:
                await asyncio.wait_for(asyncio.shield(writable), self.server.send_timeout)
            except TimeoutError:
                self._close_now(POLICY, "too slow")
                raise WebSocketDisconnect(POLICY, "too slow") from None

    def start_send(self, data: str | bytes) -> None:
        return None  # writes are buffered at once: send() never waits

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self._close_now(code, reason)

    async def reject(self, response: Response) -> None:
        body = response.body or b""
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.raw_headers]
        headers.append((b"content-length", str(len(body)).encode()))
        with contextlib.suppress(LocalProtocolError):
            self._write(RejectConnection(status_code=response.status, headers=headers, has_body=bool(body)))
            if body:
                self._write(RejectData(data=body))
        self.closed = True
        self.transport.close()

    async def release(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


class _Server:
    def __init__(
        self, app: App, ping_interval: float | None, ping_timeout: float, send_timeout: float, handshake_timeout: float
    ) -> None:
        self.app = app
        self.handshake_timeout = handshake_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.send_timeout = send_timeout  # seconds a peer may leave sent frames unread before it is dropped
        self.connections: set[_Connection] = set()

    async def heartbeat(self) -> None:
        """One task for every connection: ping each, and drop the ones silent past the interval and timeout."""
        assert self.ping_interval is not None
        while True:
            await asyncio.sleep(self.ping_interval)
            deadline = time.monotonic() - self.ping_interval - self.ping_timeout
            for connection in list(self.connections):
                if connection.socket is None or connection.closed:
                    continue
                if connection.seen < deadline:
                    connection.closed = True
                    connection.transport.abort()  # a dead peer: no close handshake to wait for
                    connection._deliver((0, None))
                else:
                    with contextlib.suppress(LocalProtocolError):
                        connection._write(Ping())


async def serve(
    app: App,
    host: str,
    port: int,
    ping_interval: float | None = 20.0,
    ping_timeout: float = 20.0,
    send_timeout: float = 10.0,
    handshake_timeout: float = 10.0,
) -> None:
    """Serve ``app``'s WebSocket routes until SIGTERM or SIGINT, then close every connection with 1001."""
    await app.startup()
    state = _Server(app, ping_interval, ping_timeout, send_timeout, handshake_timeout)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(app, state), host, port, backlog=2048)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    heartbeat = asyncio.ensure_future(state.heartbeat()) if ping_interval else None
    logger.info("WebSocket server on ws://%s:%d", host, port)
    try:
        await stop.wait()
    finally:
        server.close()
        for connection in list(state.connections):
            if connection.socket is not None and not connection.closed:
                connection._close_now(GOING_AWAY, "server shutting down")
        tasks = [c.task for c in list(state.connections) if c.task is not None and not c.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if heartbeat is not None:
            heartbeat.cancel()
        await app.shutdown()


def run(app: App, host: str = "127.0.0.1", port: int = 8001, **options: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(app, host, port, **options))
