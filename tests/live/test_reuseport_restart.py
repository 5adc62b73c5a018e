"""A restart on one machine with no request dropped: the new version starts on the same port while the old one
still serves (the workers' sockets are shared, SO_REUSEPORT), then the old one is told to stop (SIGTERM) and
drains. Clients on kept-alive connections and clients opening a connection per request see every request
answered, by one version or the other — a GET sent on a kept-alive connection just as the old version closes it
gets no answer at all, and is sent again, as HTTP/1.1 lets a client do with an idempotent request (RFC 9112,
9.3.1; browsers do it, httpx leaves it to its caller)."""

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
    sent_again = [0]  # requests a closing connection took without an answer
    stop = threading.Event()

    def keep_alive() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                call(client.get)

    def one_per_request() -> None:
        while not stop.is_set():
            call(httpx.get)

    def call(get: Any) -> None:
        for attempt in (1, 2):
            try:
                answer = get(f"http://127.0.0.1:{port}/", timeout=10)
            except httpx.RemoteProtocolError as exc:  # closed with no answer: sent again, once
                if attempt == 2 or "without sending a response" not in str(exc):
                    answered[type(exc).__name__] += 1
                    return
                sent_again[0] += 1
                continue
            except httpx.HTTPError as exc:
                answered[type(exc).__name__] += 1
                return
            answered[answer.json()["version"] if answer.status_code == 200 else str(answer.status_code)] += 1
            return

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
    # every request answered, by one version or the other (a few of them sent again)
    assert set(answered) == {"1", "2"}, (answered, sent_again)
    assert sent_again[0] <= 5, sent_again
    new.stop()
