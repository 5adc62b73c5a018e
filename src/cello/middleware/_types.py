"""The middleware contract's types: ``async (request, call_next) -> Response``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..http.response import Response

CallNext = Callable[[Any], Awaitable[Response]]
