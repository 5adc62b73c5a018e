"""Slowloris: clients trickling their headers (cut off by the engine's header timeout) or their body (cut off by
``App(body_timeout=)`` with a 408) while other clients keep being served. Their latency is printed, not asserted
(this machine is shared); ``run.py slow`` publishes it."""

from __future__ import annotations

import time

import pytest

from serving import serve_target
from slow import latencies, percentiles, slow_clients

SLOW_CONNECTIONS = 100


@pytest.mark.parametrize(
    ("face", "mode"),
    [("granian", "headers"), ("granian", "body"), ("uvicorn", "body")],
)
def test_slow_clients_are_cut_off_and_others_are_served(live, face, mode):
    # uvicorn has no header timeout of its own: put it behind a proxy that has one (documented)
    server = serve_target(live, face, env={"RELIABILITY_BODY_TIMEOUT": "2"}, extra_args=(
        ("--header-timeout", "2") if face == "granian" else ()))  # fmt: skip
    with slow_clients(server.host, server.port, SLOW_CONNECTIONS, mode) as attack:
        failures, times = latencies(server.url + "/", 200, seconds=2.5)  # while the attack lasts
        deadline = time.monotonic() + 20  # generous: the timeout is 2 s
        while len(attack.cut_after) < SLOW_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.2)
    p50, p99 = percentiles(times)
    print(f"{face}/{mode}: {attack.opened} slow clients, cut off after {min(attack.cut_after, default=0):.1f}-"
          f"{max(attack.cut_after, default=0):.1f} s; others: p50 {p50:.2f} ms, p99 {p99:.2f} ms")  # fmt: skip
    assert failures == 0
    assert attack.opened == SLOW_CONNECTIONS
    assert len(attack.cut_after) == SLOW_CONNECTIONS, "some slow clients were never cut off"
    if mode == "body":
        assert set(attack.answers) == {b"HTTP/1.1 408 Request Timeout"}, set(attack.answers)
