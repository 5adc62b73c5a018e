"""TLS and HTTP/2 through the embedded granian engine, over real sockets: ALPN over TLS (curl and httpx), HTTP/1.1
over TLS, h2c with prior knowledge in clear text, and ``--http 1`` refusing to speak h2."""

from __future__ import annotations

import ssl

import httpx
import orjson
import pytest
from _live import Certs, curl, curl_get

from cello.testing import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

ECHO = "/echo/request"


def _tls(certs: Certs) -> list[str]:
    return ["--ssl-certfile", certs.cert, "--ssl-keyfile", certs.key]


@pytest.fixture(scope="module")
def tls_server(live_module, certs) -> LiveServer:
    return live_module("core_app:app", extra_args=_tls(certs), ready_path="/__ready").start()


@pytest.fixture(scope="module")
def clear_server(live_module) -> LiveServer:
    return live_module("core_app:app", ready_path="/__ready").start()


def test_curl_negotiates_http2_over_tls_with_alpn(tls_server, certs):
    assert tls_server.url.startswith("https://")
    body, version = curl_get(tls_server.url + ECHO, "--http2", "--cacert", certs.ca)
    assert version == "2"
    seen = orjson.loads(body)
    assert seen["scheme"] == "https"
    assert seen["http_version"] == "2"
    assert seen["url"] == tls_server.url + ECHO
    assert seen["path"] == ECHO


def test_curl_http11_over_tls_still_works(tls_server, certs):
    body, version = curl_get(tls_server.url + ECHO, "--http1.1", "--cacert", certs.ca)
    assert version == "1.1"
    seen = orjson.loads(body)
    assert seen["scheme"] == "https"
    assert seen["http_version"] == "1.1"


def test_certificate_is_really_checked(tls_server):
    """The client side is not accepting anything: without the test CA, curl refuses the certificate."""
    result = curl("--http2", tls_server.url + ECHO)
    assert result.returncode == 60, result.stderr  # CURLE_PEER_FAILED_VERIFICATION


def test_httpx_http2_over_tls(tls_server, certs):
    context = ssl.create_default_context(cafile=certs.ca)
    with httpx.Client(http2=True, verify=context, timeout=10.0, trust_env=False) as client:
        response = client.get(tls_server.url + ECHO, params={"tag": ["a", "b"]})
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        seen = response.json()
        assert seen["scheme"] == "https"
        assert seen["http_version"] == "2"
        assert seen["tags"] == ["a", "b"]

        # several streams on the one connection, binary bodies byte-exact both ways
        blob = bytes(range(256)) * 64
        echoed = client.post(tls_server.url + "/echo/body", content=blob)
        assert echoed.http_version == "HTTP/2"
        assert echoed.content == blob
        assert client.get(tls_server.url + "/r/bytes").content == blob

    with httpx.Client(http1=True, http2=False, verify=context, timeout=10.0, trust_env=False) as client:
        response = client.get(tls_server.url + ECHO)
        assert response.http_version == "HTTP/1.1"
        assert response.json()["scheme"] == "https"


def test_h2c_prior_knowledge_in_clear_text(clear_server):
    body, version = curl_get(clear_server.url + ECHO, "--http2-prior-knowledge")
    assert version == "2"
    seen = orjson.loads(body)
    assert seen["scheme"] == "http"
    assert seen["http_version"] == "2"

    with httpx.Client(http1=False, http2=True, timeout=10.0, trust_env=False) as client:
        response = client.get(clear_server.url + "/")
        assert response.http_version == "HTTP/2"
        assert response.json() == {"message": "Hello, World!"}

    # the same port keeps serving plain HTTP/1.1
    body, version = curl_get(clear_server.url + ECHO, "--http1.1")
    assert (version, orjson.loads(body)["http_version"]) == ("1.1", "1.1")


def test_http1_mode_does_not_speak_h2(live, certs):
    tls = live("core_app:app", extra_args=["--http", "1", *_tls(certs)], ready_path="/__ready").start()
    # ALPN offers h2 and http/1.1; the server picks http/1.1
    body, version = curl_get(tls.url + ECHO, "--http2", "--cacert", certs.ca)
    assert version == "1.1"
    assert orjson.loads(body)["http_version"] == "1.1"
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=certs.ca), trust_env=False) as client:
        assert client.get(tls.url + ECHO).http_version == "HTTP/1.1"

    clear = live("core_app:app", extra_args=["--http", "1"], ready_path="/__ready").start()
    refused = curl("--http2-prior-knowledge", clear.url + ECHO, timeout=5)
    assert refused.returncode != 0, refused.stdout
    assert "Hello" not in refused.stdout
    with httpx.Client(http1=False, http2=True, timeout=5.0, trust_env=False) as client, pytest.raises(httpx.HTTPError):
        client.get(clear.url + ECHO)
    # and it does speak HTTP/1.1
    assert httpx.get(clear.url + "/", trust_env=False).json() == {"message": "Hello, World!"}
