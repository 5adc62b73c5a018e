"""Hostile WebSocket frames through a live server: reserved bits, unknown opcodes, lying lengths, unmasked
client frames, oversized control frames, invalid UTF-8 text, fragments that never end. Whatever arrives, the
server must end the conversation within a few seconds of a close (or at once), and keep serving everyone else.
"""

from __future__ import annotations

import base64
import os
import socket
import time

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from websockets.sync.client import connect as ws_connect

from serving import app_tracebacks, serve_target
from strategies import frame, websocket_frame_sequences

EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "300")) // 3
FACES = ["granian", "uvicorn", "cello-ws"]


@pytest.fixture(scope="module", params=FACES)
def target(request, live_module):
    server = serve_target(live_module, request.param)
    pid = httpx.get(server.url + "/pid", timeout=5).json()["pid"] if request.param != "cello-ws" else None
    yield server
    with ws_connect(server.url.replace("http", "ws") + "/ws/echo", close_timeout=1) as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
    if pid is not None:
        assert httpx.get(server.url + "/pid", timeout=5).json()["pid"] == pid
    assert not app_tracebacks(server.output())


def handshake(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws/echo HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return sock


def test_hostile_frames_end_cleanly(target):
    # NOTE: no shrinking: a failing example can take seconds each, and the frames of the first one are printed
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])  # fmt: skip
    @given(websocket_frame_sequences)
    def check(frames: list[bytes]) -> None:
        sock = handshake(target.host, target.port)
        with sock:
            try:
                for raw in frames:
                    sock.sendall(raw)
                sock.sendall(frame(0x8, b"\x03\xe8"))  # a proper close: 1000
                # a frame that announced more bytes than it carried has swallowed the close: the end of the
                # stream is what the server must notice then
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                return  # the server already closed on us: an answer too
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    if not sock.recv(65536):
                        return  # closed: done
                except TimeoutError:
                    break
                except OSError:
                    return
            raise AssertionError(f"the connection was still open 8 s after the close frame: {frames!r:.300}")

    check()
