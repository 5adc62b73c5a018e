"""Security headers (cello.security.headers) through every engine face, against tests/apps/headers_app.py: the
default preset, HSTS only over TLS, per-route changes, the per-request nonce in header and template, a handler's
own headers kept, and error answers decorated too. The builders and the configuration checks follow, in-process.
"""

from __future__ import annotations

import re

import pytest

from cello import App, Response
from cello.http.exceptions import ConfigurationError
from cello.security.headers import (
    CSP,
    DEFAULT_CSP,
    DEFAULT_PERMISSIONS_POLICY,
    HSTS,
    PermissionsPolicy,
    SecurityHeaders,
    SecurityHeadersConfig,
)
from cello.testing import TestClient

DEFAULT_POLICY = (
    "default-src 'self'; base-uri 'self'; font-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self'"
)
DEFAULTS = {
    "content-security-policy": DEFAULT_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "accelerometer=(), browsing-topics=(), camera=(), display-capture=(), geolocation=(), "
    "gyroscope=(), magnetometer=(), microphone=(), midi=(), payment=(), usb=()",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
HSTS_VALUE = "max-age=63072000; includeSubDomains"
NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]{22})'")


@pytest.fixture
def client(headers_client):
    return headers_client


def assert_defaults(response, *, except_for=()):
    for name, value in DEFAULTS.items():
        if name not in except_for:
            assert response.headers.get_list(name) == [value], name


# -- through the protocol, on every face ---------------------------------------------------------------------


def test_default_headers_with_their_values(client):
    response = client.get("/hello")
    assert response.status_code == 200
    assert response.json() == {"hello": "world"}
    assert_defaults(response)


def test_no_hsts_over_plain_http(client):
    assert "strict-transport-security" not in client.get("/hello").headers
    # a trusted proxy saying the client came over plain HTTP changes nothing
    assert "strict-transport-security" not in client.get("/hello", headers={"x-forwarded-proto": "http"}).headers


def test_hsts_over_tls_reported_by_a_trusted_proxy(client):
    response = client.get("/hello", headers={"x-forwarded-proto": "https"})
    assert response.headers.get_list("strict-transport-security") == [HSTS_VALUE]
    assert_defaults(response)


def test_route_option_changes_and_removes_headers(client):
    embed = client.get("/embed")
    assert "x-frame-options" not in embed.headers
    assert embed.headers["content-security-policy"] == DEFAULT_POLICY.replace(
        "frame-ancestors 'none'", "frame-ancestors https://partner.example"
    )
    assert_defaults(embed, except_for={"x-frame-options", "content-security-policy"})
    bare = client.get("/bare", headers={"x-forwarded-proto": "https"})
    assert bare.json() == {"headers": "none"}
    assert not set(bare.headers) & {*DEFAULTS, "strict-transport-security"}


def test_nonce_is_new_per_request_in_header_and_template(client):
    nonces = []
    for _ in range(2):
        response = client.get("/page")
        policy = response.headers["content-security-policy"]
        found = NONCE.findall(policy)
        assert len(found) == 2 and found[0] == found[1]  # one nonce, in script-src and style-src
        nonce = found[0]
        assert f"script-src 'self' 'nonce-{nonce}';" in policy
        assert f"style-src 'self' 'nonce-{nonce}'" in policy
        assert f'<script nonce="{nonce}">' in response.text
        assert f'<style nonce="{nonce}">' in response.text
        assert_defaults(response, except_for={"content-security-policy"})
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    # routes without the option pay nothing for it: no nonce in their policy
    assert "nonce" not in client.get("/hello").headers["content-security-policy"]


def test_headers_the_handler_set_are_kept(client):
    response = client.get("/own", headers={"x-forwarded-proto": "https"})
    assert response.text == "mine"
    assert response.headers.get_list("content-security-policy") == ["default-src 'none'"]
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert response.headers.get_list("strict-transport-security") == [HSTS_VALUE]
    assert_defaults(response, except_for={"content-security-policy", "x-frame-options"})


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/no-such-page", 404), ("GET", "/items?limit=many", 422), ("POST", "/hello", 405),
     ("GET", "/teapot", 418)],
)  # fmt: skip
def test_error_answers_carry_the_headers(client, method, path, status):
    response = client.request(method, path, headers={"x-forwarded-proto": "https"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert_defaults(response)
    assert response.headers["strict-transport-security"] == HSTS_VALUE


def test_documentation_pages_keep_working_under_the_default_policy(client):
    docs = client.get("/docs")
    # no inline script: Swagger UI starts from a script file (which script-src 'self' allows) reading the page
    assert "<script>" not in docs.text and 'data-spec-url="/openapi.json"' in docs.text
    assert docs.headers["content-security-policy"] == DEFAULT_POLICY
    init = client.get("/docs/assets/swagger-initializer.js")
    assert init.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "SwaggerUIBundle(" in init.text and "dataset.specUrl" in init.text
    redoc = client.get("/redoc").headers["content-security-policy"]
    assert "style-src 'self' 'unsafe-inline'" in redoc and "worker-src 'self' blob:" in redoc
    assert "frame-ancestors 'none'" in redoc and "object-src 'none'" in redoc  # the rest of the policy stays


# -- in-process: TLS seen by the app itself, global nonce, report-only --------------------------------------


def hello_app(**options) -> App:
    app = App(openapi=False)
    app.enable_security_headers(**options)

    @app.get("/")
    def hello():
        return {"ok": True}

    @app.get("/typed")
    def typed(n: int):
        return {"n": n}

    return app


def test_hsts_over_an_https_connection():
    with TestClient(hello_app(hsts=HSTS(max_age=600, include_subdomains=False)), base_url="https://testserver") as c:
        assert c.get("/").headers["strict-transport-security"] == "max-age=600"
        assert c.get("/typed?n=x").headers["strict-transport-security"] == "max-age=600"
    with TestClient(hello_app(hsts=HSTS(preload=True)), base_url="https://testserver") as client:
        assert client.get("/").headers["strict-transport-security"] == HSTS_VALUE + "; preload"
    with TestClient(hello_app(hsts=False), base_url="https://testserver") as client:
        assert "strict-transport-security" not in client.get("/").headers


def test_untrusted_forwarded_proto_is_ignored():
    with TestClient(hello_app()) as client:  # no trusted_proxies: the header is anyone's to forge
        assert "strict-transport-security" not in client.get("/", headers={"x-forwarded-proto": "https"}).headers


def test_app_wide_nonce_and_report_only():
    app = hello_app(csp=CSP(default_src="'self'"), csp_nonce=True, csp_report_only=True)

    @app.get("/nonce")
    def nonce(request):
        return {"nonce": request.context["csp_nonce"]}

    with TestClient(app) as client:
        response = client.get("/nonce")
        nonce = response.json()["nonce"]
        assert "content-security-policy" not in response.headers
        # script-src and style-src did not exist: they start from default-src, so 'self' still applies
        assert response.headers["content-security-policy-report-only"] == (
            f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'"
        )


def test_every_header_can_be_turned_off():
    off = dict.fromkeys(
        ["csp", "hsts", "x_frame_options", "x_content_type_options", "referrer_policy", "permissions_policy",
         "cross_origin_opener_policy", "cross_origin_resource_policy"], None,
    )  # fmt: skip
    with TestClient(hello_app(**off), base_url="https://testserver") as client:
        assert not set(client.get("/").headers) & {*DEFAULTS, "strict-transport-security"}
    with TestClient(hello_app(x_frame_options=False, csp=False)) as client:
        headers = client.get("/").headers
        assert "x-frame-options" not in headers and "content-security-policy" not in headers
        assert headers["x-content-type-options"] == "nosniff"


def test_other_values_and_extra_headers():
    app = hello_app(
        x_frame_options="sameorigin",
        referrer_policy="no-referrer",
        permissions_policy={"camera": ["self"], "fullscreen": "*"},
        cross_origin_opener_policy="same-origin-allow-popups",
        cross_origin_resource_policy="same-site",
        cross_origin_embedder_policy="require-corp",
        extra={"X-Permitted-Cross-Domain-Policies": "none"},
    )
    with TestClient(app) as client:
        headers = client.get("/").headers
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["permissions-policy"] == "camera=(self), fullscreen=*"
    assert headers["cross-origin-opener-policy"] == "same-origin-allow-popups"
    assert headers["cross-origin-resource-policy"] == "same-site"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    assert headers["x-permitted-cross-domain-policies"] == "none"


def test_route_option_merges_sources_and_replaces_the_whole_configuration():
    app = hello_app()

    @app.get("/map", security_headers={"csp_merge": {"img_src": ["https://tiles.example"]}})
    def map_page():
        return {"ok": True}

    @app.get("/legacy", security_headers=SecurityHeadersConfig(csp="default-src *", x_frame_options=None))
    def legacy():
        return {"ok": True}

    with TestClient(app) as client:
        assert client.get("/map").headers["content-security-policy"] == DEFAULT_POLICY.replace(
            "img-src 'self' data:", "img-src 'self' data: https://tiles.example"
        )
        legacy_headers = client.get("/legacy").headers
        assert legacy_headers["content-security-policy"] == "default-src *"
        assert "x-frame-options" not in legacy_headers


def test_a_bad_route_option_fails_at_startup_naming_the_route():
    app = hello_app()

    @app.get("/bad", security_headers={"x_frame_options": "ALLOWALL"})
    def bad():
        return {"ok": True}

    # the app compiles its routes at startup, and the middleware checks each route's option then
    with pytest.raises(ConfigurationError, match=r"security_headers of <Route GET /bad.*x_frame_options: 'ALLOWALL'"):
        with TestClient(app):
            pass


def test_a_handler_returning_a_cached_response_object_does_not_pile_up_headers():
    shared = Response("same object every time")
    app = hello_app()

    @app.get("/shared")
    def same():
        return shared

    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/shared").headers.get_list("x-frame-options") == ["DENY"]


# -- the builders --------------------------------------------------------------------------------------------


def test_csp_builder_renders_once_and_composes():
    policy = CSP(
        default_src=["'self'"], img_src=["'self'", "data:", "https://img.example"], upgrade_insecure_requests=True
    )
    assert policy.header == "default-src 'self'; img-src 'self' data: https://img.example; upgrade-insecure-requests"
    assert str(policy) == policy.header
    assert CSP("default-src 'self'; img-src 'self' data: https://img.example; upgrade-insecure-requests") == policy
    assert CSP({"default-src": "'self'", "img_src": ["'self'", "data:", "https://img.example"],
                "upgrade-insecure-requests": True}) == policy  # fmt: skip
    assert DEFAULT_CSP.header == DEFAULT_POLICY
    # with_ replaces (None removes); merge adds, starting a missing directive from its fallback
    assert policy.with_(img_src=None, frame_ancestors="'none'").header == (
        "default-src 'self'; upgrade-insecure-requests; frame-ancestors 'none'"
    )
    merged = DEFAULT_CSP.merge(
        script_src="https://cdn.example", connect_src=["wss://live.example"], object_src="'self'"
    )
    assert "script-src 'self' https://cdn.example;" in merged.header
    assert "connect-src 'self' wss://live.example" in merged.header
    assert "object-src 'self';" in merged.header  # 'none' gives way to what was added
    assert DEFAULT_CSP.header == DEFAULT_POLICY  # the original is unchanged
    with pytest.raises(AttributeError):
        policy.header = "default-src *"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("directives", "message"),
    [
        ({"script_src": ["self"]}, "single quotes"),
        ({"script_src": ["'nonce-abc'", "nonce-def"]}, "single quotes"),
        ({"img_src": ["'none'", "data:"]}, "'none' cannot be combined"),
        ({"img_src": ["https://a.example;script-src *"]}, "not a valid source"),
        ({"img_src": ["https://a.example\r\nx-evil: 1"]}, "not a valid source"),
        ({"bad directive": ["'self'"]}, "not a CSP directive"),
    ],
)
def test_csp_builder_refuses_mistakes(directives, message):
    with pytest.raises(ConfigurationError, match=message):
        CSP(directives)


def test_permissions_policy_builder():
    policy = PermissionsPolicy({"camera": [], "geolocation": ["self"], "fullscreen": ["self", "https://a.example"]})
    assert policy.header == 'camera=(), geolocation=(self), fullscreen=(self "https://a.example")'
    assert PermissionsPolicy(policy.header) == policy
    assert policy.with_(camera="*", fullscreen=None).header == "camera=*, geolocation=(self)"
    assert PermissionsPolicy(usb=False, payment=True).header == "usb=(), payment=*"
    assert "camera=()" in DEFAULT_PERMISSIONS_POLICY.header
    with pytest.raises(ConfigurationError, match="not 'self'"):
        PermissionsPolicy(camera=["everyone"])


@pytest.mark.parametrize(
    "options",
    [
        {"x_frame_options": "ALLOW-FROM https://a.example"},
        {"referrer_policy": "strict_origin"},
        {"cross_origin_opener_policy": "same-site"},
        {"hsts": "includeSubDomains"},
        {"extra": {"x-bad": "a\r\nset-cookie: x=1"}},
        {"extra": {"Content-Security-Policy": "default-src *"}},
        {"referrer_policy": 0},
        {"csp": None, "csp_nonce": True},
        {"no_such_option": True},
    ],
)
def test_configuration_mistakes_fail_at_startup(options):
    with pytest.raises(ConfigurationError):
        SecurityHeaders(**options)


def test_hsts_preload_needs_what_the_preload_list_needs():
    with pytest.raises(ConfigurationError, match="preload"):
        HSTS(max_age=86400, preload=True)
    with pytest.raises(ConfigurationError, match="preload"):
        HSTS(include_subdomains=False, preload=True)
