"""A cheaper shape for middleware that only looks at the request on the way in and the response on the way out.

The contract stays ``async (request, call_next) -> Response``; a middleware may *also* offer two plain methods:

- ``enter(request)`` — runs before the rest of the chain. Returning a ``Response`` answers at once (the rest of
  the chain and this middleware's ``leave`` are skipped); anything else is a state handed to ``leave``;
- ``leave(request, response, state)`` — runs after, and returns the response (the same, changed, or another).

When several such middleware follow each other in a route's chain, the dispatcher runs them in one loop inside a
single coroutine instead of one coroutine per layer — same order, same semantics (each ``leave`` runs for the
middleware whose ``enter`` ran, innermost first), several microseconds less per request. ``HookMiddleware``
gives such a class its ``__call__``, so it works anywhere a middleware does. A middleware whose hooks are not
usable in some configuration (a rate limiter on a network store must await) says so with ``uses_hooks``.

Any middleware may also offer ``prepare_route(route)``: the app calls it for every route whose chain holds the
middleware while compiling the pipelines, so per-route options are checked (and their work done) at startup.
"""

from __future__ import annotations

from typing import Any

from ..http.response import Response
from ._types import CallNext


class HookMiddleware:
    """Base for middleware written as ``enter``/``leave``; see the module."""

    uses_hooks = True

    def enter(self, request: Any) -> Any:
        return None

    def leave(self, request: Any, response: Response, state: Any) -> Response:
        return response

    async def __call__(self, request: Any, call_next: CallNext) -> Response:
        state = self.enter(request)
        if isinstance(state, Response):
            return state
        return self.leave(request, await call_next(request), state)
