"""What both engine faces share: body-size decisions, file-response headers, chunk iteration."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Iterator
from typing import Any, TypeVar

from ..http.exceptions import BodyTimeout, PayloadTooLarge

T = TypeVar("T")

# How to obtain a request body, decided from headers before reading a byte of it.
NO_BODY, READ_ALL, READ_CHUNKS, TOO_LARGE, BAD_LENGTH = range(5)


class BodyClock:
    """Deadlines for reading request bodies, without a timer per request.

    A read registers its task and deadline for the length of one await; one ticker task per event loop wakes every
    ``TICK`` seconds, while reads are waiting, and cancels those past their deadline, which the reader turns into
    ``BodyTimeout``. NOTE: ``asyncio.timeout()`` costs a few microseconds per use (a timer on the loop's heap);
    this costs a dict entry, on every POST. The deadline is kept to within ``TICK``.
    """

    TICK = 0.5

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.waiting: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None

    def deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.timeout

    async def read(self, awaitable: Awaitable[T], deadline: float) -> T:
        task = asyncio.current_task()
        assert task is not None
        self.waiting[task] = deadline
        ticker = self._ticker
        if ticker is None or ticker.done() or ticker.get_loop() is not task.get_loop():
            self._ticker = task.get_loop().create_task(self._tick())
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task not in self.expired:
                raise
            self.expired.discard(task)
            task.uncancel()
            raise BodyTimeout() from None
        finally:
            self.waiting.pop(task, None)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:  # idle: the ticker ends, and the next read starts another
            await asyncio.sleep(self.TICK)
            now = loop.time()
            for task, deadline in list(self.waiting.items()):
                if deadline <= now and task not in self.expired and task.get_loop() is loop:
                    self.expired.add(task)
                    task.cancel()


class BodyTooLarge(PayloadTooLarge):
    def __init__(self) -> None:
        super().__init__("The request body is larger than this endpoint accepts.")


def body_plan(content_length: str | None, transfer_encoding: str | None, http_version: str, limit: int) -> int:
    if content_length is not None:
        if not (content_length.isascii() and content_length.isdigit()):
            return BAD_LENGTH
        length = int(content_length)
        if length > limit:
            return TOO_LARGE
        return READ_ALL if length else NO_BODY
    # HTTP/2 and 3 may carry a body with neither header: only the stream's end tells
    if transfer_encoding is not None or http_version[0] in "23":
        return READ_CHUNKS
    return NO_BODY


def file_headers(response: Any, status: int, span: tuple[int, int] | None) -> list[tuple[str, str]]:
    headers = list(response.raw_headers)
    if status == 206 and span is not None:
        headers.append(("content-range", f"bytes {span[0]}-{span[1] - 1}/{response.size}"))
        headers.append(("content-length", str(span[1] - span[0])))
    elif status == 416:
        headers = [(k, v) for k, v in headers if k != "content-type"]
        headers.append(("content-range", f"bytes */{response.size}"))
    elif status == 200:
        headers.append(("content-length", str(response.size)))
    return headers


async def iterate_chunks(iterator: Any, pool: Any) -> AsyncGenerator[bytes, None]:
    """Yield bytes from a sync or async iterable of str/bytes; sync ones advance in the thread pool."""
    if hasattr(iterator, "__aiter__"):
        async for chunk in iterator:
            yield _as_bytes(chunk)
        return
    sync_iter: Iterator[Any] = iter(iterator)
    try:
        while True:
            chunk = await pool.run(_next_or_stop, sync_iter)
            if chunk is _STOP:
                return
            yield _as_bytes(chunk)
    finally:
        close = getattr(sync_iter, "close", None)
        if close is not None:
            close()


async def close_iterator(iterator: Any) -> None:
    """Run a generator's ``finally`` when the client leaves mid-stream."""
    closer = getattr(iterator, "aclose", None) or getattr(iterator, "close", None)
    if closer is not None:
        result = closer()
        if inspect.isawaitable(result):
            await result


_STOP: Any = object()


def _next_or_stop(iterator: Iterator[Any]) -> Any:
    # StopIteration cannot cross a Future, so the end is signalled with a sentinel
    return next(iterator, _STOP)


def _as_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"a streamed chunk must be str or bytes, not {type(chunk).__name__}")


def is_empty_body_status(status: int) -> bool:
    return status < 200 or status in (204, 304)
