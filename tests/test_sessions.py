"""Sessions through every engine face (tests/apps/sessions_app.py): signed-cookie and server-side sessions, what
is refused (tampered cookies, forged ids), absolute and idle expiry decided by the server, regeneration against
fixation, logout against replay, cookie attributes, the cookie size limit and error responses.

Cookies are sent by hand (``Cookie`` header) and read from ``Set-Cookie``, so a test can replay a cookie the
browser would have dropped: expiry must hold on the server, whatever the client keeps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson
import pytest

from cello.testing import TestClient

BACKENDS = {"cookie": "session", "server": "sid"}  # prefix -> cookie name


@pytest.fixture
def client(session_client):
    return session_client


def call(client, method, path, cookie=None, **kwargs):
    """One request carrying exactly ``cookie`` ("name=value"), nothing from the client's jar."""
    client.cookies.clear()
    headers = dict(kwargs.pop("headers", {}))
    if cookie is not None:
        headers["cookie"] = cookie
    return client.request(method, path, headers=headers, **kwargs)


def set_cookies(response):
    """Set-Cookie headers by cookie name: ``{"value": ..., "max-age": ..., "httponly": "", ...}``."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        pair, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = pair.partition("=")
        parsed = {"value": value}
        for attribute in attributes:
            key, _, text = attribute.partition("=")
            parsed[key.lower()] = text
        found[name] = parsed
    return found


def issued(response, name):
    """``name=value`` of the cookie the response set (None when it set none, or expired it)."""
    cookie = set_cookies(response).get(name)
    if cookie is None or cookie.get("max-age") == "0":
        return None
    return f"{name}={cookie['value']}"


def expired(response, name):
    cookie = set_cookies(response).get(name)
    return cookie is not None and cookie.get("max-age") == "0"


def show(client, prefix, cookie):
    response = call(client, "GET", f"/{prefix}/session", cookie)
    assert response.status_code == 200
    return response


# -- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", BACKENDS)
def test_session_round_trip(client, prefix):
    name = BACKENDS[prefix]
    first = call(client, "GET", f"/{prefix}/session")
    assert first.json()["data"] == {} and first.json()["new"] is True
    assert "set-cookie" not in first.headers  # nothing changed: nothing written
    assert "Cookie" in first.headers["vary"]

    saved = call(client, "POST", f"/{prefix}/session", json={"cart": ["book"], "n": 1})
    cookie = issued(saved, name)
    assert cookie is not None
    again = show(client, prefix, cookie)
    assert again.json()["data"] == {"cart": ["book"], "n": 1}
    assert again.json()["new"] is False
    assert "set-cookie" not in again.headers  # read, unchanged, no refresh due: no cookie, no store write

    updated = call(client, "POST", f"/{prefix}/session", cookie, json={"n": 2})
    cookie = issued(updated, name) or cookie  # a server-side session keeps its id (and cookie)
    assert show(client, prefix, cookie).json()["data"] == {"cart": ["book"], "n": 2}


def test_server_side_cookie_holds_only_a_signed_id(client):
    saved = call(client, "POST", "/server/session", json={"notes": "x" * 10_000})
    cookie = issued(saved, "sid")
    session_id, _, signature = cookie.partition("=")[2].partition(".")
    assert len(session_id) == 43 and len(signature) == 43  # token_urlsafe(32) and an HMAC-SHA256
    assert show(client, "server", cookie).json()["id"] == session_id


def test_a_tampered_cookie_session_is_ignored(client):
    cookie = issued(call(client, "POST", "/cookie/session", json={"role": "user"}), "session")
    payload, _, signature = cookie.partition("=")[2].partition(".")
    flipped = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
    for forged in (f"session={flipped}.{signature}", f"session={payload}.{signature[:-2]}xx",
                   f"session={payload}", "session=garbage", "session=a.b.c"):  # fmt: skip
        response = show(client, "cookie", forged)
        assert response.json()["data"] == {} and response.json()["new"] is True
        assert expired(response, "session")  # the browser may forget it
    # a payload of the client's own making (an admin user), signed with a made-up key
    now = time.time()
    made_up = base64.urlsafe_b64encode(orjson.dumps([now, now, {"user": {"id": "root"}}])).rstrip(b"=")
    signature = base64.urlsafe_b64encode(hmac.digest(b"k" * 32, made_up, hashlib.sha256)).rstrip(b"=")
    forged = f"session={made_up.decode()}.{signature.decode()}"
    assert call(client, "GET", "/cookie/me", forged).status_code == 401


def test_a_forged_server_side_id_is_refused_without_touching_the_store(client):
    reads = call(client, "GET", "/store-reads").json()["reads"]
    real = issued(call(client, "POST", "/server/session", json={"n": 1}), "sid").partition("=")[2]
    real_id = real.partition(".")[0]
    for forged in ("sid=" + "A" * 43 + "." + "B" * 43, f"sid={real_id}.{'C' * 43}", f"sid={real_id}",
                   "sid=" + real + "x", "sid=nonsense"):  # fmt: skip
        response = show(client, "server", forged)
        assert response.json()["data"] == {} and response.json()["new"] is True
        assert expired(response, "sid")
    call(client, "GET", "/server/session")  # and a request without a cookie
    assert call(client, "GET", "/store-reads").json()["reads"] == reads  # none of these reached the store
    show(client, "server", "sid=" + real)
    assert call(client, "GET", "/store-reads").json()["reads"] == reads + 1


# -- expiry -------------------------------------------------------------------------------------------------


def test_absolute_expiry_holds_while_the_session_is_in_use(client):
    # max_age=1, no idle timeout; the cookies are replayed after the browser would have dropped them
    cookies = {prefix: issued(call(client, "POST", f"/absolute/{prefix}/session", json={"n": 1}), name)
               for prefix, name in (("cookie", "abs_c"), ("server", "abs_s"))}  # fmt: skip
    time.sleep(0.5)
    for prefix, cookie in cookies.items():
        assert show(client, f"absolute/{prefix}", cookie).json()["data"] == {"n": 1}
    time.sleep(0.6)
    for prefix, cookie in cookies.items():
        response = show(client, f"absolute/{prefix}", cookie)
        assert response.json()["data"] == {} and response.json()["new"] is True


def test_idle_expiry_is_pushed_back_by_use_and_then_reached(client):
    # idle_timeout=1.2: two requests 0.7 s apart keep the session alive past 1.2 s; 1.3 s of silence ends it
    cookies = {prefix: issued(call(client, "POST", f"/idle/{prefix}/session", json={"n": 1}), name)
               for prefix, name in (("cookie", "idle_c"), ("server", "idle_s"))}  # fmt: skip
    for _ in range(2):
        time.sleep(0.7)
        for prefix in cookies:
            response = show(client, f"idle/{prefix}", cookies[prefix])
            assert response.json()["data"] == {"n": 1}
            # the cookie session is refreshed by a new cookie; the server-side one in its store, same cookie
            cookies[prefix] = issued(response, "idle_c" if prefix == "cookie" else "idle_s") or cookies[prefix]
    time.sleep(1.3)
    for prefix, cookie in cookies.items():
        response = show(client, f"idle/{prefix}", cookie)
        assert response.json()["data"] == {} and response.json()["new"] is True


# -- fixation and logout ------------------------------------------------------------------------------------


def test_regenerate_issues_a_new_id_and_the_old_one_dies(client):
    planted = issued(call(client, "POST", "/server/session", json={"cart": ["book"]}), "sid")
    login = call(client, "POST", "/server/login", planted)
    fresh = issued(login, "sid")
    assert fresh is not None and fresh != planted
    after = show(client, "server", fresh).json()
    assert after["data"] == {"cart": ["book"], "user": {"id": "ada", "roles": ["admin"]}}
    assert call(client, "GET", "/server/me", fresh).json() == {"user": "ada"}
    # the id known before login (say, planted by an attacker) is worth nothing now
    assert show(client, "server", planted).json()["data"] == {}
    assert call(client, "GET", "/server/me", planted).status_code == 401


def test_cookie_session_login_keeps_the_data_in_a_new_cookie(client):
    before = issued(call(client, "POST", "/cookie/session", json={"cart": ["book"]}), "session")
    after = issued(call(client, "POST", "/cookie/login", before), "session")
    assert after is not None and after != before
    assert show(client, "cookie", after).json()["data"]["cart"] == ["book"]
    assert call(client, "GET", "/cookie/me", after).json() == {"user": "ada"}
    assert call(client, "GET", "/cookie/me", before).status_code == 401  # the earlier cookie never held the login


@pytest.mark.parametrize("prefix", BACKENDS)
def test_logout_expires_the_cookie(client, prefix):
    name = BACKENDS[prefix]
    cookie = issued(call(client, "POST", f"/{prefix}/login"), name)
    assert call(client, "GET", f"/{prefix}/me", cookie).status_code == 200
    logout = call(client, "POST", f"/{prefix}/logout", cookie)
    assert logout.status_code == 200
    assert expired(logout, name)


def test_a_server_side_cookie_replayed_after_logout_gets_an_empty_session(client):
    cookie = issued(call(client, "POST", "/server/login"), "sid")
    call(client, "POST", "/server/logout", cookie)
    replay = show(client, "server", cookie)
    assert replay.json()["data"] == {} and replay.json()["new"] is True
    assert call(client, "GET", "/server/me", cookie).status_code == 401


# -- cookies ------------------------------------------------------------------------------------------------


def test_cookie_attributes(client):
    cookie = set_cookies(call(client, "POST", "/cookie/session", json={"n": 1}))["session"]
    assert "httponly" in cookie
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == "86400"  # the idle timeout (a day) comes before the absolute expiry (14 days)
    assert "secure" not in cookie  # plain http
    server = set_cookies(call(client, "POST", "/server/session", json={"n": 1}))["sid"]
    assert "httponly" in server and server["samesite"] == "Lax" and "secure" not in server
    assert server["path"] == "/server"
    assert server["max-age"] == str(14 * 24 * 3600)  # idle expiry is the store's business, not the cookie's


def test_cookies_are_secure_over_https():
    from sessions_app import app

    with TestClient(app, base_url="https://testserver") as client:
        for path, name in (("/cookie/session", "session"), ("/server/session", "sid")):
            cookie = set_cookies(client.post(path, json={"n": 1}))[name]
            assert "secure" in cookie and "httponly" in cookie


def test_an_oversize_cookie_session_is_refused_and_the_old_one_kept(client):
    cookie = issued(call(client, "POST", "/cookie/session", json={"n": 1}), "session")
    response = call(client, "POST", "/cookie/session", cookie, json={"blob": "x" * 5000})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "The session could not be saved."
    assert "set-cookie" not in response.headers  # a cookie the browser would drop is never sent
    assert show(client, "cookie", cookie).json()["data"] == {"n": 1}
    # a server-side session has no such limit
    assert call(client, "POST", "/server/session", json={"blob": "x" * 5000}).status_code == 200


@pytest.mark.parametrize("prefix", BACKENDS)
def test_error_responses_carry_the_session_cookie(client, prefix):
    name = BACKENDS[prefix]
    response = call(client, "POST", f"/{prefix}/conflict")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    cookie = issued(response, name)
    assert show(client, prefix, cookie).json()["data"] == {"attempts": 1}


@pytest.mark.parametrize("prefix", BACKENDS)
def test_a_crashed_handler_saves_nothing(client, prefix):
    response = call(client, "POST", f"/{prefix}/crash")
    assert response.status_code == 500
    assert "set-cookie" not in response.headers


def test_requests_that_do_not_use_sessions_are_untouched(client):
    response = call(client, "GET", "/__ready")
    assert "set-cookie" not in response.headers and "vary" not in response.headers
