"""HTTP/3: ``http3=True`` serves QUIC on the same port number as TCP (hypercorn + aioquic), and the TCP responses
advertise it with ``Alt-Svc``. Requests go through aioquic's own client, with the certificate verified."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
import time

import httpx
import orjson
import pytest
from _live import APPS_DIR, Certs
from h3client import h3_request

from cello.testing import LiveServer

pytest.importorskip("aioquic")
pytest.importorskip("hypercorn")

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

BLOB = bytes(range(256)) * 64


def _alt_svc_h3(response: httpx.Response, port: int) -> None:
    advertised = response.headers.get_list("alt-svc")
    assert any(value.startswith(f'h3=":{port}"') for value in advertised), advertised


def _tcp_client(certs: Certs, http2: bool) -> httpx.Client:
    context = ssl.create_default_context(cafile=certs.ca)
    return httpx.Client(http2=http2, http1=not http2, verify=context, timeout=10.0, trust_env=False)


def test_cello_run_http3_serves_quic_on_the_same_port(live, certs):
    server: LiveServer = live(
        "core_app:app",
        extra_args=["--http3", "--ssl-certfile", certs.cert, "--ssl-keyfile", certs.key],
        ready_path="/__ready",
    ).start()
    assert server.url.startswith("https://")

    for http2 in (False, True):
        with _tcp_client(certs, http2) as client:
            response = client.get(server.url + "/")
            assert response.json() == {"message": "Hello, World!"}
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            _alt_svc_h3(response, server.port)

    async def over_quic():
        hello = await h3_request(server.host, server.port, "/", cafile=certs.ca)
        echo = await h3_request(server.host, server.port, "/echo/request?tag=q", cafile=certs.ca)
        posted = await h3_request(server.host, server.port, "/echo/body", cafile=certs.ca, method="POST", body=BLOB)
        return hello, echo, posted

    hello, echo, posted = asyncio.run(over_quic())
    assert hello.status == 200
    assert orjson.loads(hello.body) == {"message": "Hello, World!"}
    assert hello.headers["content-type"].startswith("application/json")
    seen = orjson.loads(echo.body)
    assert seen["scheme"] == "https"
    assert seen["http_version"] == "3"
    assert seen["tags"] == ["q"]
    assert posted.status == 200
    assert posted.body == BLOB


def test_run_http3_from_a_script(live, certs, tmp_path):
    """``app.run(http3=True, ssl_certfile=..., ssl_keyfile=...)``, the way a script starts it."""
    options = {"http3": True, "ssl_certfile": certs.cert, "ssl_keyfile": certs.key, "log_level": "warning"}
    server: LiveServer = live(
        [sys.executable, str(APPS_DIR / "lifecycle_app.py"), "{port}"],
        scheme="https",
        ready_path="/__ready",
        env={"CELLO_RUN_OPTIONS": json.dumps(options), "CELLO_MARKS_DIR": str(tmp_path)},
    ).start()

    with _tcp_client(certs, http2=True) as client:
        response = client.get(server.url + "/info")
        _alt_svc_h3(response, server.port)
        assert response.json()["scheme"] == "https"

    info = asyncio.run(h3_request(server.host, server.port, "/info", cafile=certs.ca))
    assert info.status == 200
    body = orjson.loads(info.body)
    assert body["http_version"] == "3"
    assert body["started"] is True  # the lifespan ran under hypercorn too
    assert body["module"] == "__main__"

    pid = body["pid"]
    server.stop()
    assert server.returncode == 0
    assert (tmp_path / f"startup-{pid}").exists()
    assert (tmp_path / f"shutdown-{pid}").exists()


def test_http3_cluster_keeps_each_quic_connection_on_one_worker(live, certs):
    """Two workers: every QUIC request completes (each worker has its own SO_REUSEPORT socket, so a connection's
    datagrams are not split between processes), both pids answer, and a killed worker is respawned."""
    server: LiveServer = live(
        "core_app:app",
        workers=2,
        extra_args=["--http3", "--ssl-certfile", certs.cert, "--ssl-keyfile", certs.key],
        ready_path="/__ready",
    ).start()

    async def pids(count: int, until_distinct: int = 0) -> list[int]:
        answers = []
        for _ in range(count):
            response = await h3_request(server.host, server.port, "/state", cafile=certs.ca, timeout=5.0)
            assert response.status == 200
            answers.append(orjson.loads(response.body)["pid"])
            if until_distinct and len(set(answers)) >= until_distinct:
                break
        return answers

    first = asyncio.run(pids(40, until_distinct=2))
    assert len(set(first)) == 2, first
    assert set(first) <= set(server.processes())

    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20.0
    seen: set[int] = set()
    while time.monotonic() < deadline and not (seen - set(first)):
        with contextlib.suppress(TimeoutError, ConnectionError):
            seen.update(asyncio.run(pids(4)))
    assert seen - set(first), f"no respawned worker answered over QUIC: {seen}"
    assert victim not in server.processes()

    with _tcp_client(certs, http2=True) as client:
        _alt_svc_h3(client.get(server.url + "/state"), server.port)
    server.stop()
    assert server.returncode == 0, server.output()
