"""Middleware state shared by real server processes: a Redis-backed rate limit across two servers, its
behaviour when Redis really stops (fail open / fail closed) and recovers, and Prometheus totals across workers."""

from __future__ import annotations

import os
import time
import uuid

import httpx
import pytest

from _helpers import redis_server, require_service

pytestmark = [pytest.mark.live, pytest.mark.services]


def test_two_servers_share_one_rate_limit_budget(live):
    require_service("Redis", "127.0.0.1", 6379)
    env = {"CELLO_TEST_PREFIX": f"cello-test-{uuid.uuid4().hex}:"}
    first = live("shared_state_app:app", ready_path="/__ready", env=env).start()
    second = live("shared_state_app:app", ready_path="/__ready", env=env).start()
    statuses = []
    pids = set()
    for index in range(8):
        server = first if index % 2 == 0 else second
        response = httpx.get(server.url + "/limited", timeout=5)
        statuses.append(response.status_code)
        if response.status_code == 200:
            pids.add(response.json()["pid"])
    assert statuses.count(200) == 5  # one budget of 5 for both processes
    assert statuses[5:] == [429, 429, 429]
    assert len(pids) == 2


@pytest.fixture
def own_redis(tmp_path):
    with redis_server(tmp_path) as server:
        yield server


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_that_really_stops(live, own_redis, fail_open):
    env = {"CELLO_TEST_REDIS_URL": own_redis.url, "CELLO_TEST_FAIL_OPEN": "1" if fail_open else "0",
           "CELLO_TEST_PREFIX": f"cello-test-{uuid.uuid4().hex}:"}  # fmt: skip
    server = live("shared_state_app:app", ready_path="/__ready", env=env).start()
    assert httpx.get(server.url + "/limited", timeout=5).status_code == 200
    own_redis.stop()
    started = time.monotonic()
    down = httpx.get(server.url + "/limited", timeout=5)
    assert time.monotonic() - started < 2  # a fast answer, not a hang
    if fail_open:
        assert down.status_code == 200
    else:
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert down.headers["retry-after"] == "1"
    assert httpx.get(server.url + "/pid", timeout=5).status_code == 200  # unlimited routes keep serving
    own_redis.restart()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recovered = httpx.get(server.url + "/limited", timeout=5)
        if recovered.status_code == 200 and "ratelimit" in recovered.headers:
            break
        time.sleep(0.2)
    assert recovered.status_code == 200
    assert "ratelimit" in recovered.headers  # counted in Redis again, without a restart


def test_prometheus_totals_across_two_workers(live, tmp_path):
    pytest.importorskip("prometheus_client")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "CELLO_TEST_PREFIX": f"t-{uuid.uuid4().hex}:"}
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"])
    server = live("shared_state_app:app", workers=2, ready_path="/__ready", env=env).start()
    pids = set()
    for _ in range(40):
        with httpx.Client(base_url=server.url, timeout=5) as client:  # fresh connections spread over workers
            pids.add(client.get("/pid").json()["pid"])
    assert len(pids) == 2
    text = ""
    for _ in range(5):
        with httpx.Client(base_url=server.url, timeout=5) as client:
            text = client.get("/metrics").text
    line = next(row for row in text.splitlines() if row.startswith('cello_requests_total{method="GET",route="/pid"'))
    assert float(line.rsplit(" ", 1)[1]) == 40.0
