"""Fault injection: Redis (SIGKILL) and PostgreSQL (an immediate stop, like a crash) stop for real under load,
each a server of the test's own, and come back.

The routes that need the stopped one (``/counter`` on Redis, ``/users/{id}`` on PostgreSQL) answer fast 503s —
the first failures within the client's short timeouts, then the circuit breaker refuses at once — while the routes
that do not (the rate limiter fails open, the cache skips) keep serving; once it is back everything recovers
without a restart, and no worker dies.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from _live import postgres_server

from _helpers import redis_server
from serving import app_tracebacks, serve_target

pytestmark = pytest.mark.services


class Load:
    """Two clients, one per route, recording (phase, status, seconds) for every request."""

    def __init__(self, url: str, affected: str) -> None:
        self.url = url
        self.phase = "before"
        self.records: list[tuple[str, str, int | str, float]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(path,)) for path in (affected, "/items/1")]

    def run(self, path: str) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                phase = self.phase
                started = time.monotonic()
                try:
                    status: int | str = (client.post if path.startswith("/counter") else client.get)(path).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if self.phase != phase:
                    phase = "transition"  # under way while the fault came or went: either answer is right
                self.records.append((phase, path, status, time.monotonic() - started))
                time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def statuses(self, phase: str, path: str) -> Counter[int | str]:
        return Counter(status for p, q, status, _ in self.records if p == phase and q == path)

    def slowest(self, phase: str, path: str, status: int) -> float:
        return max((s for p, q, code, s in self.records if p == phase and q == path and code == status), default=0)


def outage(live, backend, env: dict[str, str], affected: str) -> Load:
    """Serve with ``backend``, load, stop it, start it again; the load's records."""
    server = serve_target(live, "granian", workers=2, env=env)
    workers = set(server.processes())
    with Load(server.url, affected) as load:
        time.sleep(1.5)
        load.phase = "stopping"  # under way while it goes down: either answer is right
        backend.stop()
        load.phase = "down"
        time.sleep(3)
        load.phase = "restarting"
        backend.restart()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and load.statuses("restarting", affected)[200] < 20:
            time.sleep(0.2)
        load.phase = "after"
        time.sleep(1.5)
    assert set(server.processes()) == workers, "a worker died or was replaced"
    tracebacks = app_tracebacks(server.output())  # an unhandled error would be a 500: show where it came from
    assert not tracebacks, "\n".join(tracebacks)
    print({(phase, path): dict(load.statuses(phase, path)) for phase in ("before", "down", "after")
           for path in (affected, "/items/1")})  # fmt: skip
    return load


def assert_degraded_and_recovered(load: Load, affected: str) -> None:
    for phase in ("before", "after"):
        assert set(load.statuses(phase, affected)) == {200}, phase
    assert set(load.statuses("down", affected)) == {503}
    assert load.slowest("down", affected, 503) < 2.0  # fast refusals, not hangs
    for phase in ("before", "stopping", "down", "transition", "restarting", "after"):
        assert set(load.statuses(phase, "/items/1")) <= {200}, phase  # unaffected throughout
    assert set(load.statuses("stopping", affected)) <= {200, 503}
    assert set(load.statuses("transition", affected)) <= {200, 503}
    assert set(load.statuses("restarting", affected)) <= {200, 503}


def test_redis_stopped_mid_load_then_restarted(live, tmp_path):
    with redis_server(tmp_path) as redis:
        env = {"RELIABILITY_REDIS_URL": redis.url, "RELIABILITY_PREFIX": f"reliability-{uuid.uuid4().hex}:"}
        load = outage(live, redis, env, "/counter/hits")
    assert_degraded_and_recovered(load, "/counter/hits")


def test_postgres_stopped_mid_load_then_restarted(live):
    pytest.importorskip("asyncpg")
    with postgres_server() as postgres:
        load = outage(live, postgres, {"RELIABILITY_DATABASE_URL": postgres.url}, "/users/1")
    assert_degraded_and_recovered(load, "/users/1")
