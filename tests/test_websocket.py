"""WebSocket routes through every engine face: in process (TestClient.websocket_connect) and over real sockets
with the websockets client library against granian (RSGI), uvicorn and hypercorn (ASGI), and Cello's own lean
WebSocket server (cello run --websocket-server)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from security_app import SECRET

from cello import WebSocketDisconnect
from cello.middleware import JwtConfig
from cello.testing import TestClient, WebSocketRefused

TOKEN_CONFIG = JwtConfig(secret=SECRET)


@pytest.fixture(params=["inprocess", "granian", "uvicorn", "hypercorn", "cello-ws"])
def face(request: pytest.FixtureRequest) -> str:
    """The engine faces, plus the lean WebSocket server, which serves WebSocket routes only."""
    return str(request.param)


def close_code(face: str, code: int) -> int:
    """The code a client sees: granian's RSGI interface sends its close frame without one (1005, "no status")."""
    return 1005 if face == "granian" else code


class Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class LiveSocket:
    """The websockets library's blocking client, speaking the same small API as the in-process session."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.subprotocol = connection.subprotocol

    def send_text(self, text: str) -> None:
        self.connection.send(text)

    def send_bytes(self, data: bytes) -> None:
        self.connection.send(data)

    def send_json(self, value: Any) -> None:
        import json

        self.connection.send(json.dumps(value))

    def _receive(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            return self.connection.recv(timeout=10)  # type: ignore[no-any-return]
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            raise Closed(code, exc.rcvd.reason if exc.rcvd is not None else "") from None

    def receive_text(self) -> str:
        data = self._receive()
        return data if isinstance(data, str) else data.decode()

    def receive_bytes(self) -> bytes:
        data = self._receive()
        return data if isinstance(data, bytes) else data.encode()

    def receive_json(self) -> Any:
        import json

        return json.loads(self._receive())

    def vanish(self) -> None:
        """Drop the TCP connection without a closing handshake, as a crashed client or a cut network does."""
        import socket

        self.connection.socket.shutdown(socket.SHUT_RDWR)
        self.connection.socket.close()


class InProcessSocket:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.subprotocol = session.subprotocol

    def vanish(self) -> None:
        self.session.close(1006)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.session, name)
        if not name.startswith("receive"):
            return method

        def receive(*args: Any) -> Any:
            try:
                return method(*args)
            except WebSocketDisconnect as exc:
                raise Closed(exc.code, exc.reason) from None

        return receive


@pytest.fixture
def connect(ws_client, face):
    """``with connect(path, headers=..., subprotocols=...) as ws`` on the face under test."""

    @contextlib.contextmanager
    def open_socket(path: str, headers: dict[str, str] | None = None, subprotocols: tuple[str, ...] = ()) -> Iterator:
        if isinstance(ws_client, TestClient):
            try:
                session = ws_client.websocket_connect(path, headers=headers, subprotocols=subprotocols)
                session.__enter__()
            except WebSocketRefused as exc:
                raise Refused(exc.status) from None
            try:
                yield InProcessSocket(session)
            finally:
                session.close()
            return
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect as ws_connect

        url = str(ws_client.base_url).replace("http://", "ws://").rstrip("/") + path
        try:
            # NOTE: close_timeout: granian sometimes answers a client's close frame only when the connection is
            # torn down (seen after another connection's handler wrote to this one); the close still completes
            connection = ws_connect(
                url,
                additional_headers=headers,
                subprotocols=list(subprotocols) or None,
                open_timeout=10,
                close_timeout=1,
            )
        except InvalidStatus as exc:
            raise Refused(exc.response.status_code) from None
        with connection:
            yield LiveSocket(connection)

    return open_socket


def test_echo_text_and_bytes(connect):
    with connect("/ws/echo") as ws:
        for text in ("hello", "é ü 😀", "x" * 10_000):
            ws.send_text(text)
            assert ws.receive_text() == text
        ws.send_bytes(b"\x00\x01\xff")
        assert ws.receive_bytes() == b"\x00\x01\xff"


def test_json_messages(connect, face):
    with connect("/ws/json") as ws:
        ws.send_json({"a": [1, 2]})
        assert ws.receive_json() == {"got": {"a": [1, 2]}}
        ws.send_text("{not json")
        with pytest.raises(Closed) as closed:
            ws.receive_text()
        assert closed.value.code == close_code(face, 1003)


def test_path_query_and_dependencies(connect, face):
    with connect("/ws/rooms/lobby?name=ada") as ws:
        assert ws.receive_json() == {"room": "lobby", "name": "ada", "word": "hello", "path": "/ws/rooms/lobby"}
        with pytest.raises(Closed) as closed:
            ws.receive_text()
        assert closed.value.code == close_code(face, 4000)


def test_the_seed_blocking_chat_broadcasts(connect):
    with connect("/ws/chat") as alice, connect("/ws/chat") as bob:
        assert alice.receive_text() == "Welcome!"
        assert bob.receive_text() == "Welcome!"
        alice.send_text("hi bob")
        assert bob.receive_text() == "User: hi bob"
        bob.send_text("hi alice")
        assert alice.receive_text() == "User: hi alice"


def test_authentication_and_guards_on_the_handshake(connect):
    with pytest.raises(Refused) as anonymous:
        with connect("/ws/secure"):
            pass
    assert anonymous.value.status == 401
    user = TOKEN_CONFIG.create_token({"sub": "eve", "roles": ["guest"]})
    with pytest.raises(Refused) as forbidden:
        with connect("/ws/secure", headers={"authorization": f"Bearer {user}"}):
            pass
    assert forbidden.value.status == 403
    admin = TOKEN_CONFIG.create_token({"sub": "ann", "roles": ["admin"]})
    with connect("/ws/secure", headers={"authorization": f"Bearer {admin}"}) as ws:
        assert ws.receive_json() == {"user": "ann"}


def test_refusals_and_unknown_paths(connect):
    with pytest.raises(Refused) as refused:
        with connect("/ws/refuse"):
            pass
    assert refused.value.status == 403
    with pytest.raises(Refused) as missing:
        with connect("/ws/nowhere"):
            pass
    assert missing.value.status == 404
    with pytest.raises(Refused) as http_only:
        with connect("/plain"):
            pass
    assert http_only.value.status == 405


def test_a_crashing_handler_closes_with_1011(connect, face):
    with connect("/ws/crash") as ws:
        assert ws.receive_text() == "about to fail"
        with pytest.raises(Closed) as closed:
            ws.receive_text()
        assert closed.value.code == close_code(face, 1011)


def test_oversized_messages_close_with_1009(connect, face):
    with connect("/ws/echo") as ws:
        ws.send_bytes(b"x" * (64 * 1024 + 1))
        with pytest.raises(Closed) as closed:
            ws.receive_bytes()
        assert closed.value.code == close_code(face, 1009)


def test_subprotocol_selection(connect, face):
    with connect("/ws/subprotocol") as ws:
        assert ws.receive_text() == "none"
    if face == "granian":
        # granian's RSGI interface cannot announce a subprotocol: the handshake fails loudly instead
        with pytest.raises(Refused) as refused:
            with connect("/ws/subprotocol", subprotocols=("chat.v2",)):
                pass
        assert refused.value.status == 500
        return
    with connect("/ws/subprotocol", subprotocols=("chat.v1", "chat.v2")) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.receive_text() == "chat.v2"


def test_plain_http_on_a_websocket_path_is_told_to_upgrade(ws_client):
    response = ws_client.get("/ws/echo")
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
    assert response.headers["content-type"] == "application/problem+json"


def test_the_worker_survives_clients_that_vanish(connect):
    for _ in range(3):
        with connect("/ws/slow-close") as ws:
            assert ws.receive_text() == "ready"
            ws.vanish()
    time.sleep(0.1)
    with connect("/ws/echo") as ws:
        ws.send_text("still serving")
        assert ws.receive_text() == "still serving"


@pytest.mark.parametrize("face", ["inprocess", "granian", "uvicorn", "cello-ws"])
def test_a_silent_peer_is_closed_after_the_idle_timeout(face, servers):
    import realtime_app

    if face == "inprocess":
        with TestClient(realtime_app.idle_app) as client, client.websocket_connect("/ws/echo") as ws:
            ws.send_text("still here")
            assert ws.receive_text() == "still here"
            time.sleep(0.8)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1001
        return
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server = servers.get(face, "realtime_app:idle_app")
    with connect(server.url.replace("http://", "ws://") + "/ws/echo", close_timeout=1, ping_interval=None) as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert 0.3 < time.monotonic() - started < 3
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == close_code(face, 1001)
