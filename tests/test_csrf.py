"""CSRF protection through every engine face (tests/apps/sessions_app.py, ``/forms`` and ``/api``): the token
cookie and the template field, what unsafe requests must send (header or form field, urlencoded, multipart,
streamed upload), forged cookies, cross-site origins, trusted origins and exemptions."""

from __future__ import annotations

import re

import pytest

from cello.security.csrf import CSRF
from cello.testing import TestClient

TOKEN_FIELD = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]+)">')


@pytest.fixture
def client(session_client):
    session_client.cookies.clear()
    return session_client


def set_cookies(response):
    found = {}
    for header in response.headers.get_list("set-cookie"):
        pair, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = pair.partition("=")
        found[name] = {"value": value, **{a.partition("=")[0].lower(): a.partition("=")[2] for a in attributes}}
    return found


def token_of(client):
    """A token as a browser gets it: from the cookie set on a page."""
    response = client.get("/forms/token")
    token = response.json()["token"]
    assert client.cookies["csrftoken"] == token
    return token


def refused(response, detail):
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == detail


# -- the token ----------------------------------------------------------------------------------------------


def test_a_page_gets_a_token_cookie_and_a_form_field(client):
    page = client.get("/forms/page")
    assert page.status_code == 200
    cookie = set_cookies(page)["csrftoken"]
    assert "httponly" not in cookie  # scripts must read it to send the header
    assert cookie["samesite"] == "Lax" and cookie["path"] == "/" and "secure" not in cookie
    field = TOKEN_FIELD.search(page.text)
    assert field is not None and field.group(1) == cookie["value"]
    # the next page keeps the same token, and sets no cookie
    again = client.get("/forms/page")
    assert "set-cookie" not in again.headers
    assert TOKEN_FIELD.search(again.text).group(1) == cookie["value"]
    # and the rendered form is accepted as it is
    submitted = client.post("/forms/submit", data={"csrf_token": field.group(1), "name": "ada"})
    assert submitted.json() == {"ok": True, "name": "ada"}


def test_the_context_names_the_form_field(client):
    assert client.get("/forms/token").json()["field"] == "csrf_token"


def test_the_cookie_is_secure_over_https():
    from sessions_app import app

    with TestClient(app, base_url="https://testserver") as client:
        cookie = set_cookies(client.get("/forms/page"))["csrftoken"]
        assert "secure" in cookie and "httponly" not in cookie


# -- what unsafe requests must send -------------------------------------------------------------------------


def test_a_post_without_any_token_is_refused_and_given_a_cookie(client):
    response = client.post("/forms/submit", data={"name": "ada"})
    refused(response, "CSRF token missing.")
    assert "csrftoken" in set_cookies(response)  # so the client can recover


def test_a_post_with_the_cookie_but_no_token_is_refused(client):
    token_of(client)
    refused(client.post("/forms/submit", data={"name": "ada"}), "CSRF token missing.")
    refused(client.post("/forms/submit", json={"name": "ada"}), "CSRF token missing.")


def test_a_post_with_a_wrong_token_is_refused(client):
    token = token_of(client)
    other = CSRF(secret="sessions-and-csrf-test-secret-0123456789").new_token()  # well signed, but not this one
    for wrong in (other, token[:-1], token + "x", "nonsense"):
        refused(client.post("/forms/submit", headers={"x-csrf-token": wrong}), "CSRF token invalid.")
        refused(client.post("/forms/submit", data={"csrf_token": wrong}), "CSRF token invalid.")
    # bytes beyond ASCII: refused whether the engine passes the header on (invalid) or drops it (missing)
    response = client.post("/forms/submit", headers={"x-csrf-token": "tökén".encode()})
    assert response.status_code == 403
    assert response.json()["detail"] in ("CSRF token invalid.", "CSRF token missing.")


def test_the_token_in_the_header(client):
    token = token_of(client)
    response = client.post("/forms/submit", headers={"x-csrf-token": token}, json={"name": "ada"})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers


def test_the_token_in_a_urlencoded_form(client):
    token = token_of(client)
    response = client.post("/forms/submit", data={"csrf_token": token, "name": "ada"})
    assert response.json() == {"ok": True, "name": "ada"}


def test_the_token_in_a_multipart_form(client):
    token = token_of(client)
    response = client.post("/forms/submit", data={"csrf_token": token, "name": "ada"},
                           files={"doc": ("a.txt", b"hello")})  # fmt: skip
    assert response.json() == {"ok": True, "name": "ada"}


def test_the_token_in_a_streamed_upload(client):
    token = token_of(client)
    payload = bytes(range(256)) * 400
    response = client.post("/forms/upload", data={"csrf_token": token, "name": "photo"},
                           files={"file": ("p.bin", payload)})  # fmt: skip
    assert response.json() == {"size": len(payload), "name": "photo"}  # the handler still gets the whole form
    refused(client.post("/forms/upload", data={"name": "photo"}, files={"file": ("p.bin", payload)}),
            "CSRF token missing.")  # fmt: skip


def test_a_forged_cookie_with_a_matching_header_is_refused(client):
    # what a sibling subdomain could plant: a cookie value of its choice, sent back in the header
    for forged in ("attacker-chosen", "nonce.signature", "x" * 32 + "." + "y" * 43):
        client.cookies.clear()
        client.cookies.set("csrftoken", forged)
        response = client.post("/forms/submit", headers={"x-csrf-token": forged})
        refused(response, "CSRF token invalid.")
        assert set_cookies(response)["csrftoken"]["value"] != forged  # replaced by a real token


def test_a_malformed_form_is_a_client_error(client):
    token_of(client)
    response = client.post("/forms/submit", content=b"csrf_token=%zz",
                           headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


# -- origins ------------------------------------------------------------------------------------------------


def test_a_cross_site_origin_is_refused_even_with_a_valid_token(client):
    token = token_of(client)
    for headers in ({"origin": "https://evil.example"}, {"origin": "null"},
                    {"origin": str(client.base_url).rstrip("/") + ".evil.example"},
                    {"sec-fetch-site": "cross-site"}):  # fmt: skip
        response = client.post("/forms/submit", headers={"x-csrf-token": token, **headers})
        refused(response, "Cross-origin request refused: its origin is not trusted.")


def test_same_origin_and_trusted_origins_pass(client):
    token = token_of(client)
    own = str(client.base_url).rstrip("/")
    for headers in ({"origin": own}, {"origin": own.upper()}, {"origin": "https://trusted.example"},
                    {"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "same-site"}):  # fmt: skip
        response = client.post("/forms/submit", headers={"x-csrf-token": token, **headers})
        assert response.status_code == 200, headers


def test_a_trusted_origin_still_needs_the_token(client):
    token_of(client)
    refused(client.post("/forms/submit", headers={"origin": "https://trusted.example"}), "CSRF token missing.")


# -- exemptions ---------------------------------------------------------------------------------------------


def test_safe_methods_need_no_token(client):
    for method in ("GET", "HEAD", "OPTIONS"):
        assert client.request(method, "/forms/token").status_code in (200, 204)


def test_exempt_route_and_exempt_path(client):
    assert client.post("/forms/webhook", headers={"origin": "https://hooks.example"}).json() == {"ok": True}
    assert client.post("/forms/open/hook").json() == {"ok": True}


def test_the_framework_answers_are_not_turned_into_refusals(client):
    response = client.post("/forms/page")
    assert response.status_code == 405


# -- header-only, per route ---------------------------------------------------------------------------------


def test_header_only_protection_on_single_routes(client):
    token = client.get("/api/token").json()["token"]
    assert client.cookies["api_csrf"] == token
    refused(client.post("/api/transfer"), "CSRF token missing.")
    # a form field is not read when the protection is header-only
    refused(client.post("/api/transfer", data={"csrf_token": token}), "CSRF token missing.")
    refused(client.post("/api/transfer", headers={"x-api-csrf": token + "x"}), "CSRF token invalid.")
    assert client.post("/api/transfer", headers={"x-api-csrf": token}).json() == {"ok": True}
