"""WebSocket connections: one API over every engine, async or — for plain ``def`` handlers — blocking.

    @app.websocket("/ws/echo/{room}")
    async def echo(ws: WebSocket, room: str):
        await ws.accept()                      # optional: the first send or receive accepts
        async for message in ws:               # ends when the peer closes
            await ws.send_text(f"{room}: {message.text}")

    @app.websocket("/ws/chat")
    def chat(ws):                              # a plain function: runs in a thread of its own
        ws.send_text("Welcome!")
        while (message := ws.recv()) is not None:
            ...

A WebSocket is a ``Request`` too (headers, cookies, query, path parameters, ``context``, ``user``), so the route's
middleware — authentication, guards, rate limits — runs on the handshake, and any of them answering (401, 403,
429…) refuses the upgrade with that status before the connection is accepted. Handler parameters work as for HTTP
routes: path and query values, headers, cookies, ``Depends``; the socket is the parameter named ``ws`` or
``websocket`` or annotated ``WebSocket``.

When the handler returns, an open connection is closed normally (1000); when it raises, with 1011. A peer that
closes ends ``async for`` and makes ``receive`` raise ``WebSocketDisconnect`` (``recv()`` returns None in the
blocking style). A message larger than ``App(websocket_max_size=...)`` closes the connection with 1009, and with
``App(websocket_idle_timeout=...)`` a peer silent that long is closed with 1001. The engine adapters supply the
transport (``cello.engine``); this module knows no server.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..http.request import Request
from ..http.response import Response, to_response

if TYPE_CHECKING:
    from ..handlers import ThreadPool
    from ..routing.router import Route

__all__ = ["Message", "SyncWebSocket", "WebSocket", "WebSocketDisconnect"]

CONNECTING, OPEN, CLOSED = 0, 1, 2
TEXT, BYTES = 2, 1  # message kinds (RSGI's numbering)

# close codes (RFC 6455 §7.4.1)
NORMAL = 1000
GOING_AWAY = 1001
ABNORMAL = 1006  # never sent: the connection dropped without a close frame
UNSUPPORTED = 1003
POLICY = 1008
TOO_BIG = 1009
INTERNAL_ERROR = 1011

# what the pipeline of a websocket route answers once the session is over: nothing more is sent
SWITCHED = 101


class WebSocketDisconnect(Exception):
    """The connection is closed: by the peer (``code`` is theirs) or by this side."""

    def __init__(self, code: int = NORMAL, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class Message:
    """One received message: ``text`` (str), ``data`` (bytes, or the text as it came), ``json()``."""

    __slots__ = ("kind", "data")

    def __init__(self, kind: int, data: str | bytes) -> None:
        self.kind = kind
        self.data = data

    @property
    def is_text(self) -> bool:
        return self.kind == TEXT

    @property
    def text(self) -> str:
        data = self.data
        return data if isinstance(data, str) else data.decode("utf-8", errors="replace")

    @property
    def bytes(self) -> bytes:
        data = self.data
        return data.encode() if isinstance(data, str) else data

    def json(self) -> Any:
        return orjson.loads(self.data)

    def __repr__(self) -> str:
        return f"<Message {'text' if self.is_text else 'bytes'} {self.data[:60]!r}>"


class Transport(Protocol):
    """What an engine adapter provides for one connection."""

    async def accept(self, subprotocol: str | None, headers: list[tuple[str, str]]) -> None: ...

    async def receive(self) -> tuple[int, str | bytes | None]:
        """``(kind, data)``; kind 0 (data None) when the peer has closed."""
        ...

    async def send(self, data: str | bytes) -> None: ...

    def start_send(self, data: str | bytes) -> Awaitable[None] | None:
        """Begin sending now if the engine can (its future then runs on its own), returning what to await;
        None if it sends only when awaited."""
        ...

    async def close(self, code: int, reason: str) -> None: ...

    async def reject(self, response: Response) -> None:
        """Refuse the handshake with this HTTP answer (as far as the engine can send one)."""
        ...

    async def release(self) -> None:
        """The session is over, whoever closed it: let the engine finish the connection."""
        ...


class WebSocket(Request):
    """An open (or opening) WebSocket connection, and the request that asked for it."""

    __slots__ = ("_io", "_ws_state", "subprotocol", "close_code", "_max_size", "_idle_timeout")
    is_websocket = True

    def _start(self, io: Transport, max_size: int, idle_timeout: float | None) -> None:
        self._io = io
        self._ws_state = CONNECTING
        self.subprotocol: str | None = None
        self.close_code: int | None = None
        self._max_size = max_size
        self._idle_timeout = idle_timeout

    # -- the handshake ------------------------------------------------------------------------------------

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered (``Sec-WebSocket-Protocol``), in its order of preference."""
        offered = self.header("sec-websocket-protocol") or ""
        return [p.strip() for p in offered.split(",") if p.strip()]

    @property
    def accepted(self) -> bool:
        return self._ws_state != CONNECTING

    @property
    def closed(self) -> bool:
        return self._ws_state == CLOSED

    async def accept(self, subprotocol: str | None = None, headers: dict[str, str] | None = None) -> None:
        """Complete the handshake, choosing one of the offered ``subprotocols`` if any. Sending or receiving
        accepts on its own; call this first to choose a subprotocol or add response headers."""
        if self._ws_state != CONNECTING:
            raise RuntimeError("the WebSocket is already accepted")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"the client did not offer the subprotocol {subprotocol!r}")
        await self._io.accept(subprotocol, list((headers or {}).items()))
        self.subprotocol = subprotocol
        self._ws_state = OPEN
        registry = self.app.dispatcher.websockets
        registry.add(self)

    # -- receiving ----------------------------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next message; ``WebSocketDisconnect`` once the connection is closed."""
        if self._ws_state == CONNECTING:
            await self.accept()
        if self._ws_state == CLOSED:
            raise WebSocketDisconnect(self.close_code or NORMAL)
        try:
            if self._idle_timeout is None:
                kind, data = await self._io.receive()
            else:
                kind, data = await asyncio.wait_for(self._io.receive(), self._idle_timeout)
        except TimeoutError:
            await self.close(GOING_AWAY, "idle")
            raise WebSocketDisconnect(GOING_AWAY, "idle") from None
        if data is None or kind == 0:
            self._gone(NORMAL)
            raise WebSocketDisconnect(NORMAL)
        if len(data) > self._max_size:
            await self.close(TOO_BIG, "message too big")
            raise WebSocketDisconnect(TOO_BIG, "message too big")
        return Message(kind, data)

    async def receive_text(self) -> str:
        return (await self.receive()).text

    async def receive_bytes(self) -> bytes:
        return (await self.receive()).bytes

    async def receive_json(self) -> Any:
        message = await self.receive()
        try:
            return message.json()
        except orjson.JSONDecodeError:
            await self.close(UNSUPPORTED, "invalid JSON")
            raise WebSocketDisconnect(UNSUPPORTED, "invalid JSON") from None

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.receive()
            except WebSocketDisconnect:
                return

    # -- sending ------------------------------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        await self._send(text)

    async def send_bytes(self, data: bytes) -> None:
        await self._send(bytes(data))

    async def send_json(self, value: Any, mode: str = "text") -> None:
        data = orjson.dumps(value)
        await self._send(data.decode() if mode == "text" else data)

    async def _send(self, data: str | bytes) -> None:
        if self._ws_state == CONNECTING:
            await self.accept()
        if self._ws_state == CLOSED:
            raise WebSocketDisconnect(self.close_code or NORMAL)
        try:
            await self._io.send(data)
        except WebSocketDisconnect as exc:
            self._gone(exc.code)
            raise

    def start_send(self, message: str | bytes) -> Awaitable[None] | None:
        """Start sending ``message`` (text or bytes) now and return what to await, or None when the engine only
        sends as it is awaited (then use ``send_text`` / ``send_bytes``).

        For fan-out (``cello.realtime.Broadcast``): granian sends each frame on its own runtime, so starting every
        member's send before awaiting any lets them proceed together instead of one engine round trip after the
        other."""
        if self._ws_state != OPEN:
            return None
        return self._io.start_send(message)

    # -- closing ------------------------------------------------------------------------------------------

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Close the connection (a no-op once closed). Before ``accept`` this refuses the handshake (403)."""
        if self._ws_state == CLOSED:
            return
        if self._ws_state == CONNECTING:
            self._ws_state = CLOSED
            self.close_code = code
            await self._io.reject(Response(None, 403))
            return
        self._gone(code)
        try:
            await self._io.close(code, reason)
        except WebSocketDisconnect:
            pass  # the peer is already gone

    def _gone(self, code: int) -> None:
        self._ws_state = CLOSED
        self.close_code = code
        self.app.dispatcher.websockets.discard(self)

    async def serve(self) -> None:
        """Run the route's pipeline for this connection, then end the session (the engine adapters call it)."""
        assert self.route is not None
        try:
            result = await self.route.pipeline(self)
            response = result if isinstance(result, Response) else to_response(result)
        except Exception as exc:
            response = await self.app.dispatcher.handle_exception(self, exc)
        await self.finish(response)

    async def finish(self, response: Response) -> None:
        """After the route's pipeline: refuse a handshake it answered, or close a connection left open."""
        if self._ws_state == CONNECTING:
            self._ws_state = CLOSED
            self.close_code = POLICY
            await self._io.reject(response)
            return
        if self._ws_state == OPEN:
            await self.close(INTERNAL_ERROR if response.status >= 500 else NORMAL)
        await self._io.release()


class SyncWebSocket:
    """A WebSocket for a plain ``def`` handler, which runs in a thread of its own: every call blocks that thread
    until the event loop has done it. Usable from any thread (one handler may send to another's socket).
    Everything else (``headers``, ``params``, ``user``…) is the underlying ``WebSocket``'s."""

    __slots__ = ("socket", "_loop")

    def __init__(self, socket: WebSocket, loop: asyncio.AbstractEventLoop) -> None:
        self.socket = socket
        self._loop = loop

    def _wait(self, coroutine: Any) -> Any:
        if self._loop.is_closed():  # the worker is gone: nothing will ever answer
            coroutine.close()
            raise WebSocketDisconnect(GOING_AWAY)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def accept(self, subprotocol: str | None = None, headers: dict[str, str] | None = None) -> None:
        self._wait(self.socket.accept(subprotocol, headers))

    def recv(self) -> Message | None:
        """The next message, or None once the connection is closed."""
        try:
            return self._wait(self.socket.receive())  # type: ignore[no-any-return]
        except WebSocketDisconnect:
            return None

    def receive(self) -> Message:
        return self._wait(self.socket.receive())  # type: ignore[no-any-return]

    def receive_text(self) -> str:
        return self._wait(self.socket.receive_text())  # type: ignore[no-any-return]

    def receive_bytes(self) -> bytes:
        return self._wait(self.socket.receive_bytes())  # type: ignore[no-any-return]

    def receive_json(self) -> Any:
        return self._wait(self.socket.receive_json())

    # NOTE: sending to a connection that has closed returns False rather than raising, as recv() returns None:
    # in the loop over every client of a chat, one client leaving must not end the sender's own connection
    def send_text(self, text: str) -> bool:
        return self._deliver(self.socket.send_text(text))

    def send_bytes(self, data: bytes) -> bool:
        return self._deliver(self.socket.send_bytes(data))

    def send_json(self, value: Any, mode: str = "text") -> bool:
        return self._deliver(self.socket.send_json(value, mode))

    def _deliver(self, coroutine: Any) -> bool:
        try:
            self._wait(coroutine)
        except WebSocketDisconnect:
            return False
        return True

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        self._wait(self.socket.close(code, reason))

    def __iter__(self) -> Any:
        while (message := self.recv()) is not None:
            yield message

    def __getattr__(self, name: str) -> Any:
        return getattr(self.socket, name)

    def __eq__(self, other: object) -> bool:
        target = other.socket if isinstance(other, SyncWebSocket) else other
        return self.socket is target

    def __hash__(self) -> int:
        return id(self.socket)

    def __repr__(self) -> str:
        return f"<SyncWebSocket {self.socket.path}>"


def websocket_endpoint(route: Route, compile_handler: Callable[..., Any], pool: ThreadPool) -> Any:
    """The innermost step of a websocket route's pipeline: run the handler (a plain ``def`` in a thread of
    ``pool``, with ``SyncWebSocket`` in place of the socket), then end the session."""
    handler = route.handler
    if not inspect.iscoroutinefunction(handler):
        route.handler = _threaded(handler, pool)
    endpoint = compile_handler(route)

    async def session(ws: WebSocket) -> Response:
        try:
            await endpoint(ws)
        except WebSocketDisconnect:
            pass  # the peer left while the handler was reading or writing: an ordinary end
        if ws.accepted:
            # a fresh response each time: middleware on the way out may add headers to it
            switched = Response(None, SWITCHED)
            await ws.finish(switched)
            return switched
        # never accepted: the handler refused (or returned without a word); finish() sends the refusal
        return Response(None, 403)

    return session


def _threaded(handler: Callable[..., Any], pool: ThreadPool) -> Callable[..., Any]:
    """``handler`` as a coroutine function with the same signature, run in ``pool`` with blocking sockets."""

    @functools.wraps(handler)
    async def run(*args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        args = tuple(SyncWebSocket(a, loop) if isinstance(a, WebSocket) else a for a in args)
        kwargs = {k: SyncWebSocket(v, loop) if isinstance(v, WebSocket) else v for k, v in kwargs.items()}
        return await pool.run(functools.partial(handler, *args, **kwargs))

    return run
