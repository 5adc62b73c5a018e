"""Graceful drain and worker loss under traffic.

SIGTERM while slow requests are in flight: they complete, new connections are refused, the process exits 0.
``kill -9`` of one worker: it is respawned while the other keeps serving. (WebSockets closed with 1001 on
shutdown: tests/live/test_graceful_close.py.)
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import httpx
import pytest

from serving import serve_target


@pytest.mark.parametrize("face", ["granian", "uvicorn"])
def test_sigterm_lets_in_flight_requests_finish_and_exits_0(live, face):
    server = serve_target(live, face)
    results: list[int | str] = []

    def slow_request() -> None:
        try:
            results.append(httpx.get(server.url + "/slow?seconds=2", timeout=15).status_code)
        except httpx.HTTPError as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=slow_request) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # all five are in the handler now
    os.kill(server.pid, signal.SIGTERM)
    time.sleep(0.5)
    refused = False
    try:
        with socket.create_connection((server.host, server.port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            refused = sock.recv(100) == b""
    except OSError:
        refused = True
    for thread in threads:
        thread.join(20)
    returncode = server._process.wait(20)
    assert results == [200] * 5, results
    assert refused, "a new connection was served after SIGTERM"
    # uvicorn re-raises the signal once it has shut down cleanly, so its exit reads "killed by SIGTERM"
    assert returncode == (0 if face == "granian" else -signal.SIGTERM), server.output()[-2000:]


def test_a_killed_worker_is_respawned_while_the_other_serves(live):
    server = serve_target(live, "granian", workers=2)
    before = {pid for pid in server.processes() if pid != server.pid}
    assert len(before) == 2
    stop = threading.Event()
    outcomes: list[int | str] = []

    def load() -> None:
        while not stop.is_set():
            try:  # a new connection each time, so the live worker takes what the dead one cannot
                outcomes.append(httpx.get(server.url + "/pid", timeout=5, headers={"connection": "close"}).status_code)
            except httpx.HTTPError as exc:
                outcomes.append(type(exc).__name__)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(0.5)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = {pid for pid in server.processes() if pid != server.pid}
            if victim not in now and len(now) == 2:
                break
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        thread.join(10)
    after = {pid for pid in server.processes() if pid != server.pid}
    assert victim not in after and len(after) == 2, (before, after)
    served = outcomes.count(200)
    failed = len(outcomes) - served
    print(f"during the kill: {served} requests served, {failed} failed")
    assert served > 10
    assert failed <= 5, outcomes  # at most what was in flight on the killed worker
