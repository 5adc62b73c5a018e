"""Server-Sent Events through every engine face: encoding, async and sync generators, keep-alive comments,
Last-Event-ID, and a client that vanishes mid-stream (the generator's ``finally`` must run promptly)."""

from __future__ import annotations

import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest
from realtime_app import FINALLY_DIR

from cello import ServerSentEvent


@pytest.fixture
def client(ws_client):
    return ws_client


def test_events_from_an_async_generator(client):
    response = client.get("/sse/count")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.text == (
        "retry: 2000\n\n"
        'id: 1\nevent: tick\ndata: {"n":1}\n\n'
        'id: 2\nevent: tick\ndata: {"n":2}\n\n'
        'id: 3\nevent: tick\ndata: {"n":3}\n\n'
        "data: done\n\n"
    )


def test_last_event_id_resumes(client):
    response = client.get("/sse/count?limit=1", headers={"last-event-id": "41"})
    assert 'id: 42\nevent: tick\ndata: {"n":42}' in response.text


def test_events_from_a_sync_generator(client):
    assert client.get("/sse/sync").text == "data: first\n\n: two lines\ndata: multi\ndata: line\n\n"


def test_keep_alive_comments_fill_the_silence(client):
    text = client.get("/sse/quiet").text
    assert text.startswith("data: hello\n\n")
    assert text.endswith("data: after a pause\n\n")
    assert text.count(": ping\n\n") >= 2


def test_a_client_that_vanishes_ends_the_generator(client, face):
    if face == "inprocess":
        pytest.skip("needs a real socket to drop")
    tag = uuid.uuid4().hex
    marker = FINALLY_DIR / tag
    parts = urlsplit(str(client.base_url))
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(f"GET /sse/forever/{tag} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    received = b""
    while b"data: started" not in received:
        received += sock.recv(4096)
    sock.close()  # gone, without a word
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the generator's finally did not run after the client left"
    marker.unlink()
    assert client.get("/plain").json() == {"http": True}


def test_event_encoding_refuses_field_injection():
    assert ServerSentEvent("a\r\nb\rc", event="x", id="7").encode() == b"id: 7\nevent: x\ndata: a\ndata: b\ndata: c\n\n"
    with pytest.raises(ValueError):
        ServerSentEvent("x", event="tick\ndata: forged")
    with pytest.raises(ValueError):
        ServerSentEvent("x", id="1\r2")
