"""Authentication and guards through every engine face, and the attacks they must refuse.

JWT: alg none, algorithm confusion (an RSA public key used as an HMAC secret), tampered payloads, foreign
signatures, expired / not-yet-valid tokens, wrong issuer or audience. Basic and API keys. Guards: 401 for
anonymous callers, 403 for known ones, never 500; no path spelling or method override reaches a guarded handler.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from urllib.parse import urlsplit

import pytest
from security_app import AUDIENCE, ISSUER, KEYS, SECRET, hs_config, rs_config


@pytest.fixture
def client(sec_client):
    return sec_client


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, key: bytes | None = None, signature: bytes = b"") -> str:
    """A token built by hand, the way an attacker would: any header, any payload, any HMAC key."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if key is not None:
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**extra):
    now = int(time.time())
    return {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **extra}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_refused(response, path: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'
    # one answer for every way a token can be wrong: nothing tells an attacker which check failed
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "The credentials are not valid.",
        "instance": path,
    }


# -- JWT: the happy paths ----------------------------------------------------------------------------------------


def test_jwt_claims_reach_the_handler(client):
    token = hs_config.create_token({"sub": "alice", "role": "admin"})
    response = client.get("/jwt/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"user": "alice", "role": "admin", "id": "alice"}


def test_jwt_scheme_is_case_insensitive_and_cookie_works(client):
    token = hs_config.create_token({"sub": "alice"})
    assert client.get("/jwt/me", headers={"authorization": f"bearer {token}"}).status_code == 200
    assert client.get("/jwt/me", headers={"cookie": f"access_token={token}"}).json()["user"] == "alice"


def test_jwt_missing_token_is_challenged(client):
    response = client.get("/jwt/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert response.json()["detail"] == "Authentication is required."
    assert client.get("/jwt/me", headers={"authorization": "Basic YWxpY2U6eA=="}).status_code == 401
    assert client.get("/jwt/me", headers={"authorization": "Bearer"}).status_code == 401


def test_rs256_tokens_verify_with_the_public_key(client):
    response = client.get("/rs/me", headers=bearer(rs_config.create_token({"sub": "carol"})))
    assert response.status_code == 200
    assert response.json() == {"user": "carol"}


# -- JWT: the attacks ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_jwt_alg_none_is_refused(client, alg):
    token = forge({"alg": alg, "typ": "JWT"}, claims(role="admin"))
    assert_refused(client.get("/jwt/me", headers=bearer(token)), "/jwt/me")
    assert_refused(client.get("/rs/me", headers=bearer(token)), "/rs/me")


def test_jwt_algorithm_confusion_is_refused(client):
    """An HS256 token "signed" with the server's RSA public key as the HMAC secret."""
    public_pem = (KEYS / "rsa_public.pem").read_bytes()
    for key in (public_pem, public_pem.strip()):
        token = forge({"alg": "HS256", "typ": "JWT"}, claims(sub="carol"), key=key)
        assert_refused(client.get("/rs/me", headers=bearer(token)), "/rs/me")


def test_jwt_signed_for_another_algorithm_family_is_refused(client):
    hs_token = hs_config.create_token({"sub": "alice"})
    assert_refused(client.get("/rs/me", headers=bearer(hs_token)), "/rs/me")
    rs_token = rs_config.create_token({"sub": "carol", "iss": ISSUER, "aud": AUDIENCE})
    assert_refused(client.get("/jwt/me", headers=bearer(rs_token)), "/jwt/me")


def test_jwt_tampered_payload_is_refused(client):
    token = hs_config.create_token({"sub": "mallory", "role": "user"})
    header, _, signature = token.split(".")
    tampered = f"{header}.{b64(json.dumps(claims(role='admin')).encode())}.{signature}"
    assert_refused(client.get("/jwt/admin", headers=bearer(tampered)), "/jwt/admin")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # a changed signature
        lambda t: t.rsplit(".", 1)[0] + ".",  # no signature
        lambda t: t + ".extra",  # four segments
        lambda t: "not-a-token",
        lambda t: "e30.e30.e30",  # {} . {} . {}
        lambda t: "\u00e9t\u00e9.x.y",
    ],
)
def test_jwt_malformed_or_resigned_tokens_are_refused(client, mutate):
    token = mutate(hs_config.create_token({"sub": "alice"}))
    response = client.get("/jwt/me", headers={"authorization": f"Bearer {token}".encode()})
    assert response.status_code == 401


def test_jwt_signed_with_another_secret_is_refused(client):
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(), key=b"another-secret-that-is-32-bytes-long!!")
    assert_refused(client.get("/jwt/me", headers=bearer(token)), "/jwt/me")


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 60},  # expired
        {"nbf": int(time.time()) + 3600},  # not yet valid
        {"iss": "https://evil.example"},
        {"aud": "someone-else"},
        {"exp": None},  # no expiry at all (exp is required)
        {"aud": None},  # no audience although one is configured
        {"iss": None},
    ],
    ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "no-exp", "no-aud", "no-iss"],
)
def test_jwt_claims_are_enforced(client, overrides):
    payload = {k: v for k, v in {**claims(), **overrides}.items() if v is not None}
    token = forge({"alg": "HS256", "typ": "JWT"}, payload, key=SECRET)
    assert_refused(client.get("/jwt/me", headers=bearer(token)), "/jwt/me")


# -- guards ----------------------------------------------------------------------------------------------------------


def user_token(sub: str, *roles: str, permissions: tuple[str, ...] = ()) -> dict[str, str]:
    return bearer(hs_config.create_token({"sub": sub, "roles": list(roles), "permissions": list(permissions)}))


def test_role_guard_401_for_anonymous_403_for_others(client):
    anonymous = client.get("/g/admin")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="api"'
    assert anonymous.headers["content-type"] == "application/problem+json"
    forbidden = client.get("/g/admin", headers=user_token("bob", "staff"))
    assert forbidden.status_code == 403
    assert forbidden.json()["title"] == "Forbidden"
    assert client.get("/g/admin", headers=user_token("ann", "admin")).json() == {"ok": "admin"}


def test_optional_authentication_lets_anonymous_callers_in(client):
    assert client.get("/g/anyone").json() == {"user": None}
    assert client.get("/g/anyone", headers=user_token("ann")).json() == {"user": "ann"}
    # bad credentials are still refused, optional or not
    assert client.get("/g/anyone", headers=bearer("junk")).status_code == 401


def test_composed_guards(client):
    assert client.get("/g/staff", headers=user_token("bob", "staff")).status_code == 200
    assert client.get("/g/staff", headers=user_token("ann", "admin")).status_code == 200
    assert client.get("/g/staff", headers=user_token("eve", "guest")).status_code == 403
    assert client.get("/g/not-banned", headers=user_token("bob", "staff")).status_code == 200
    assert client.get("/g/not-banned", headers=user_token("eve", "banned")).status_code == 403
    assert client.get("/g/not-banned").status_code == 401
    editor = user_token("ed", "editor", permissions=("posts:write",))
    assert client.post("/jwt/posts", headers=editor).status_code == 200
    assert client.post("/jwt/posts", headers=user_token("ed", "editor")).status_code == 403


def test_function_guards_sync_and_async(client):
    assert client.get("/g/users/bob", headers=user_token("bob")).json() == {"ok": "bob"}
    assert client.get("/g/users/bob", headers=user_token("eve")).status_code == 403
    assert client.get("/g/users/bob", headers=user_token("ann", "admin")).status_code == 200
    assert client.get("/g/hours", headers={**user_token("bob"), "x-hour": "10"}).status_code == 200
    assert client.get("/g/hours", headers={**user_token("bob"), "x-hour": "3"}).status_code == 403


def test_a_failing_guard_refuses_and_never_500s(client):
    response = client.get("/g/broken", headers=user_token("ann", "admin"))
    assert response.status_code == 403
    assert "RuntimeError" not in response.text and "bug" not in response.text


def test_public_route_skips_guards(client):
    assert client.get("/g/public").json() == {"ok": "public"}


def test_method_override_headers_do_not_bypass_guards(client):
    user = user_token("eve", "guest")
    for header in ("x-http-method-override", "x-http-method", "x-method-override"):
        response = client.post("/admin", headers={**user, header: "GET"})
        assert response.status_code == 403
    assert client.post("/admin?_method=GET", headers=user).status_code == 403
    assert client.post("/admin", headers=user_token("ann", "admin")).json() == {"area": "admin", "method": "POST"}


def raw_get(base_url: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A request with the target exactly as written: HTTP clients normalize what an attacker would not."""
    parts = urlsplit(str(base_url))
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "target",
    ["/admin", "//admin", "/admin/", "/%61dmin", "/%2Fadmin", "/admin%2F", "/admin%2Fsettings", "/./admin",
     "/x/../admin", "/admin/./", "/ADMIN", "/admin;x=1", "/admin%00", "/admin/settings", "/%2e/admin"],
)  # fmt: skip
def test_path_tricks_never_reach_a_guarded_handler(client, face, target):
    if face == "inprocess":
        pytest.skip("raw request targets need a real socket")
    anonymous_status, anonymous_body = raw_get(client.base_url, target, {})
    user_status, user_body = raw_get(client.base_url, target, user_token("eve", "guest"))
    for status, body in ((anonymous_status, anonymous_body), (user_status, user_body)):
        assert status != 200 and b'"area"' not in body, (target, status, body)
        assert status < 500
    # the admin still gets in through the canonical path
    assert raw_get(client.base_url, "/admin", user_token("ann", "admin"))[0] == 200


# -- Basic and API keys --------------------------------------------------------------------------------------------


def test_basic_auth(client):
    response = client.get("/basic/me", auth=("alice", "wonderland-password"))
    assert response.json() == {"user": "alice", "roles": ["admin"]}
    for auth in (("alice", "wrong"), ("mallory", "wonderland-password"), ("alice", "")):
        refused = client.get("/basic/me", auth=auth)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Basic realm="Cello tests", charset="UTF-8"'
    challenge = client.get("/basic/me")
    assert challenge.status_code == 401
    assert challenge.headers["www-authenticate"].startswith("Basic realm=")
    for header in ("Basic !!!notbase64", "Basic " + b64(b"no-colon"), "Basic " + b64(b"\xff\xfe:x")):
        assert client.get("/basic/me", headers={"authorization": header}).status_code == 401


def test_basic_auth_with_an_async_verifier_and_guard(client):
    assert client.get("/basic-db/me", auth=("bob", "builder-password")).json() == {"user": "bob"}
    assert client.get("/basic-db/me", auth=("bob", "nope")).status_code == 401


def test_api_keys_with_scopes(client):
    reader = {"x-api-key": "reader-key-0123456789abcdef"}
    writer = {"x-api-key": "writer-key-0123456789abcdef"}
    listed = client.get("/orders", headers=reader)
    assert listed.status_code == 200
    caller = listed.json()["caller"]
    assert caller.startswith("key:") and "reader" not in caller  # the key itself is never echoed
    assert client.post("/orders", headers=reader).status_code == 403
    assert client.post("/orders", headers=writer).json() == {"created": True}
    assert client.get("/orders", params={"api_key": "reader-key-0123456789abcdef"}).status_code == 200
    assert client.get("/orders", headers={"x-api-key": "reader-key-0123456789abcdeX"}).status_code == 401
    missing = client.get("/orders")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'ApiKey header="x-api-key"'


def test_unprotected_routes_stay_open(client):
    assert client.get("/open").json() == {"open": True}
