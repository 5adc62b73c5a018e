"""Security headers in a real headless Chromium, against tests/apps/headers_app.py (``SecurityHeaders()`` defaults).

What only a browser can show: the CSP blocks an inline script, style and event handler that lack the request's
nonce and runs the ones a Jinja template marked with ``nonce="{{ csp_nonce }}"``; and the built-in Swagger UI and
ReDoc pages still render — and call the API — under the default policy, without a single CSP violation.
"""

from __future__ import annotations

import re

import pytest

from _helpers import RECORD_VIOLATIONS, chromium_browser

pytestmark = pytest.mark.live


# every CSP violation the page reports, kept where the test can read it
@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def server(browser, live_module):
    return live_module("headers_app:app", ready_path="/__ready").start()


@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    # only the app under test is reached: anything else (ReDoc's logo on Redocly's CDN) is answered here
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url)
                  else route.abort())  # fmt: skip
    page = context.new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    try:
        yield page
    finally:
        context.close()


def violations(page) -> list[dict[str, str]]:
    return page.evaluate("window.__violations")


def test_only_inline_code_carrying_the_nonce_runs(page, server):
    response = page.goto(f"{server.url}/page")
    policy = response.headers["content-security-policy"]
    nonce = re.search(r"script-src 'self' 'nonce-([A-Za-z0-9_-]{22})'", policy).group(1)
    assert f"style-src 'self' 'nonce-{nonce}'" in policy
    assert f'<script nonce="{nonce}">' in response.text()
    body = page.locator("body")
    assert body.get_attribute("data-with") == "ran"
    page.click("#handler")  # an inline event handler: script-src-attr 'none'
    # three blocked: the script without the nonce, the style without it, the onclick attribute
    page.wait_for_function("window.__violations.length >= 3", timeout=5000)
    assert body.get_attribute("data-without") is None
    assert body.get_attribute("data-attribute") is None
    assert page.eval_on_selector("#styled", "e => getComputedStyle(e).color") == "rgb(0, 128, 0)"
    assert page.eval_on_selector("#unstyled", "e => getComputedStyle(e).color") != "rgb(255, 0, 0)"
    blocked = sorted(v["directive"] for v in violations(page))
    assert blocked == ["script-src-attr", "script-src-elem", "style-src-elem"], blocked


def test_swagger_ui_renders_and_calls_the_api_under_the_default_policy(page, server):
    response = page.goto(f"{server.url}/docs", wait_until="networkidle")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    operation = page.locator(".opblock-get:has(.opblock-summary-path[data-path='/hello'])")
    operation.locator(".opblock-summary").click(timeout=15000)
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody td.response-col_status").first
    assert status.inner_text(timeout=15000).strip() == "200"
    assert violations(page) == []


def test_redoc_renders_under_the_default_policy(page, server):
    response = page.goto(f"{server.url}/redoc", wait_until="networkidle")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    page.wait_for_selector("h1:has-text('Cello API')", timeout=20000)
    page.get_by_role("heading", name="Hello").first.wait_for(timeout=20000)
    # the styles ReDoc injects at run time applied: its own (a sticky side menu) and its scrollbar library's
    assert page.eval_on_selector(".menu-content", "e => getComputedStyle(e).position") == "sticky"
    assert page.eval_on_selector(".ps", "e => getComputedStyle(e).overflow") == "hidden"
    page.fill("input[placeholder='Search...']", "teapot")  # the search index lives in a blob: worker
    page.wait_for_selector("[data-role='search:results'] li:has-text('Teapot')", timeout=10000)
    assert violations(page) == []
