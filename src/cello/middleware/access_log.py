"""Structured access logging through the stdlib ``logging`` module (logger ``cello.access``).

One record per request, after the response is built: method, route template (bounded cardinality: ``/users/{id}``
rather than every id), path, status, duration, response bytes, client address and request id. ``format="json"``
puts them in the message as one JSON object; ``"text"`` as ``key=value`` pairs; either way they are also record
attributes (``record.http``) for handlers that format their own. Disabled means not installed: no cost at all.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import orjson

from .. import telemetry
from ..http.response import Response
from .base import HookMiddleware

logger = logging.getLogger("cello.access")


class AccessLog(HookMiddleware):
    """``app.enable_logging(format="json")`` / ``app.use(AccessLog(...))``."""

    def __init__(
        self,
        format: Literal["json", "text"] = "json",
        logger_name: str = "cello.access",
        level: int = logging.INFO,
        skip_paths: tuple[str, ...] = (),
    ) -> None:
        if format not in ("json", "text"):
            raise ValueError("format must be 'json' or 'text'")
        self.format = format
        self.logger = logging.getLogger(logger_name)
        self.level = level
        self.skip_paths = frozenset(skip_paths)

    def enter(self, request: Any) -> Any:
        if not self.logger.isEnabledFor(self.level) or request.path in self.skip_paths:
            return None
        return time.perf_counter()

    def leave(self, request: Any, response: Response, state: Any) -> Response:
        if state is not None:
            self._log(request, response.status, response, time.perf_counter() - state)
        return response

    def _log(self, request: Any, status: int, response: Response | None, duration: float) -> None:
        # NOTE: a request cancelled mid-way (a timeout outside this middleware) is not logged here
        client = request.client
        route = request.route
        fields = {
            "method": request.method,
            "route": route.path if route is not None and not route.meta.get("internal") else None,
            "path": request.path,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "bytes": len(response.body) if response is not None and response.kind == 0 else None,
            "client": client.host if client else None,
            "request_id": request.context.get("request_id"),
        }
        if telemetry.tracer is not None:  # the trace this request is part of (cello.telemetry)
            ids = telemetry.current_ids()
            if ids is not None:
                fields["trace_id"], fields["span_id"] = ids
        if self.format == "json":
            message = orjson.dumps(fields).decode()
        else:
            message = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        self.logger.log(self.level, message, extra={"http": fields})
