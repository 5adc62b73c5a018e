"""Security pieces in process: configuration refusals, the seed's JWT snippet, the verified-token cache,
static JWKS documents, user loaders and guard composition."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from cello import App
from cello.http.exceptions import ConfigurationError
from cello.middleware import JwtAuth, JwtConfig
from cello.security import (
    And,
    ApiKeyAuth,
    Authenticated,
    BasicAuth,
    Not,
    Or,
    Permission,
    Principal,
    Role,
    UserLoader,
)
from cello.security.guards import as_guard
from cello.testing import TestClient

SECRET = b"unit-test-secret-that-is-long-enough!"


def test_the_seed_jwt_snippet_runs_unchanged():
    from cello import App
    from cello.middleware import JwtAuth, JwtConfig

    app = App()
    jwt_config = JwtConfig(secret=b"your-secret-key-min-32-bytes-long")
    app.use(JwtAuth(jwt_config))

    @app.get("/protected")
    def protected(request):
        claims = request.context.get("jwt_claims")
        return {"user": claims["sub"], "role": claims.get("role")}

    token = jwt_config.create_token({"sub": "alice", "role": "admin"})
    with TestClient(app) as client:
        assert client.get("/protected", headers={"authorization": f"Bearer {token}"}).json() == {
            "user": "alice",
            "role": "admin",
        }
        assert client.get("/protected").status_code == 401
        # the documentation pages stay reachable behind an app-wide authenticator
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret": b"short"}, "at least 32 bytes"),
        ({"secret": b"-----BEGIN PUBLIC KEY-----\n" + b"A" * 64}, "not an HMAC secret"),
        ({"secret": SECRET, "algorithms": ["none"]}, "'none'"),
        ({"secret": SECRET, "algorithms": ["HS256", "RS256"]}, "HS256/HS384/HS512 only"),
        ({}, "exactly one"),
        ({"secret": SECRET, "jwks": {"keys": []}}, "exactly one"),
        ({"secret": SECRET, "leeway": -1}, ">= 0"),
    ],
)
def test_jwt_config_refuses_unsafe_settings(options, message):
    with pytest.raises(ConfigurationError, match=message):
        JwtConfig(**options)


def test_public_keys_never_accept_hmac_algorithms():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ConfigurationError, match="HS algorithms need a secret"):
        JwtConfig(public_key=key.public_key(), algorithms=["RS256", "HS256"])
    assert JwtConfig(public_key=key.public_key()).algorithms == ["RS256"]
    assert JwtConfig(private_key=ed25519.Ed25519PrivateKey.generate()).algorithms == ["EdDSA"]


def test_create_token_fills_standard_claims():
    config = JwtConfig(secret=SECRET, issuer="iss", audience="aud", key_id="k1")
    token = config.create_token({"sub": "alice"}, expires_in=timedelta(minutes=5))
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="aud")
    assert header["kid"] == "k1" and header["alg"] == "HS256"
    assert claims["iss"] == "iss" and claims["aud"] == "aud"
    assert 290 <= claims["exp"] - claims["iat"] <= 300
    with pytest.raises(ConfigurationError):
        JwtConfig(public_key=rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()).create_token(
            {"sub": "x"}
        )


def make_app(*middleware, guards=()):
    app = App(openapi=False)
    for layer in middleware:
        app.use(layer)

    @app.get("/me", guards=list(guards))
    def me(request):
        user = request.user
        return {"id": user.id if user else None, "roles": sorted(user.roles) if user else []}

    return app


def test_cached_tokens_still_expire():
    config = JwtConfig(secret=SECRET)
    auth = JwtAuth(config)
    token = config.create_token({"sub": "alice"}, expires_in=1)
    with TestClient(make_app(auth)) as client:
        assert client.get("/me", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert token in auth._token_cache
        expires = jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
        time.sleep(max(0.0, expires - time.time()) + 0.05)
        assert client.get("/me", headers={"authorization": f"Bearer {token}"}).status_code == 401
        assert token not in auth._token_cache


def test_the_token_cache_is_bounded():
    config = JwtConfig(secret=SECRET, cache_size=3)
    auth = JwtAuth(config)
    with TestClient(make_app(auth)) as client:
        for index in range(10):
            token = config.create_token({"sub": f"user{index}"})
            assert client.get("/me", headers={"authorization": f"Bearer {token}"}).json()["id"] == f"user{index}"
    assert len(auth._token_cache) == 3


def test_static_jwks_document_and_roles_from_scope():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    import json

    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "main", "use": "sig"}
    auth = JwtAuth(jwks={"keys": [jwk]})
    token = jwt.encode(
        {"sub": "svc", "exp": int(time.time()) + 60, "scope": "orders:read orders:write", "roles": ["ops"]},
        key,
        algorithm="RS256",
        headers={"kid": "main"},
    )
    app = make_app(auth, guards=[Permission("orders:write") & Role("ops")])
    with TestClient(app) as client:
        assert client.get("/me", headers={"authorization": f"Bearer {token}"}).json() == {"id": "svc", "roles": ["ops"]}
    with pytest.raises(ConfigurationError, match="symmetric"):
        JwtAuth(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]})


def test_excluded_paths_and_overrides():
    config = JwtConfig(secret=SECRET)
    auth = JwtAuth(config, exclude_paths=["/health", "/public/*"])
    assert auth.excluded("/health") and auth.excluded("/public/a/b") and not auth.excluded("/healthz")


def test_user_loader_feeds_guards():
    def load(request):
        name = request.headers.get("x-user")
        return {"id": name, "roles": ["admin"] if name == "root" else []} if name else None

    async def load_async(request):
        return load(request)

    for loader in (load, load_async):
        app = make_app(UserLoader(loader), guards=[Role("admin")])
        with TestClient(app) as client:
            assert client.get("/me", headers={"x-user": "root"}).json() == {"id": "root", "roles": ["admin"]}
            assert client.get("/me", headers={"x-user": "joe"}).status_code == 403
            assert client.get("/me").status_code == 401
            assert "www-authenticate" not in client.get("/me").headers  # no authenticator said how


def test_guards_read_the_session_user():
    async def fake_session(request, call_next):  # what the sessions middleware leaves in the context
        request.context["session"] = {"user": {"id": "sam", "roles": ["editor"], "permissions": ["posts:write"]}}
        return await call_next(request)

    app = make_app(fake_session, guards=[Role("editor") & Permission("posts:write")])
    with TestClient(app) as client:
        assert client.get("/me").json() == {"id": "sam", "roles": ["editor"]}


def test_guard_composition_and_errors():
    def user(*roles, permissions=()):
        return Principal("u", frozenset(roles), frozenset(permissions))

    rule = Role("admin") | (Role("editor") & ~Role("suspended"))
    assert rule.check(None, user("admin"))
    assert rule.check(None, user("editor"))
    assert not rule.check(None, user("editor", "suspended"))
    assert not rule.check(None, None)
    assert And(Authenticated(), lambda request: True).check(None, user())
    assert Or(Role("x"), Permission("p")).check(None, user(permissions=("p",)))
    assert Not(Role("x")).check(None, None)
    assert repr(rule) == "(Role('admin') | (Role('editor') & ~Role('suspended')))"
    with pytest.raises(TypeError):
        as_guard("admin")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Role()


def test_a_sync_guard_returning_an_awaitable_refuses():
    async def check(request):
        return True

    def sneaky(request):
        return check(request)  # a coroutine is truthy: taken as an answer it would let everyone in

    with TestClient(make_app(guards=[sneaky])) as client:
        assert client.get("/me").status_code == 401


def test_authenticator_configuration_errors():
    with pytest.raises(ConfigurationError):
        BasicAuth()
    with pytest.raises(ConfigurationError):
        BasicAuth(users={"a": "b"}, verify=lambda u, p: True)
    with pytest.raises(ConfigurationError, match="16 characters"):
        ApiKeyAuth(["short"])
    with pytest.raises(ConfigurationError):
        ApiKeyAuth(["a-long-enough-api-key"], header=None)


def test_openapi_declares_schemes_requirements_and_answers():
    from security_app import app

    document = app.openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["jwt"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["basic"] == {"type": "http", "scheme": "basic"}
    assert schemes["api_key"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    me = document["paths"]["/jwt/me"]["get"]
    assert me["security"] == [{"jwt": []}]
    assert "401" in me["responses"]
    guarded = document["paths"]["/g/admin"]["get"]
    assert guarded["security"] == [{"jwt": []}, {}]  # optional authentication
    assert {"401", "403"} <= set(guarded["responses"])
    assert "security" not in document["paths"]["/open"]["get"]
    assert "security" not in document["paths"]["/g/public"]["get"]


def test_every_secret_is_compared_in_constant_time(monkeypatch):
    """Each check of a client-supplied secret goes through hmac.compare_digest (PyJWT's HMAC check included).
    API keys are the exception by design: they are looked up by their SHA-256 digest (see cello.security.api_key)."""
    import hmac

    from cello.security import CSRF, Sessions

    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    secret = "a-session-and-csrf-secret-of-32-bytes+"
    app = App(openapi=False)
    app.use(Sessions(secret=secret))
    app.use(CSRF(secret=secret))
    basic = BasicAuth(users={"alice": "wonderland-password"})
    config = JwtConfig(secret=SECRET, cache_size=0)

    @app.post("/session")
    def write(request):
        request.session["n"] = 1
        return {"ok": True}

    @app.get("/basic", middleware=[basic])
    def basic_route():
        return {"ok": True}

    @app.get("/jwt", middleware=[JwtAuth(config)])
    def jwt_route():
        return {"ok": True}

    def compared(send) -> int:
        before = len(calls)
        send()
        return len(calls) - before

    with TestClient(app) as client:
        token = client.get("/basic", auth=("alice", "x")).cookies["csrftoken"]
        assert compared(lambda: client.get("/basic", auth=("alice", "wonderland-password"))) >= 1
        assert compared(lambda: client.get("/basic", auth=("mallory", "wonderland-password"))) >= 1
        assert compared(lambda: client.post("/session", headers={"x-csrf-token": token})) >= 2  # cookie sig + token
        assert client.cookies.get("session")
        assert compared(lambda: client.post("/session", headers={"x-csrf-token": token})) >= 3  # + session sig
        bearer = {"authorization": f"Bearer {config.create_token({'sub': 'a'})}"}
        assert compared(lambda: client.get("/jwt", headers=bearer)) >= 1


def test_csrf_protects_a_jwt_in_a_cookie():
    """A JWT kept in a cookie rides along on a forged cross-site POST like a session would: the CSRF check stops it."""
    from cello.security import CSRF

    config = JwtConfig(secret=SECRET, cookie="access_token")
    app = App(openapi=False)
    app.use(CSRF(secret=SECRET, form_field=None))
    app.use(JwtAuth(config))

    @app.post("/transfer")
    def transfer(request):
        return {"by": request.user.id}

    @app.get("/page")
    def page():
        return {"ok": True}

    with TestClient(app) as client:
        client.cookies.set("access_token", config.create_token({"sub": "victim"}))
        token = client.get("/page").cookies["csrftoken"]
        assert client.post("/transfer").status_code == 403  # the forged request: cookie, no token
        refused = client.post("/transfer", headers={"origin": "https://evil.example", "x-csrf-token": token})
        assert refused.status_code == 403
        assert client.post("/transfer", headers={"x-csrf-token": token}).json() == {"by": "victim"}
