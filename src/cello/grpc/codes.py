"""gRPC status codes beside HTTP statuses: the Connect protocol's table, used both ways — a Connect error's HTTP
status, and what an RPC's outcome looks like to middleware written for HTTP (a circuit breaker counting 5xx)."""

from __future__ import annotations

import grpc

__all__ = ["HTTP_STATUS", "INTERNAL_MESSAGE", "UNDECODABLE", "code_of_status", "connect_code"]

# what a call is told when its method failed unexpectedly (outside debug mode), or its message did not decode
INTERNAL_MESSAGE = "Internal server error."
UNDECODABLE = "The request message does not decode as the method's message type."

# connectrpc.com/docs/protocol#error-codes
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}  # fmt: skip
# the other way, where several codes share a status: the most general of them
_CODE_OF_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.ABORTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED, 499: grpc.StatusCode.CANCELLED, 500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
}  # fmt: skip


def connect_code(code: grpc.StatusCode) -> str:
    """The Connect name of a status code: ``invalid_argument``; CANCELLED is spelled ``canceled``."""
    return "canceled" if code is grpc.StatusCode.CANCELLED else str(code.name).lower()


def code_of_status(status: int) -> grpc.StatusCode:
    """The code an HTTP status stands for (UNKNOWN for one without a counterpart)."""
    return _CODE_OF_STATUS.get(status, grpc.StatusCode.UNKNOWN)
