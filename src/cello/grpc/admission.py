"""Cello's HTTP middleware around RPCs: ``app.grpc_service(servicer, middleware=[RateLimit(...),
CircuitBreaker(...)])`` runs those middleware around every call of the service — native gRPC, Connect and gRPC-Web
alike — after the authenticators and guards (so a rate limit keyed on ``"user"`` sees the caller).

A middleware sees the call as a request (its metadata as headers, the method's path as ``request.path`` and as
``request.route.path``, the peer as the client address) and its outcome as a response whose status is the code's
HTTP counterpart (``cello.grpc.codes``): ``INTERNAL`` is a 500, so a circuit breaker counts it as a failure,
``INVALID_ARGUMENT`` a 400, so it does not. A middleware that answers by itself refuses the call: its status
becomes the code (429 → ``RESOURCE_EXHAUSTED``, 503 → ``UNAVAILABLE``, …), its problem's detail the message, and
its ``Retry-After`` header trailing metadata (``retry-after``).

The chain runs in a task of its own, waiting for the call to end: that lets a middleware written as
``await call_next(request)`` wrap a stream, and a plain method, running in a thread, end its call from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc
import orjson

from ..http.response import Response
from .codes import HTTP_STATUS, code_of_status

__all__ = ["Admission", "Passage", "Refused"]

logger = logging.getLogger("cello.grpc")

Next = Callable[[Any], Coroutine[Any, Any, Response]]


class Refused(Exception):
    """A middleware answered the call by itself: the status it is answered with."""

    def __init__(self, code: grpc.StatusCode, message: str, metadata: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = metadata


class Passage:
    """An admitted call: ``finish(code)`` ends it for the middleware (from any thread, once)."""

    __slots__ = ("loop", "finished", "chain")

    def __init__(self, loop: asyncio.AbstractEventLoop, finished: asyncio.Future[Response],
                 chain: asyncio.Task[Response]) -> None:  # fmt: skip
        self.loop = loop
        self.finished = finished
        self.chain = chain

    def finish(self, code: grpc.StatusCode | None) -> None:
        status = HTTP_STATUS.get(code, 499) if code is not None else 499
        self.loop.call_soon_threadsafe(self._end, status)

    def _end(self, status: int) -> None:
        if not self.finished.done():
            self.finished.set_result(Response(status=status))


class Admission:
    """A service's middleware, run around each of its calls."""

    def __init__(self, layers: Sequence[Any]) -> None:
        self.layers = list(layers)

    async def admit(self, request: Any) -> Passage:
        """Run the middleware up to the call; raises ``Refused`` when one of them answers instead."""
        loop = asyncio.get_running_loop()
        admitted: asyncio.Future[None] = loop.create_future()
        finished: asyncio.Future[Response] = loop.create_future()

        async def last(_request: Any) -> Response:
            admitted.set_result(None)
            return await finished

        chain: asyncio.Task[Response] = loop.create_task(_chained(self.layers, last)(request))
        await asyncio.wait((admitted, chain), return_when=asyncio.FIRST_COMPLETED)
        if not admitted.done():
            raise _refusal(chain.result())  # a middleware's own answer (or its exception, raised here)
        chain.add_done_callback(_logged)
        return Passage(loop, finished, chain)


def _chained(layers: Sequence[Any], last: Next) -> Next:
    call: Next = last
    for layer in reversed(layers):
        call = _layered(layer, call)
    return call


def _layered(layer: Any, inner: Next) -> Next:
    async def call(request: Any) -> Response:
        return await layer(request, inner)  # type: ignore[no-any-return]

    return call


def _refusal(response: Response) -> Refused:
    message = ""
    try:
        problem = orjson.loads(response.body) if response.body else {}
        message = str(problem.get("detail") or problem.get("title") or "")
    except (orjson.JSONDecodeError, AttributeError):  # not a problem document: the status says it all
        pass
    metadata = [(name, value) for name, value in response.raw_headers if name.lower() == "retry-after"]
    return Refused(code_of_status(response.status), message or f"Refused ({response.status}).", metadata)


def _logged(chain: asyncio.Task[Response]) -> None:
    if not chain.cancelled() and chain.exception() is not None:
        logger.error("a gRPC service's middleware failed after its call", exc_info=chain.exception())
