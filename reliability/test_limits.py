"""Limits through a live server: each one crossed gets its 4xx, and the worker keeps serving.

Header size, header count and URL length are the engine's (``cello run --max-header-size``, 64 KiB by default;
granian allows 100 headers); body size, multipart parts and file size, JSON depth and WebSocket message size are
Cello's, with a problem+json body.
"""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from serving import serve_target
from wire import exchange, judge


@pytest.fixture(scope="module", params=["granian", "uvicorn"])
def target(request, live_module):
    return serve_target(live_module, request.param)


def send(server, raw: bytes):
    answer = exchange(server.host, server.port, raw)
    assert judge(answer)[1] is None, judge(answer)
    assert httpx.get(server.url + "/pid", timeout=5).status_code == 200  # still serving
    return answer


def post(path: str, content_type: str, body: bytes, extra: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + extra + b"\r\n" + body


def multipart(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--B\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + b"--B--\r\n"


def engine_limits_only(target):
    if target.server != "granian":
        pytest.skip("header and URL limits are the engine's: cello run sets granian's; uvicorn's are its own")


def test_a_huge_header_is_refused(target):
    engine_limits_only(target)
    answer = send(target, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 100_000 + b"\r\n\r\n")
    assert answer.status == 431


def test_a_header_just_under_the_limit_is_served(target):
    assert send(target, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 8000 + b"\r\n\r\n").status == 200


def test_too_many_headers_are_refused(target):
    engine_limits_only(target)
    headers = b"".join(b"X-%d: v\r\n" % n for n in range(200))
    assert send(target, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n").status == 431


def test_a_very_long_url_is_refused(target):
    engine_limits_only(target)
    # 414 when the URL alone is over the engine's own URI limit; 431 when it overflows the header buffer first
    assert send(target, b"GET /?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n").status in (414, 431)


def test_a_body_over_the_limit_is_413_before_it_is_read(target):
    answer = send(target, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 2000000\r\n\r\n{}")  # fmt: skip
    assert answer.status == 413


def test_a_chunked_body_over_the_limit_is_413(target):
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(20)) + b"0\r\n\r\n"
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert send(target, head + chunks).status == 413


def test_too_many_multipart_parts_is_413(target):
    body = multipart([(f"n{n}", None, b"v") for n in range(60)])
    assert send(target, post("/upload", "multipart/form-data; boundary=B", body)).status == 413


def test_a_file_over_the_multipart_file_limit_is_413(target):
    body = multipart([("file", "big.bin", b"x" * 600_000)])
    assert send(target, post("/upload", "multipart/form-data; boundary=B", body)).status == 413


@pytest.mark.parametrize("depth", [2000, 100_000])
def test_json_nested_too_deep_is_422(target, depth):
    body = b'{"a":' * depth + b"1" + b"}" * depth
    assert send(target, post("/echo", "application/json", body)).status == 422


def test_a_websocket_message_over_the_limit_closes_with_1009(target):
    url = target.url.replace("http", "ws") + "/ws/echo"
    with ws_connect(url, close_timeout=1, max_size=None) as ws:
        ws.send("x" * 100_000)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    if target.server != "granian":  # granian's close frames carry no code (docs/realtime.md)
        assert closed.value.rcvd.code == 1009
