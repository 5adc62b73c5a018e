"""Server-side sessions in Redis, shared by two real server processes (granian and uvicorn): a session written by
one is read by the other, regeneration and logout on one are seen by the other, records carry the idle TTL, and a
server whose Redis is unreachable degrades as documented (empty session for reads, 503 for writes)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from _helpers import require_service
from cello.testing import free_port

pytestmark = [pytest.mark.live, pytest.mark.services]

REDIS_URL = "redis://127.0.0.1:6379"


def call(server, method, path, cookie=None, **kwargs):
    headers = {"cookie": cookie} if cookie else {}
    return httpx.request(method, server.url + path, headers=headers, timeout=5, **kwargs)


def issued(response):
    """``rsid=value`` set by the response; None when it set none or expired it."""
    for header in response.headers.get_list("set-cookie"):
        pair, _, attributes = header.partition(";")
        if pair.startswith("rsid="):
            return None if "Max-Age=0" in attributes else pair
    return None


@pytest.fixture
def redis_keys():
    """A key prefix of the test's own, and a synchronous client to look at (and finally remove) its keys."""
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    prefix = f"cello-test-sessions-{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield prefix, client
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_two_servers_share_one_redis_session(live, redis_keys):
    prefix, redis = redis_keys
    env = {"CELLO_TEST_SESSION_REDIS_URL": REDIS_URL, "CELLO_TEST_PREFIX": prefix}
    first = live("sessions_app:app", ready_path="/__ready", env=env).start()
    second = live("sessions_app:app", "uvicorn", ready_path="/__ready", env=env).start()

    saved = call(first, "POST", "/redis/session", json={"cart": ["book"]})
    cookie = issued(saved)
    session_id = cookie.partition("=")[2].partition(".")[0]
    record_key = f"{prefix}session:{session_id}"
    assert redis.exists(record_key)
    assert 0 < redis.pttl(record_key) <= 30_000  # the idle timeout, not the 60 s absolute expiry
    assert b"book" in redis.get(record_key) and "book" not in cookie  # the data is in Redis, not the cookie

    seen = call(second, "GET", "/redis/session", cookie).json()
    assert seen["data"] == {"cart": ["book"]} and seen["id"] == session_id
    assert seen["pid"] != call(first, "GET", "/redis/session", cookie).json()["pid"]  # two processes, one session

    # login on the second server: a new id, the old record gone for both
    renewed = issued(call(second, "POST", "/redis/login", cookie))
    assert renewed is not None and renewed != cookie
    assert not redis.exists(record_key)
    assert call(first, "GET", "/redis/session", cookie).json()["data"] == {}
    assert call(first, "GET", "/redis/me", renewed).json() == {"user": "ada"}

    # logout on the first server: the second no longer knows the session either
    assert call(first, "POST", "/redis/logout", renewed).status_code == 200
    assert not list(redis.scan_iter(match=prefix + "*"))
    assert call(second, "GET", "/redis/session", renewed).json()["data"] == {}
    assert call(second, "GET", "/redis/me", renewed).status_code == 401


def test_a_server_whose_redis_is_unreachable(live, redis_keys):
    prefix, _ = redis_keys
    env = {"CELLO_TEST_SESSION_REDIS_URL": REDIS_URL, "CELLO_TEST_PREFIX": prefix}
    healthy = live("sessions_app:app", ready_path="/__ready", env=env).start()
    nowhere = {**env, "CELLO_TEST_SESSION_REDIS_URL": f"redis://127.0.0.1:{free_port()}"}  # nothing listens
    cut_off = live("sessions_app:app", ready_path="/__ready", env=nowhere).start()

    cookie = issued(call(healthy, "POST", "/redis/session", json={"n": 1}))
    read = call(cut_off, "GET", "/redis/session", cookie)
    assert read.status_code == 200 and read.json()["data"] == {}  # an empty session, not an error
    assert "set-cookie" not in read.headers  # and the real session's cookie is left alone
    write = call(cut_off, "POST", "/redis/session", cookie, json={"n": 2})
    assert write.status_code == 503
    assert write.headers["content-type"] == "application/problem+json"
    assert write.headers["retry-after"] == "1"
    assert call(cut_off, "GET", "/__ready").status_code == 200  # routes without sessions keep serving
    assert call(healthy, "GET", "/redis/session", cookie).json()["data"] == {"n": 1}
