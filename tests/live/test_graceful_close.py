"""Shutdown says goodbye: on SIGTERM, open WebSockets are closed with 1001 (going away) and Server-Sent Event
streams end cleanly before the server stops — instead of uvicorn's own 1012 and its endless wait for streams,
and of granian dropping the connections (under ``cello run`` its workers drain first; its RSGI interface sends
close frames without a code)."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.live


@pytest.mark.parametrize("face", ["uvicorn", "granian", "granian-asgi"])
def test_shutdown_closes_websockets_and_ends_event_streams(live, face):
    server = live("realtime_app:app", face, ready_path="/__ready").start()
    port = int(server.url.rsplit(":", 1)[1])
    # entered by hand, not in a with block: the server is what ends this connection
    ws = connect(server.url.replace("http://", "ws://") + "/ws/echo", close_timeout=1).__enter__()
    ws.send("ping")
    assert ws.recv(timeout=10) == "ping"
    stream = socket.create_connection(("127.0.0.1", port), timeout=15)
    stream.sendall(b"GET /sse/forever/shutdown HTTP/1.1\r\nHost: test\r\n\r\n")
    received = b""
    while b"data: started" not in received:
        received += stream.recv(4096)

    started = time.monotonic()
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=15)
    while chunk := stream.recv(4096):
        received += chunk
    stopper.join(30)
    elapsed = time.monotonic() - started

    assert not stopper.is_alive()
    assert elapsed < 10
    assert closed.value.rcvd is not None  # a close frame, not a dropped connection
    # NOTE: granian's RSGI interface sends its close frames without a code (1005, "no status received")
    assert closed.value.rcvd.code == (1005 if face == "granian" else 1001)
    assert received.endswith(b"0\r\n\r\n"), received[-80:]  # the stream's last chunk: it ended, not cut off
    if face.startswith("granian"):
        assert server.returncode == 0
        return
    # uvicorn ends by raising the signal it caught again, so its exit status is "terminated by SIGTERM"
    assert server.returncode in (0, -signal.SIGTERM)
