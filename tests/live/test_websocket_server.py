"""Cello's lean WebSocket server (cello run --websocket-server) beyond the API the other faces share: its
heartbeat pings every connection and drops peers that stopped answering, and it keeps a few KB per connection."""

from __future__ import annotations

import base64
import os
import socket
import time

import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.live


def test_the_lean_server_pings_and_drops_dead_peers(live):
    server = live("realtime_app:app", "cello-ws", ready_path="/__ready",
                  extra_args=["--ping-interval", "0.3", "--ping-timeout", "0.3"]).start()  # fmt: skip
    port = int(server.url.rsplit(":", 1)[1])
    # a peer that completes the handshake and then never answers again, like a machine that lost its network
    dead = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    dead.sendall(f"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())  # fmt: skip
    assert dead.recv(4096).startswith(b"HTTP/1.1 101")
    # a live client answers the pings (the websockets library does on its own) and stays connected
    with connect(server.url.replace("http://", "ws://") + "/ws/echo", close_timeout=1) as alive:
        started = time.monotonic()
        received = b""
        while chunk := dead.recv(4096):  # pings arrive, then the server gives up on this peer
            received += chunk
        assert b"\x89" in received  # a ping frame (FIN + opcode 9)
        assert time.monotonic() - started < 3
        alive.send("still here")
        assert alive.recv(timeout=5) == "still here"


def test_a_peer_that_stops_reading_is_dropped(live):
    server = live("realtime_app:app", "cello-ws", ready_path="/__ready", extra_args=["--send-timeout", "0.5"]).start()
    port = int(server.url.rsplit(":", 1)[1])
    reader = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    reader.sendall(f"GET /ws/flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())  # fmt: skip
    time.sleep(2)  # not reading: the server's buffer for this peer fills, then it gives up on the peer
    received = 0
    started = time.monotonic()
    while chunk := reader.recv(1 << 20):  # what was buffered, then the end of the connection
        received += len(chunk)
        assert time.monotonic() - started < 10
    assert received > 0
    with connect(server.url.replace("http://", "ws://") + "/ws/echo", close_timeout=1) as other:
        other.send("the server is fine")
        assert other.recv(timeout=5) == "the server is fine"


def test_a_handshake_that_never_ends_is_dropped(live):
    server = live(
        "realtime_app:app", "cello-ws", ready_path="/__ready", extra_args=["--handshake-timeout", "0.5"]
    ).start()
    port = int(server.url.rsplit(":", 1)[1])
    slow = socket.create_connection(("127.0.0.1", port), timeout=5)
    slow.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n")  # and then nothing: the headers never end
    started = time.monotonic()
    try:
        assert slow.recv(4096) == b""  # the server hung up...
    except ConnectionResetError:
        pass  # ...or reset the connection: either way it is gone
    assert time.monotonic() - started < 3
    with connect(server.url.replace("http://", "ws://") + "/ws/echo", close_timeout=1) as ws:
        ws.send("fine")
        assert ws.recv(timeout=5) == "fine"
