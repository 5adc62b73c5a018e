"""JWT keys from a JWKS served over HTTP, rotated while a real server runs: a token naming a new ``kid`` makes
the server fetch the set again; a withdrawn key stops working, even for a token it had already accepted."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

pytestmark = pytest.mark.live

APPS = Path(__file__).resolve().parent.parent / "apps"


class KeyServer:
    """A JWKS endpoint on a loopback port whose key set the test swaps."""

    def __init__(self) -> None:
        self.document: dict = {"keys": []}
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *keys: tuple[str, object]) -> None:
        entries = []
        for kid, private in keys:
            public = private.public_key()  # type: ignore[attr-defined]
            rsa_key = isinstance(public, rsa.RSAPublicKey)
            algorithm = jwt.algorithms.RSAAlgorithm if rsa_key else jwt.algorithms.ECAlgorithm
            entry = json.loads(algorithm.to_jwk(public))
            entries.append({**entry, "kid": kid, "use": "sig"})
        self.document = {"keys": entries}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def key_server():
    server = KeyServer()
    yield server
    server.close()


def token(private: object, kid: str, sub: str) -> str:
    algorithm = "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode({"sub": sub, "exp": 2_000_000_000}, private, algorithm=algorithm, headers={"kid": kid})


@pytest.mark.parametrize("face", ["granian", "uvicorn"])
def test_key_rotation_by_kid(live, key_server, face):
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new = ec.generate_private_key(ec.SECP256R1())
    key_server.publish(("old", old))
    server = live("jwks_app:app", face, ready_path="/__ready",
                  env={"CELLO_TEST_JWKS_URL": key_server.url, "PYTHONPATH": str(APPS)}).start()  # fmt: skip

    def me(tok: str) -> httpx.Response:
        return httpx.get(server.url + "/me", headers={"authorization": f"Bearer {tok}"}, timeout=10)

    old_token = token(old, "old", "alice")
    assert me(old_token).json()["user"] == "alice"
    assert me(token(new, "new", "bob")).status_code == 401  # not published yet
    fetches = key_server.fetches

    key_server.publish(("old", old), ("new", new))  # rotation starts: both keys published
    time.sleep(0.3)  # past jwks_min_refresh
    assert me(token(new, "new", "bob")).json()["user"] == "bob"
    assert key_server.fetches > fetches
    assert me(old_token).status_code == 200

    key_server.publish(("new", new))  # the old key is withdrawn
    time.sleep(0.3)
    assert me(token(new, "newer", "carol")).status_code == 401  # an unknown kid makes it fetch: "old" is gone
    assert me(old_token).status_code == 401  # accepted before, refused now
    assert me(token(new, "new", "bob")).status_code == 200
    # a token naming an unknown kid does not make the server hammer the key server
    before = key_server.fetches
    for _ in range(5):
        assert me(token(new, "bogus", "eve")).status_code == 401
    assert key_server.fetches - before <= 1


def test_a_withdrawn_key_s_cached_tokens_stop_working_when_the_key_set_expires(live, key_server):
    """No unknown kid comes to make the server look again: the key set's ttl alone must retire the withdrawn key,
    tokens already verified (and cached) included."""
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_server.publish(("old", old))
    server = live("jwks_app:app", ready_path="/__ready",
                  env={"CELLO_TEST_JWKS_URL": key_server.url, "CELLO_TEST_JWKS_TTL": "0.5",
                       "PYTHONPATH": str(APPS)}).start()  # fmt: skip
    old_token = token(old, "old", "alice")

    def me() -> int:
        return httpx.get(server.url + "/me", headers={"authorization": f"Bearer {old_token}"}, timeout=10).status_code

    assert me() == 200 and me() == 200  # verified, then from the token cache
    key_server.publish()  # withdrawn
    time.sleep(0.7)  # past the key set's ttl
    assert me() == 401
