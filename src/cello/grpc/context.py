"""What a servicer's method gets as its context when called over Connect, gRPC-Web or gRPC on the app's own
port: the ``grpc.ServicerContext`` calls a method makes — ``abort``, ``abort_with_status`` (rich error details
from grpcio-status), ``set_code``, ``set_details``, ``invocation_metadata`` (the request's headers), ``peer``,
``time_remaining``, ``set_trailing_metadata``, ``send_initial_metadata`` — awaitable where ``grpc.aio``'s are, for
``async def`` methods."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc

from ..http.request import Request

__all__ = ["AsyncWebContext", "CallError", "WebContext"]


class CallError(Exception):
    """How a call ended, when not with OK: its code, message and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, message: str = "", metadata: Sequence[tuple[str, Any]] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = list(metadata)


class WebContext:
    """The ``grpc.ServicerContext`` of a call over Connect or gRPC-Web, for a plain method."""

    def __init__(self, request: Request, deadline: float | None) -> None:
        self._request = request
        self._deadline = deadline  # time.monotonic() by which the call must end
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: list[tuple[str, Any]] = []
        self.initial: list[tuple[str, Any]] = []
        self.final: list[tuple[str, str]] = []  # native gRPC's status lines, sent as HTTP trailers
        self._done = False

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._request.headers.items())

    def peer(self) -> str:
        client = self._request.client
        if client is None:
            return "unknown"
        return f"ipv6:[{client.host}]:{client.port}" if ":" in client.host else f"ipv4:{client.host}:{client.port}"

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self._trailing = list(metadata)

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return tuple(self._trailing)

    def send_initial_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self.initial = list(metadata)

    def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[Any] = ()) -> None:
        raise CallError(code, details, [*self._trailing, *trailing_metadata])

    def abort_with_status(self, status: Any) -> None:
        raise CallError(status.code, status.details, [*self._trailing, *status.trailing_metadata])

    def is_active(self) -> bool:
        return not self._done

    def cancelled(self) -> bool:
        return self._done and self._code is grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        return self._done

    def auth_context(self) -> dict[str, Any]:
        return {}

    def set_compression(self, compression: Any) -> None:
        """Answers are sent uncompressed: nothing to set."""

    def disable_next_message_compression(self) -> None:
        """Answers are sent uncompressed: nothing to disable."""


class AsyncWebContext(WebContext):
    """The context of an ``async def`` method: ``abort`` and ``send_initial_metadata`` are awaited, as in
    ``grpc.aio``."""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[Any] = ()) -> None:  # type: ignore[override]
        super().abort(code, details, trailing_metadata)

    async def abort_with_status(self, status: Any) -> None:  # type: ignore[override]
        super().abort_with_status(status)

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:  # type: ignore[override]
        super().send_initial_metadata(metadata)
