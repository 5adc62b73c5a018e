"""A restart on one machine with no request dropped: the new version starts on the same port while the old one
still serves (the workers' sockets are shared, SO_REUSEPORT), then the old one is told to stop (SIGTERM) and
drains. Clients on kept-alive connections and clients opening a connection per request see every request
answered, by one version or the other."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from cello.testing import free_port

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]


def test_the_new_version_takes_over_the_port_without_a_failed_request(live: Any) -> None:
    port = free_port()
    old = live("version_app:app", port=port, workers=2, env={"VERSION": "1"}).start()
    answered: Counter[str] = Counter()
    stop = threading.Event()

    def keep_alive() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                call(client.get)

    def one_per_request() -> None:
        while not stop.is_set():
            call(httpx.get)

    def call(get: Any) -> None:
        try:
            answer = get(f"http://127.0.0.1:{port}/", timeout=10)
            answered[answer.json()["version"] if answer.status_code == 200 else str(answer.status_code)] += 1
        except httpx.HTTPError as exc:
            answered[type(exc).__name__] += 1

    clients = [threading.Thread(target=keep_alive), threading.Thread(target=one_per_request)]
    for client in clients:
        client.start()
    try:
        time.sleep(0.5)
        new = live("version_app:app", port=port, workers=2, env={"VERSION": "2"}).start()
        deadline = time.monotonic() + 20
        while answered["2"] == 0:  # the new version is answering beside the old
            assert time.monotonic() < deadline, f"the new version never answered: {answered}"
            time.sleep(0.05)
        old.stop()  # SIGTERM: the old version drains
        time.sleep(1.0)
        before = answered["2"]
        time.sleep(0.5)
        assert answered["2"] > before  # the new version serves alone now
    finally:
        stop.set()
        for client in clients:
            client.join(15)
    assert set(answered) == {"1", "2"}, answered  # every request answered, by one version or the other
    new.stop()
