"""Streaming over real sockets: chunks leave as they are produced, and a vanished client closes the producer."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

LIVE_FACES = ["granian", "uvicorn", "hypercorn"]


@pytest.fixture(params=LIVE_FACES)
def server(request, servers):
    return servers.get(request.param, "core_app:app")


def test_chunks_are_sent_as_produced(server):
    with httpx.Client(base_url=server.url, timeout=10) as client, client.stream("GET", "/r/slow-stream") as response:
        started = time.monotonic()
        chunks = response.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
        total = time.monotonic() - started
    assert first == b"first\n"
    assert rest == b"second\n"
    # the first chunk arrives well before the producer's 1.5 s pause ends
    assert first_at < total - 0.5


@pytest.mark.parametrize(("path", "key"), [("/r/endless", "async"), ("/r/endless-sync", "sync")])
def test_client_disconnect_closes_the_producer(server, path, key):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        before = client.get("/r/closed-streams").json()[key]
        with client.stream("GET", path) as response:
            for received, _ in enumerate(response.iter_raw()):
                if received > 5:
                    break
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if client.get("/r/closed-streams").json()[key] > before:
                break
            time.sleep(0.05)
        assert client.get("/r/closed-streams").json()[key] == before + 1
        assert client.get("/").status_code == 200


def raw_exchange(server, payload: bytes, expect_responses: int) -> bytes:
    host, port = server.host, server.port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 ") < expect_responses and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        time.sleep(0.1)
        sock.setblocking(False)
        try:
            data += sock.recv(65536)
        except BlockingIOError:
            pass
        return data


@pytest.mark.parametrize("path", ["/r/failing-stream", "/r/failing-stream-sync"])
def test_a_stream_that_fails_after_its_first_chunk_ends_at_once(server, path):
    # granian's RSGI can only end the body (the client sees it end early), an ASGI server aborts the connection;
    # either way the client is not left waiting for a body that will never come
    started = time.monotonic()
    received = b""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        try:
            with client.stream("GET", path) as response:
                assert response.status_code == 200
                for chunk in response.iter_raw():
                    received += chunk
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass
        assert time.monotonic() - started < 5
        assert received == b"first\n"
        assert client.get("/r/closed-streams").status_code == 200  # the worker serves on


def test_head_sends_no_body_on_a_kept_alive_connection(server):
    request = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /r/text HTTP/1.1\r\nHost: x\r\n\r\n"
    data = raw_exchange(server, request, 2)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert rest.startswith(b"HTTP/1.1 200"), rest[:80]  # nothing between the HEAD answer and the next response
    assert rest.endswith("plain text é".encode())


def test_malformed_request_line_leaves_server_alive(server):
    raw_exchange(server, b"\x00\x01garbage\r\n\r\n", 1)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 200


def test_bad_content_length_is_4xx(server):
    data = raw_exchange(server, b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 1)
    assert data.startswith(b"HTTP/1.1 4"), data[:80]


def test_a_body_cut_short_is_a_400_not_a_500(server):
    # the client declares 10 bytes, sends 3 and half-closes: the body will never be complete
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    # an engine may drop the connection of a half-closed client (uvicorn) or answer it itself (hypercorn, an
    # empty 400); any answer must be a 400, and Cello's a problem+json
    assert data == b"" or data.startswith(b"HTTP/1.1 400"), data[:200]
    if data.partition(b"\r\n\r\n")[2]:
        assert b"application/problem+json" in data
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 200


@pytest.mark.parametrize("path", ["/echo/body", "/echo/json"])
@pytest.mark.parametrize("chunks", [b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nabc\r\n0\r\n\r\n"])
def test_broken_chunked_framing_is_a_400(server, path, chunks):
    # a chunk size that is not hex, and one that overruns its data: never read as an empty or a garbled body
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
                     + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)  # fmt: skip
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 400"), data[:300]
    with httpx.Client(base_url=server.url) as client:
        assert client.post(path, json={"a": 1}).status_code == 200  # the worker serves on
