"""The chat example's rooms across processes: two servers sharing the running Redis (clients on each receive
what is published through the other), and one server with two workers."""

from __future__ import annotations

import contextlib
import sys
import uuid
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from _helpers import require_service
from cello.testing import free_port

pytestmark = [pytest.mark.live, pytest.mark.services]

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat.py"


def start_chat(live, redis_url: str, workers: int = 1):
    port = free_port()
    env = {"PORT": str(port), "REDIS_URL": redis_url, "WORKERS": str(workers)}
    return live([sys.executable, str(CHAT)], host="127.0.0.1", port=port, env=env, ready_path="/").start()


def connect(url: str):
    # NOTE: close_timeout: granian may answer a client's close only as the connection is torn down
    return ws_connect(url, close_timeout=1)


def ws_url(server, room: str, name: str) -> str:
    return server.url.replace("http://", "ws://") + f"/ws/{room}?name={name}"


def read_until(socket, text: str) -> list[str]:
    seen = []
    while True:
        message = socket.recv(timeout=10)
        seen.append(message)
        if message == text:
            return seen


def test_two_servers_share_rooms_through_redis(live):
    require_service("Redis", "127.0.0.1", 6379)
    first = start_chat(live, "redis://127.0.0.1:6379")
    second = start_chat(live, "redis://127.0.0.1:6379")
    room = f"room-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        ada = stack.enter_context(connect(ws_url(first, room, "ada")))
        assert ada.recv(timeout=10).startswith(f"* welcome to {room}, ada")
        read_until(ada, "* ada joined")  # ada's server now listens to the room: nothing published later is lost
        bob = stack.enter_context(connect(ws_url(second, room, "bob")))
        assert bob.recv(timeout=10).startswith(f"* welcome to {room}, bob")
        read_until(ada, "* bob joined")  # published by the other server
        ada.send("hello from the first server")
        read_until(bob, "ada: hello from the first server")
        bob.send("hello back")
        read_until(ada, "bob: hello back")


def test_one_server_two_workers(live):
    require_service("Redis", "127.0.0.1", 6379)
    server = start_chat(live, "redis://127.0.0.1:6379", workers=2)
    room = f"room-{uuid.uuid4().hex[:8]}"
    workers = set()
    with contextlib.ExitStack() as stack:
        sockets = []
        # connect until two connections landed on different worker processes
        for index in range(40):
            socket = stack.enter_context(connect(ws_url(server, room, f"user{index}")))
            welcome = socket.recv(timeout=10)
            read_until(socket, f"* user{index} joined")  # its worker listens to the room from now on
            sockets.append(socket)
            workers.add(welcome.rsplit("worker ", 1)[1])
            if len(workers) == 2:
                break
        assert len(workers) == 2, "every connection landed on one worker"
        sockets[-1].send("across workers")
        for socket in sockets:
            read_until(socket, f"user{len(sockets) - 1}: across workers")
