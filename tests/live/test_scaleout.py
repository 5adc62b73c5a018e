"""Several hosts behind a real load balancer behave as one app (tests/live/_cluster.py: network namespaces, HAProxy,
a Redis of their own; tests/apps/scaleout_app.py on every host, two workers each): one rate-limit budget per client
across hosts, a session started on one host read on another, and a host killed routed around — no request answered
5xx — then back in the rotation when it returns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _cluster import Cluster, cluster, hosts_answering

pytestmark = [pytest.mark.live, pytest.mark.services, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[Cluster, str]]:
    with cluster(hosts=2) as made:
        redis_url = made.start_redis()
        env = {"REDIS_URL": redis_url, "TRUSTED_PROXIES": made.address("lb")}
        for host in made.hosts:
            made.start_app(host, "scaleout_app:app", env)
        yield made, made.start_balancer()


def test_the_balancer_spreads_requests_over_the_hosts(shop: tuple[Cluster, str]) -> None:
    _, url = shop
    with httpx.Client(base_url=url, timeout=5) as client:
        answers = [client.get("/whoami") for _ in range(8)]
    assert {answer.status_code for answer in answers} == {200}
    assert hosts_answering(answers) == {"h1", "h2"}
    # the client's own address, from X-Forwarded-For: the balancer is a trusted proxy, the hosts see through it
    assert {answer.json()["client"] for answer in answers} == {shop[0].address("client")}


def test_one_rate_limit_budget_across_hosts(shop: tuple[Cluster, str]) -> None:
    _, url = shop
    with httpx.Client(base_url=url, timeout=5) as client:
        answers = [client.get("/limited") for _ in range(16)]
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == 10 and statuses.count(429) == 6, statuses  # ten for the client, not ten a host
    assert hosts_answering([answer for answer in answers if answer.status_code == 200]) == {"h1", "h2"}


def test_a_session_started_on_one_host_is_read_on_another(shop: tuple[Cluster, str]) -> None:
    _, url = shop
    with httpx.Client(base_url=url, timeout=5) as client:
        started = client.post("/session", json={"name": "ada"})
        assert started.status_code == 200
        reads = [client.get("/session") for _ in range(6)]
    assert {read.json()["name"] for read in reads} == {"ada"}
    assert hosts_answering([started, *reads]) == {"h1", "h2"}


def test_a_host_killed_is_routed_around_and_rejoins(shop: tuple[Cluster, str]) -> None:
    made, url = shop
    env = {"REDIS_URL": f"redis://{made.address('redis')}:6379/0", "TRUSTED_PROXIES": made.address("lb")}
    failures: list[Any] = []
    with httpx.Client(base_url=url, timeout=5) as client:
        made.stop("h2", sig=9)  # kill -9 of the host's server and its workers
        served: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = client.get("/whoami")
            (served if answer.status_code == 200 else failures).append(answer)
        assert not failures, [failure.status_code for failure in failures]
        assert hosts_answering(served[-5:]) == {"h1"}  # the balancer has taken h2 out
        made.start_app("h2", "scaleout_app:app", env)
        deadline = time.monotonic() + 15
        while "h2" not in hosts_answering([client.get("/whoami") for _ in range(4)]):
            assert time.monotonic() < deadline, "h2 never came back into the rotation"
            time.sleep(0.2)
