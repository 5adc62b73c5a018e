"""Limits: request body size and handler time.

The body limit proper is enforced by the engine adapter before a byte of the body is read (``App(max_body_size=)``,
a route's ``body_limit=``, ``app.enable_body_limit(n)``): a declared Content-Length over it is refused at once,
a chunked body as soon as it passes it. ``BodyLimit`` as a middleware narrows that for a blueprint or a route.
``Timeout`` answers 504 when a handler takes longer than allowed; an async handler is cancelled, a sync one in the
thread pool runs to its end in the background (threads cannot be interrupted), its result discarded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..http.exceptions import HTTPException, PayloadTooLarge
from ..http.response import ProblemResponse, Response
from ._types import CallNext


class BodyLimit:
    """``bp.use(BodyLimit(64 * 1024))``: refuse larger bodies with 413 on these routes."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes

    async def __call__(self, request: Any, call_next: CallNext) -> Response:
        declared = request.header("content-length")
        too_large = (declared is not None and declared.isdigit() and int(declared) > self.max_bytes) or len(
            request._body
        ) > self.max_bytes
        if too_large:
            error = PayloadTooLarge(f"The request body is larger than {self.max_bytes} bytes.")
            return ProblemResponse.from_exception(error, request.path)
        return await call_next(request)


class Timeout:
    """``app.use(Timeout(5.0))``: 504 problem+json when the rest of the chain takes longer than ``seconds``.
    WebSocket connections are not timed (use ``App(websocket_idle_timeout=...)`` for silent peers)."""

    # the framework's own endpoints (metrics, health, OpenAPI, static files) are left alone (cello.dispatch)
    framework_routes = False

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("seconds must be > 0")
        self.seconds = seconds

    async def __call__(self, request: Any, call_next: CallNext) -> Response:
        if request.is_websocket:
            return await call_next(request)  # a connection lives as long as it needs; its handshake is quick
        try:
            async with asyncio.timeout(self.seconds):
                return await call_next(request)
        except TimeoutError:
            error = HTTPException(504, f"The request took longer than {self.seconds:g} seconds.")
            return ProblemResponse.from_exception(error, request.path)
