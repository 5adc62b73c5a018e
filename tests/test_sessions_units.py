"""Sessions and CSRF protection in process: configuration errors, the Session mapping, what reaches the store
(records, TTLs, refresh throttling), a store that goes down, values that cannot be saved, and the middleware
attached per route or behind hooks (its non-hook shape)."""

from __future__ import annotations

import logging

import pytest

from cello import App
from cello.http.exceptions import ConfigurationError
from cello.security.csrf import CSRF, CSRFConfig
from cello.security.sessions import Session, SessionConfig, Sessions
from cello.stores import MemoryStore, StoreUnavailable
from cello.testing import TestClient

SECRET = "unit-test-secret-for-sessions-0123456789"


# -- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [Sessions, CSRF])
def test_short_secrets_are_refused_at_configuration_time(factory):
    for secret in ("", "short", b"x" * 31):
        with pytest.raises(ConfigurationError, match="at least 32 bytes"):
            factory(secret=secret)
    factory(secret=b"x" * 32)


@pytest.mark.parametrize(
    "options",
    [{"max_age": 0}, {"idle_timeout": -1}, {"cookie_name": "bad name"}, {"samesite": "sometimes"},
     {"max_cookie_size": 10}],
)  # fmt: skip
def test_bad_session_options(options):
    with pytest.raises(ConfigurationError):
        Sessions(secret=SECRET, **options)


def test_config_and_options_are_not_mixed():
    with pytest.raises(ConfigurationError):
        Sessions(SessionConfig(secret=SECRET), cookie_name="other")
    with pytest.raises(ConfigurationError):
        CSRF(CSRFConfig(secret=SECRET), cookie_name="other")


@pytest.mark.parametrize("origin", ["app.example", "https://app.example/path", "*"])
def test_trusted_origins_must_be_origins(origin):
    with pytest.raises(ConfigurationError, match="trusted origin"):
        CSRF(secret=SECRET, trusted_origins=[origin])


def test_the_app_shortcuts_build_the_middleware():
    app = App()
    assert isinstance(app.enable_sessions(secret=SECRET, store=MemoryStore()), Sessions)
    assert isinstance(app.enable_sessions(SessionConfig(secret=SECRET)), Sessions)
    assert isinstance(app.enable_csrf(secret=SECRET), CSRF)
    assert isinstance(app.enable_csrf(CSRFConfig(secret=SECRET, form_field=None)), CSRF)


def test_which_shape_each_configuration_runs_in():
    assert Sessions(secret=SECRET).uses_hooks  # cookie sessions: no await
    assert not Sessions(secret=SECRET, store=MemoryStore()).uses_hooks
    assert not CSRF(secret=SECRET).uses_hooks  # a form field may have to be read from a streamed body
    assert CSRF(secret=SECRET, form_field=None).uses_hooks


# -- the Session mapping ------------------------------------------------------------------------------------


def test_session_tracks_reads_and_changes():
    session = Session({"a": 1})
    assert not session.modified and not session.accessed
    assert session.get("a") == 1 and session.accessed and not session.modified
    session["b"] = 2
    assert session.modified
    assert dict(session) == {"a": 1, "b": 2} and len(session) == 2 and "b" in session
    session.pop("a")
    assert dict(session) == {"b": 2}
    session.regenerate()
    assert session._regenerate and dict(session) == {"b": 2}
    session.clear()
    assert session._invalidated and dict(session) == {}


# -- tokens -------------------------------------------------------------------------------------------------


def test_csrf_tokens_verify_only_under_their_own_secret():
    csrf = CSRF(secret=SECRET)
    token = csrf.new_token()
    assert csrf.verify(token)
    assert token != csrf.new_token()
    assert not CSRF(secret=SECRET + "!").verify(token)
    nonce, _, signature = token.partition(".")
    for bad in (nonce, "." + signature, nonce + ".", token[:-1], "ü" + token, token + "." + signature, "x" * 300):
        assert not csrf.verify(bad)


def test_a_session_cookie_is_not_a_csrf_token_under_a_shared_secret():
    app = App()
    app.use(Sessions(secret=SECRET))
    app.post("/set")(lambda request: request.session.update(n=1))
    with TestClient(app) as client:
        cookie = client.post("/set").cookies["session"]
    assert not CSRF(secret=SECRET).verify(cookie)


# -- server-side records ------------------------------------------------------------------------------------


class RecordingStore(MemoryStore):
    """A memory store that remembers what was written, and can be taken down."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, float | None]] = []
        self.down = False

    async def get(self, key):
        if self.down:
            raise StoreUnavailable("down for the test")
        return await super().get(key)

    async def set(self, key, value, ttl=None):
        if self.down:
            raise StoreUnavailable("down for the test")
        self.writes.append((key, ttl))
        await super().set(key, value, ttl)

    async def delete(self, *keys):
        if self.down:
            raise StoreUnavailable("down for the test")
        return await super().delete(*keys)


def session_app(store, **options):
    app = App()
    app.use(Sessions(secret=SECRET, store=store, **options))

    @app.get("/")
    def show(request):
        return {"data": dict(request.session), "new": request.session.new}

    @app.post("/")
    def update(request):
        request.session.update(request.json())
        return {"data": dict(request.session)}

    @app.post("/append")
    def append(request):
        request.session["items"].append(request.json())
        if request.query.get("mark"):
            request.session.modified = True
        return {"data": dict(request.session)}

    @app.post("/object")
    def unserializable(request):
        request.session["when"] = object()
        return {"ok": True}

    return app


@pytest.mark.parametrize(("idle", "max_age", "ttl"), [(30, 60, 30), (None, 60, 60), (100, 60, 60)])
def test_records_live_for_the_idle_timeout_within_the_absolute_expiry(idle, max_age, ttl):
    store = RecordingStore()
    with TestClient(session_app(store, idle_timeout=idle, max_age=max_age, key_prefix="s:")) as client:
        client.post("/", json={"n": 1})
    ((key, written_ttl),) = store.writes
    assert key.startswith("s:") and len(key) == 2 + 43
    assert ttl - 1 < written_ttl <= ttl


def test_an_idle_refresh_is_written_at_most_once_per_interval():
    store = RecordingStore()
    with TestClient(session_app(store, idle_timeout=600)) as client:  # refreshed at most once a minute
        client.post("/", json={"n": 1})
        for _ in range(5):
            assert client.get("/").json()["data"] == {"n": 1}
    assert len(store.writes) == 1


def test_nested_changes_are_saved_when_marked():
    with TestClient(session_app(RecordingStore())) as client:
        client.post("/", json={"items": []})
        client.post("/append", json="lost")  # changed in place, not marked: not saved
        assert client.get("/").json()["data"] == {"items": []}
        client.post("/append?mark=1", json="kept")
        assert client.get("/").json()["data"] == {"items": ["kept"]}


@pytest.mark.parametrize("store", [None, "memory"])
def test_a_value_that_cannot_be_serialized_is_a_logged_500(store, caplog):
    app = session_app(RecordingStore() if store else None)
    with TestClient(app) as client, caplog.at_level(logging.ERROR, "cello.security.sessions"):
        response = client.post("/object")
    assert response.status_code == 500
    assert response.json()["detail"] == "The session could not be saved."
    assert "set-cookie" not in response.headers
    assert "JSON-serializable" in caplog.text


def test_a_store_that_goes_down(caplog):
    store = RecordingStore()
    with TestClient(session_app(store)) as client:
        client.post("/", json={"n": 1})
        cookie = client.cookies["session"]
        store.down = True
        with caplog.at_level(logging.WARNING, "cello.security.sessions"):
            read = client.get("/")
        # reading: an empty session, the cookie left alone (the real session is still in the store)
        assert read.status_code == 200 and read.json() == {"data": {}, "new": True}
        assert "set-cookie" not in read.headers
        assert "session store unavailable" in caplog.text
        # writing: 503, never a new session over the real one
        write = client.post("/", json={"n": 2})
        assert write.status_code == 503
        assert write.headers["retry-after"] == "1"
        assert write.headers["content-type"] == "application/problem+json"
        assert "set-cookie" not in write.headers
        client.cookies.clear()
        assert client.post("/", json={"n": 2}).status_code == 503  # a new session cannot be stored either
        store.down = False
        client.cookies.set("session", cookie)
        assert client.get("/").json() == {"data": {"n": 1}, "new": False}


# -- shapes -------------------------------------------------------------------------------------------------


def test_the_awaited_shape_behaves_as_the_hooks():
    # the dispatcher runs enter/leave where a middleware offers them; called as a plain middleware (here from
    # another one that delegates) the same instance goes through its __call__
    sessions = Sessions(secret=SECRET)
    csrf = CSRF(secret=SECRET, form_field=None)

    async def delegating(request, call_next):
        return await sessions(request, lambda request: csrf(request, call_next))

    app = App()

    @app.post("/count", middleware=[delegating])
    def count(request):
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    @app.get("/token", middleware=[delegating])
    def token(request):
        return {"token": request.context["csrf_token"]}

    with TestClient(app) as client:
        token = client.get("/token").json()["token"]
        assert client.post("/count").status_code == 403
        assert client.post("/count", headers={"x-csrf-token": token}).json() == {"n": 1}
        assert client.post("/count", headers={"x-csrf-token": token}).json() == {"n": 2}
        assert client.cookies["csrftoken"] == token


def test_hooked_and_awaited_middleware_mixed_on_one_route():
    app = App()
    app.before_request(lambda request: None)

    @app.post("/form", middleware=[Sessions(secret=SECRET), CSRF(secret=SECRET)])
    async def form(request):
        request.session["name"] = (await request.form()).get("name")
        return {"name": request.session["name"]}

    @app.get("/form", middleware=[Sessions(secret=SECRET), CSRF(secret=SECRET)])
    def page(request):
        return {"token": request.context["csrf_token"], "name": request.session.get("name")}

    with TestClient(app) as client:
        token = client.get("/form").json()["token"]
        assert client.post("/form", data={"name": "ada"}).status_code == 403
        assert client.post("/form", data={"name": "ada", "csrf_token": token}).json() == {"name": "ada"}
        assert client.get("/form").json() == {"token": token, "name": "ada"}
