"""The wire formats of Connect, gRPC-Web and gRPC on the app's own port: which protocol a request speaks, its
deadline, its enveloped messages (a flags byte, a 4-byte length, the message; gzip-compressed when flagged), and
the answers that end a call — Connect's error JSON and end-of-stream envelope, gRPC-Web's trailer frame, gRPC's
status lines. The framing is five bytes: written here rather than borrowed from connectrpc, whose codecs are
private API and which serves its own generated classes, not grpcio's servicers."""

from __future__ import annotations

import base64
import gzip
import time
import zlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import grpc
import orjson
from google.protobuf import json_format

from ..http.request import Request
from ..http.response import Response, StreamingResponse
from .codes import HTTP_STATUS, UNDECODABLE, connect_code
from .context import CallError

__all__ = ["CONNECT", "CONNECT_STREAM", "GRPC", "GRPC_WEB", "PROTOCOLS", "as_headers", "deadline_of", "decoded",
           "encoded", "end_of_stream", "envelope", "failed", "grpc_status_lines", "grpc_web_trailer",
           "protocol_of", "request_messages"]  # fmt: skip

DETAILS_KEY = "grpc-status-details-bin"

# protocols, by the Content-Type's media type: (protocol, codec)
CONNECT, CONNECT_STREAM, GRPC_WEB, GRPC = "connect", "connect-stream", "grpc-web", "grpc"
PROTOCOLS = {
    "application/proto": (CONNECT, "proto"), "application/json": (CONNECT, "json"),
    "application/connect+proto": (CONNECT_STREAM, "proto"), "application/connect+json": (CONNECT_STREAM, "json"),
    "application/grpc-web": (GRPC_WEB, "proto"), "application/grpc-web+proto": (GRPC_WEB, "proto"),
    "application/grpc-web+json": (GRPC_WEB, "json"),
    "application/grpc": (GRPC, "proto"), "application/grpc+proto": (GRPC, "proto"),
    "application/grpc+json": (GRPC, "json"),
}  # fmt: skip
GRPC_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def protocol_of(request: Request) -> tuple[str, str] | None:
    """The call's protocol and message codec, by its Content-Type; None when it names neither."""
    return PROTOCOLS.get(request.content_type.partition(";")[0].strip().lower())


def deadline_of(request: Request, protocol: str) -> float | None:
    """The call's deadline (``time.monotonic()``) from ``connect-timeout-ms`` or ``grpc-timeout``, or None."""
    if protocol in (GRPC_WEB, GRPC):
        value = request.header("grpc-timeout")
        if value is None:
            return None
        amount, unit = value[:-1], value[-1:]
        if not amount.isdigit() or len(amount) > 8 or unit not in GRPC_TIMEOUT_UNITS:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"grpc-timeout {value!r} is not a timeout")
        return time.monotonic() + int(amount) * GRPC_TIMEOUT_UNITS[unit]
    value = request.header("connect-timeout-ms")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 10:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"connect-timeout-ms {value!r} is not a timeout")
    return time.monotonic() + int(value) / 1000


async def request_messages(request: Request, protocol: str) -> list[bytes]:
    """The bytes of the request's messages: the body (Connect unary), or each envelope in it; decompressed."""
    body = bytes(await request.body())
    if protocol == CONNECT:
        return [_decompressed(body, request.header("content-encoding"))]
    messages, at = [], 0
    encoding = request.header("connect-content-encoding" if protocol == CONNECT_STREAM else "grpc-encoding")
    while at < len(body):
        end = at + 5 + int.from_bytes(body[at + 1 : at + 5], "big")
        if end > len(body) or body[at] & ~0x01:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "The request body is not a series of enveloped messages.")
        data = body[at + 5 : end]
        messages.append(_decompressed(data, encoding or "unknown") if body[at] & 0x01 else data)
        at = end
    return messages


def _decompressed(data: bytes, encoding: str | None) -> bytes:
    if encoding in (None, "identity"):
        return data
    if encoding == "gzip":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "The request body is not valid gzip.") from None
    raise CallError(grpc.StatusCode.UNIMPLEMENTED, f"Compression {encoding!r} is not supported (gzip, identity).")


def decoded(message_type: Any, data: bytes, codec: str) -> Any:
    try:
        if codec == "json":
            return json_format.Parse(data or b"{}", message_type(), ignore_unknown_fields=True)
        return message_type.FromString(data)
    except Exception:  # protobuf's DecodeError, json_format's ParseError, a text that is not UTF-8
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE) from None


def encoded(message: Any, codec: str) -> bytes:
    if codec == "json":
        return orjson.dumps(json_format.MessageToDict(message))
    return bytes(message.SerializeToString())


def envelope(data: bytes, flags: int = 0) -> bytes:
    return bytes((flags,)) + len(data).to_bytes(4, "big") + data


def failed(protocol: str, codec: str, error: CallError, *, trailers: bool = False) -> Response:
    """The answer to a call that failed before any reply, in its protocol (``trailers``: whether the server can
    send HTTP trailers, for native gRPC)."""
    if protocol == CONNECT:
        body = orjson.dumps(_error_json(error))
        headers = as_headers([(name, value) for name, value in error.metadata if name != DETAILS_KEY],
                              prefix="trailer-")  # fmt: skip
        return Response(body, status=HTTP_STATUS.get(error.code, 500), headers=headers, media_type="application/json")
    if protocol == CONNECT_STREAM:
        content_type = f"application/connect+{codec}"
        return Response(envelope(orjson.dumps(end_of_stream(error, [])), 0x02), media_type=content_type)
    # NOTE: gRPC's trailers-only answer: the status in the headers; gRPC-Web repeats it as a trailer frame, for
    # clients that read only the body
    headers = grpc_status_lines(error.code, error.message, error.metadata)
    if protocol == GRPC:
        if trailers:  # NOTE: ASGI cannot end a stream with its headers: the status follows an empty body
            return StreamingResponse((b"",), media_type=f"application/grpc+{codec}", trailers=lambda: headers)
        return Response(headers=headers, media_type=f"application/grpc+{codec}")
    return Response(grpc_web_trailer(error.code, error.message, error.metadata), headers=headers,
                    media_type=f"application/grpc-web+{codec}")  # fmt: skip


def _error_json(error: CallError) -> dict[str, Any]:
    answer: dict[str, Any] = {"code": connect_code(error.code)}
    if error.message:
        answer["message"] = error.message
    details = _details(error.metadata)
    if details:
        answer["details"] = details
    return answer


def _details(metadata: Sequence[tuple[str, Any]]) -> list[dict[str, str]]:
    """Rich error details (a ``google.rpc.Status`` in ``grpc-status-details-bin``) as Connect's error details."""
    from google.rpc import status_pb2

    data = next((value for name, value in metadata if name == DETAILS_KEY), None)
    if not isinstance(data, bytes):
        return []
    status = status_pb2.Status.FromString(data)
    return [{"type": detail.TypeName(), "value": base64.b64encode(detail.value).decode().rstrip("=")}
            for detail in status.details]  # fmt: skip


def end_of_stream(error: CallError | None, trailing: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    end: dict[str, Any] = {}
    if error is not None:
        end["error"] = _error_json(error)
        trailing = [(name, value) for name, value in error.metadata if name != DETAILS_KEY]
    metadata: dict[str, list[str]] = {}
    for name, value in as_headers(trailing):
        metadata.setdefault(name, []).append(value)
    if metadata:
        end["metadata"] = metadata
    return end


def grpc_status_lines(code: grpc.StatusCode, message: str, metadata: Sequence[tuple[str, Any]],
                      ) -> list[tuple[str, str]]:  # fmt: skip
    """How gRPC and gRPC-Web end a call: its status and message, then its trailing metadata."""
    lines = [("grpc-status", str(code.value[0])), ("grpc-message", _percent_encoded(message))]
    lines.extend(as_headers(metadata))
    return lines


def grpc_web_trailer(code: grpc.StatusCode, message: str, metadata: Sequence[tuple[str, Any]]) -> bytes:
    """gRPC-Web's trailer frame: the status lines, in the body."""
    text = "".join(f"{name}:{value}\r\n" for name, value in grpc_status_lines(code, message, metadata))
    return envelope(text.encode(), 0x80)


def as_headers(metadata: Sequence[tuple[str, Any]], prefix: str = "") -> list[tuple[str, str]]:
    """Metadata as header lines: ``-bin`` values base64-encoded, as gRPC carries them in HTTP headers."""
    lines = []
    for name, value in metadata:
        name = name.lower()
        if name.endswith("-bin") and isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        lines.append((prefix + name, str(value)))
    return lines


def _percent_encoded(message: str) -> str:
    """``grpc-message`` is percent-encoded UTF-8: what is not printable ASCII, and ``%`` itself."""
    return quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
