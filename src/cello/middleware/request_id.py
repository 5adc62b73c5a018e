"""Request ids: every request gets one, visible to handlers, responses and every log line of the request.

``X-Request-ID`` is taken from the request when it is a sane token (so a proxy's id carries through), generated
otherwise, put in ``request.context["request_id"]`` (and ``request.id``), echoed in the response header, and
held in a context variable that ``RequestIdLogFilter`` adds to log records as ``record.request_id``.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
import uuid
from typing import Any

from ..http.response import Response
from .base import HookMiddleware

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cello_request_id", default=None)

_SANE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}\Z")
_ids = itertools.count(1)
_prefix = [uuid.uuid4().hex[:20]]


def _new_prefix() -> None:
    _prefix[0] = uuid.uuid4().hex[:20]


# a forked worker must not repeat its parent's ids
os.register_at_fork(after_in_child=_new_prefix)


def _next_id() -> str:
    """A random per-process prefix and a counter: unique, 32 hex digits, and far cheaper than uuid4() (which
    reads the OS's random source on every call). Ids need to be unique, not unguessable."""
    return f"{_prefix[0]}{next(_ids):012x}"


class RequestId(HookMiddleware):
    """``app.enable_request_id()`` / ``app.use(RequestId(header="x-request-id", trust_incoming=True))``."""

    def __init__(self, header: str = "x-request-id", trust_incoming: bool = True) -> None:
        self.header = header.lower()
        self.trust_incoming = trust_incoming

    def enter(self, request: Any) -> Any:
        incoming = request.header(self.header) if self.trust_incoming else None
        request_id = incoming if incoming is not None and _SANE.match(incoming) else _next_id()
        request.context["request_id"] = request_id
        return request_id, current_request_id.set(request_id)

    def leave(self, request: Any, response: Response, state: Any) -> Response:
        request_id, token = state
        current_request_id.reset(token)
        response.raw_headers.append((self.header, request_id))
        return response


class RequestIdLogFilter(logging.Filter):
    """Adds ``request_id`` (or "-") to every record: ``logging.Formatter("%(request_id)s %(message)s")``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True
