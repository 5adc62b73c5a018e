"""Broadcast: channels that reach every subscriber in every worker and on every machine, and WebSocket rooms.

    hub = Broadcast(RedisStore("redis://…"))       # or Broadcast() — memory: one process
    app.on_shutdown(hub.close)

    @app.websocket("/chat/{room}")
    async def chat(ws, room: str):
        await hub.join(room, ws)                     # everything published to the room reaches this socket
        try:
            async for message in ws:
                await hub.publish(room, f"{ws.user.id}: {message.text}")
        finally:
            await hub.leave(room, ws)

    async for message in hub.subscribe("news"):   # any coroutine: an SSE stream, a background task…
        ...

Messages are text (``str``), binary (``bytes``) or anything JSON-able (sent as JSON text). The store carries them
between processes (``Store.publish`` / ``subscribe``: Redis pub/sub for ``RedisStore``); inside one process a
channel has one store subscription however many local subscribers and room members it has, and fans each
message out to them. Delivery is at most once, like the pub/sub underneath: a process that is not subscribed
when a message is published does not get it later. A subscriber or socket that cannot keep up loses its oldest
queued messages (logged) rather than stalling the others; a socket that fails to take a message leaves its room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..stores.base import Store, StoreUnavailable
from ..stores.memory import MemoryStore

__all__ = ["Broadcast"]

logger = logging.getLogger("cello.broadcast")

_TEXT, _BYTES = b"t", b"b"


def _encode(message: Any) -> bytes:
    if isinstance(message, str):
        return _TEXT + message.encode()
    if isinstance(message, (bytes, bytearray, memoryview)):
        return _BYTES + bytes(message)
    return _TEXT + orjson.dumps(message)


def _decode(payload: bytes) -> str | bytes:
    return payload[1:].decode() if payload[:1] == _TEXT else payload[1:]


class _Channel:
    """One channel in this process: its store subscription and everyone here who listens to it."""

    __slots__ = ("queues", "sockets", "listener", "ready")

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[str | bytes]] = set()
        self.sockets: set[Any] = set()
        self.listener: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # set once the store subscription is in place

    @property
    def empty(self) -> bool:
        return not (self.queues or self.sockets)


class Broadcast:
    """A publish/subscribe hub over a store. ``queue_size``: messages a slow subscriber may fall behind by."""

    def __init__(self, store: Store | None = None, *, prefix: str = "broadcast:", queue_size: int = 1000) -> None:
        self.store = store if store is not None else MemoryStore()
        self.prefix = prefix
        self.queue_size = queue_size
        self._channels: dict[str, _Channel] = {}

    # -- publishing ---------------------------------------------------------------------------------------

    async def publish(self, channel: str, message: Any) -> None:
        """Send ``message`` to every subscriber and room member of ``channel``, in every process."""
        await self.store.publish(self.prefix + channel, _encode(message))

    # -- subscribing --------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscription(self, channel: str) -> AsyncIterator[AsyncIterator[str | bytes]]:
        """``async with hub.subscription(ch) as messages:`` — subscribed once the block is entered, so nothing
        published after that point is missed."""
        queue: asyncio.Queue[str | bytes] = asyncio.Queue(self.queue_size)
        state = await self._open(channel)
        state.queues.add(queue)

        async def messages() -> AsyncIterator[str | bytes]:
            while True:
                yield await queue.get()

        try:
            yield messages()
        finally:
            state.queues.discard(queue)
            await self._release(channel)

    async def subscribe(self, channel: str) -> AsyncIterator[str | bytes]:
        """The messages published to ``channel`` from the first iteration on; leave the loop to unsubscribe."""
        async with self.subscription(channel) as messages:
            async for message in messages:
                yield message

    async def join(self, room: str, socket: Any) -> None:
        """Make ``socket`` (a WebSocket) a member of ``room``: it receives what is published there."""
        state = await self._open(room)
        state.sockets.add(socket)

    async def leave(self, room: str, socket: Any) -> None:
        state = self._channels.get(room)
        if state is not None:
            state.sockets.discard(socket)
            await self._release(room)

    def members(self, room: str) -> set[Any]:
        """The sockets of ``room`` connected to this process."""
        state = self._channels.get(room)
        return set(state.sockets) if state is not None else set()

    async def close(self) -> None:
        """Stop listening everywhere (at shutdown); subscribers' loops end."""
        for channel in list(self._channels):
            state = self._channels.pop(channel)
            if state.listener is not None:
                state.listener.cancel()
                await asyncio.gather(state.listener, return_exceptions=True)

    # -- the one store subscription per channel -----------------------------------------------------------

    async def _open(self, channel: str) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            state.listener = asyncio.ensure_future(self._listen(channel, state))
        if not state.ready.is_set():
            # NOTE: wait until the store subscription is in place, so that a message published right after
            # subscribe() or join() returns is not missed
            assert state.listener is not None
            waiter = asyncio.ensure_future(state.ready.wait())
            await asyncio.wait({waiter, state.listener}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if not state.ready.is_set():
                self._channels.pop(channel, None)
                state.listener.result()  # raises what went wrong (StoreUnavailable)
        return state

    async def _release(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is not None and state.empty:
            del self._channels[channel]
            if state.listener is not None:
                state.listener.cancel()
                await asyncio.gather(state.listener, return_exceptions=True)

    async def _listen(self, channel: str, state: _Channel) -> None:
        try:
            async with self.store.subscription(self.prefix + channel) as messages:
                state.ready.set()
                async for payload in messages:
                    await self._deliver(channel, state, _decode(payload))
        except StoreUnavailable:
            logger.error("broadcast channel %r lost its store; its subscribers get nothing more", channel)
            raise

    async def _deliver(self, channel: str, state: _Channel, message: str | bytes) -> None:
        for queue in list(state.queues):
            if queue.full():
                queue.get_nowait()
                logger.warning("a subscriber of %r is too slow; its oldest message was dropped", channel)
            queue.put_nowait(message)
        # NOTE: on granian every member's send is started before any is awaited: each runs on the engine's own
        # runtime, so they proceed together. ASGI servers send as they are awaited (each only buffers the frame):
        # there one send follows the other, and no coroutine is made before its turn (a thousand waiting ones
        # cost garbage-collector time that showed in the latency tail).
        started, later = [], []
        for socket in list(state.sockets):
            start = getattr(socket, "start_send", None)
            pending = start(message) if start is not None else None
            if pending is None:
                later.append(socket)
            else:
                started.append((socket, pending))
        for socket, pending in started:
            try:
                await pending
            except Exception:
                state.sockets.discard(socket)  # gone or broken: it leaves the room
        for socket in later:
            try:
                await (socket.send_text(message) if isinstance(message, str) else socket.send_bytes(message))
            except Exception:
                state.sockets.discard(socket)
