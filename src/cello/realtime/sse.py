"""Server-Sent Events: a response fed by a generator, one event per item, kept alive with comments.

    @app.get("/clock")
    async def clock(last_event_id: Annotated[str | None, Header()] = None):
        async def ticks():
            n = int(last_event_id or 0)
            try:
                while True:
                    n += 1
                    yield ServerSentEvent({"n": n}, event="tick", id=str(n))
                    await asyncio.sleep(1)
            finally:
                ...                              # runs when the client goes away
        return EventSourceResponse(ticks(), ping=15)

Items may be ``ServerSentEvent`` (data, event, id, retry, comment), ``str`` (the data), or anything JSON-able (the
data, serialized with orjson). Sync generators work too (they advance in a thread). When no item has come for
``ping`` seconds a comment line (``: ping``) keeps proxies and browsers from timing the stream out. A browser that
reconnects sends the last id it saw as ``Last-Event-ID`` (a header parameter, as above). When the client goes away
the stream stops at once — an async generator is cancelled where it waits, so its ``finally`` runs promptly; a
sync one is closed after its current step.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import orjson

from ..http.response import HeadersArg, StreamingResponse

__all__ = ["EventSourceResponse", "ServerSentEvent", "end_streams"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PING = b": ping\n\n"
_STOP: Any = object()


class ServerSentEvent:
    """One event. ``data``: str, or anything JSON-able (serialized with orjson); ``event``: its type (the
    browser's ``addEventListener`` name); ``id``: what the browser sends back as ``Last-Event-ID``; ``retry``:
    milliseconds the browser waits before reconnecting; ``comment``: a line the browser ignores."""

    __slots__ = ("data", "event", "id", "retry", "comment")

    def __init__(
        self,
        data: Any = None,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        for name, value in (("event", event), ("id", id)):
            # NOTE: a line break would end the field early and let the rest pose as another field or event
            if value is not None and (_LINE_BREAK.search(value) or "\x00" in value):
                raise ValueError(f"an event {name} cannot contain line breaks or NUL")
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry
        self.comment = comment

    def encode(self) -> bytes:
        lines: list[str] = []
        if self.comment is not None:
            lines.extend(": " + line for line in _LINE_BREAK.split(self.comment))
        if self.id is not None:
            lines.append("id: " + self.id)
        if self.event is not None:
            lines.append("event: " + self.event)
        if self.retry is not None:
            lines.append(f"retry: {int(self.retry)}")
        if self.data is not None:
            data = self.data
            if not isinstance(data, str):
                data = data.decode() if isinstance(data, bytes) else orjson.dumps(data).decode()
            lines.extend("data: " + line for line in _LINE_BREAK.split(data))
        return ("\n".join(lines) + "\n\n").encode()


def _encode_item(item: Any) -> bytes:
    if isinstance(item, ServerSentEvent):
        return item.encode()
    return ServerSentEvent(item).encode()


class EventSourceResponse(StreamingResponse):
    """A ``text/event-stream`` response from a sync or async iterable of events (see the module).

    ``ping``: seconds of silence before a keep-alive comment (None: never). ``retry``: milliseconds the browser
    should wait before reconnecting, sent first."""

    media_type = "text/event-stream"  # what the OpenAPI document says a route returning one answers

    __slots__ = ()

    def __init__(
        self,
        content: Iterable[Any] | AsyncIterable[Any],
        *,
        ping: float | None = 15.0,
        retry: int | None = None,
        status: int = 200,
        headers: HeadersArg = None,
    ) -> None:
        super().__init__(_event_stream(content, ping, retry), status, headers, media_type="text/event-stream")
        own = {key for key, _ in self.raw_headers}
        for key, value in (("cache-control", "no-cache"), ("x-accel-buffering", "no")):
            if key not in own:  # NOTE: no buffering in proxies (nginx honours X-Accel-Buffering), no caching
                self.raw_headers.append((key, value))


# the streams open in this process: a server that is shutting down ends them (end_streams), so it need not wait
# for clients that would otherwise listen forever
_open_streams: set[asyncio.Event] = set()


def end_streams() -> None:
    """End every open event stream of this process (the server is shutting down); their generators are closed."""
    for stop in list(_open_streams):
        stop.set()


async def _event_stream(content: Any, ping: float | None, retry: int | None) -> AsyncIterator[bytes]:
    if retry is not None:
        yield f"retry: {int(retry)}\n\n".encode()
    source: AsyncIterator[Any] | None = aiter(content) if hasattr(content, "__aiter__") else None
    items: Iterator[Any] | None = None if source is not None else iter(content)
    pending: asyncio.Future[Any] | None = None
    stop = asyncio.Event()
    stopping = asyncio.ensure_future(stop.wait())
    _open_streams.add(stop)
    try:
        while True:
            if pending is None:
                if source is not None:
                    pending = asyncio.ensure_future(anext(source, _STOP))
                else:
                    pending = asyncio.ensure_future(asyncio.to_thread(next, items, _STOP))  # type: ignore[arg-type]
            done, _ = await asyncio.wait({pending, stopping}, timeout=ping, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                return
            if not done:
                yield _PING  # nothing to say yet: keep the connection (and every proxy on the way) alive
                continue
            item = pending.result()
            pending = None
            if item is _STOP:
                return
            yield _encode_item(item)
    finally:
        _open_streams.discard(stop)
        stopping.cancel()
        await _close(source, items, pending)


async def _close(source: Any, items: Any, pending: asyncio.Future[Any] | None) -> None:
    """Stop the producer: the client left, the stream ended or the server is shutting down."""
    if pending is not None and not pending.done():
        if source is not None:
            pending.cancel()  # raises CancelledError where the async generator waits: its finally runs now
            await asyncio.gather(pending, return_exceptions=True)
        else:
            # a sync generator cannot be interrupted mid-step; it is closed once the step it is in returns
            await asyncio.gather(asyncio.shield(pending), return_exceptions=True)
    closer = getattr(source, "aclose", None) if source is not None else getattr(items, "close", None)
    if closer is not None:
        result = closer()
        if asyncio.iscoroutine(result):
            await result
