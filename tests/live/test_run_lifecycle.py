"""``python app.py`` calling ``app.run()``, and ``cello run`` on both of granian's faces: the app serves, and its
startup and shutdown hooks run inside the worker processes (RSGI init/del hooks, ASGI lifespan), shutdown ones
included when the server is stopped with SIGTERM or SIGINT."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

import httpx
import pytest
from _live import APPS_DIR

from cello.testing import LiveServer, free_port

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

SCRIPT = str(APPS_DIR / "lifecycle_app.py")


def info(server: LiveServer) -> dict:
    response = httpx.get(server.url + "/info", headers={"connection": "close"}, timeout=5.0, trust_env=False)
    assert response.status_code == 200
    return response.json()


def marks(directory, kind: str) -> set[int]:
    return {int(path.name.split("-")[1]) for path in directory.glob(f"{kind}-*")}


def stop_with(server: LiveServer, sig: int) -> None:
    """Signal the main process only, as a terminal or a process manager would, and wait for the whole group."""
    assert server.pid is not None
    os.kill(server.pid, sig)
    deadline = time.monotonic() + 20.0
    while server.processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.processes(), f"still running after {signal.Signals(sig).name}: {server.processes()}"
    server.stop()
    assert server.returncode == 0, server.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_script_calling_app_run_serves_and_runs_hooks_in_the_worker(live, tmp_path, sig):
    server: LiveServer = live(
        [sys.executable, SCRIPT, "{port}"],
        ready_path="/__ready",
        env={"CELLO_MARKS_DIR": str(tmp_path), "CELLO_RUN_OPTIONS": json.dumps({"log_level": "warning"})},
    ).start()
    seen = info(server)
    assert seen["module"] == "__main__"  # the object defined by the script itself is served
    assert seen["started"] is True
    assert seen["scheme"] == "http"
    worker = seen["pid"]
    assert worker != server.pid  # served by a worker process, not the main one
    assert marks(tmp_path, "startup") == {worker}
    assert not marks(tmp_path, "shutdown")

    stop_with(server, sig)
    assert marks(tmp_path, "shutdown") == {worker}
    # the marker holds the worker's parent: the main process started by the script
    assert int((tmp_path / f"shutdown-{worker}").read_text()) == server.pgid


def test_script_with_two_workers_runs_hooks_in_each(live, tmp_path):
    server: LiveServer = live(
        [sys.executable, SCRIPT, "{port}"],
        ready_path="/__ready",
        env={
            "CELLO_MARKS_DIR": str(tmp_path),
            "CELLO_RUN_OPTIONS": json.dumps({"workers": 2, "log_level": "warning"}),
        },
    ).start()
    deadline = time.monotonic() + 10.0
    while len(marks(tmp_path, "startup")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = marks(tmp_path, "startup")
    assert len(workers) == 2
    assert workers <= set(server.processes())
    assert info(server)["pid"] in workers
    stop_with(server, signal.SIGTERM)
    assert marks(tmp_path, "shutdown") == workers


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_cello_run_runs_hooks_on_both_faces(live, tmp_path, interface):
    server: LiveServer = live(
        "lifecycle_app:app",
        f"granian-{interface}",
        ready_path="/__ready",
        env={"CELLO_MARKS_DIR": str(tmp_path)},
    ).start()
    assert "--interface" in server.command()
    assert server.command()[server.command().index("--interface") + 1] == interface
    seen = info(server)
    assert seen["module"] == "lifecycle_app"
    assert seen["started"] is True  # startup hooks ran before the first request: init hook / lifespan startup
    assert marks(tmp_path, "startup") == {seen["pid"]}
    stop_with(server, signal.SIGTERM)
    assert marks(tmp_path, "shutdown") == {seen["pid"]}


def test_examples_hello_runs_as_a_script(live):
    """``python examples/hello.py`` (port from $PORT) serves the example's routes."""
    hello = APPS_DIR.parent.parent / "examples" / "hello.py"
    if not hello.exists():
        pytest.skip("examples/hello.py is not there")
    port = free_port()
    server: LiveServer = live([sys.executable, str(hello)], port=port, env={"PORT": str(port)}).start()
    response = httpx.get(server.url + "/", timeout=5.0, trust_env=False)
    assert response.status_code == 200
    assert response.json() == {"message": "Hello, World!"}
    posted = httpx.get(server.url + "/users/7/posts/42", timeout=5.0, trust_env=False).json()
    assert (posted["user_id"], posted["post_id"]) == (7, 42)
    server.stop()
    assert server.returncode == 0, server.output()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_to_the_process_group_with_streams_open_always_ends_the_server(live, tmp_path, workers):
    # what a terminal does on Ctrl-C: SIGINT to every process of the group, while the main process also stops its
    # workers with SIGTERM; then a second Ctrl-C and a SIGTERM, as an impatient user sends. It once hung for good
    # (granian's stop call blocks when made a third time).
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    for attempt in range(6):
        marks_dir = tmp_path / str(attempt)
        marks_dir.mkdir()
        server: LiveServer = live(
            [sys.executable, SCRIPT, "{port}"],
            ready_path="/__ready",
            env={"CELLO_MARKS_DIR": str(marks_dir), "CELLO_RUN_OPTIONS": json.dumps({"workers": workers})},
        ).start()
        port = int(server.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 15  # every worker up (the ready check reached only one)
        while len(marks(marks_dir, "startup")) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        with connect(f"ws://127.0.0.1:{port}/ws", close_timeout=1) as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "hi"
            stream = socket.create_connection(("127.0.0.1", port), timeout=10)
            stream.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
            received = b""
            while b"data:" not in received:
                received += stream.recv(4096)
            started = time.monotonic()
            os.killpg(server.pgid, signal.SIGINT)
            impatient = attempt % 2 == 1
            if impatient:  # "stop now": the goodbye may be cut short, the stop may not
                time.sleep(0.05)
                os.killpg(server.pgid, signal.SIGINT)
                os.kill(server.pid, signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                _read_until_closed(ws)
            while chunk := stream.recv(4096):
                received += chunk
            stream.close()
        deadline = time.monotonic() + 15
        while server.processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.processes(), f"attempt {attempt}: still running {time.monotonic() - started:.1f} s later"
        if not impatient:
            # a close frame (granian's RSGI interface sends it without a code: 1005), not a dropped connection
            assert closed.value.rcvd is not None, attempt
            assert received.endswith(b"0\r\n\r\n"), received[-80:]  # the event stream ended, not cut off
        server.stop()
        assert len(marks(marks_dir, "shutdown")) == workers, server.output()  # every worker ran its shutdown hooks


def _read_until_closed(ws) -> None:
    while True:
        ws.recv(timeout=10)
