"""CORS in a real headless Chromium: a page on one loopback origin calls an API on another."""

from __future__ import annotations

import pytest

from _helpers import chromium_browser
from cello.testing import free_port

pytestmark = pytest.mark.live

FETCHES = {
    "simple": "fetch(api + '/data').then(r => r.json())",
    "preflighted": """fetch(api + '/data', {method: 'PUT', headers: {'content-type': 'application/json',
                      'x-custom': 'yes'}, body: JSON.stringify({a: 1})}).then(r => r.json())""",
    "credentialed": "fetch(api + '/data', {credentials: 'include'}).then(r => r.json())",
    "disallowed_method": "fetch(api + '/data', {method: 'DELETE'}).then(r => r.status)",
}


def run_fetches(page, api_url: str) -> dict[str, object]:
    results = {}
    for name, expression in FETCHES.items():
        results[name] = page.evaluate(
            f"""async () => {{
                const api = {api_url!r};
                try {{ return {{ok: true, value: await {expression}}}; }}
                catch (error) {{ return {{ok: false, error: String(error)}}; }}
            }}"""
        )
    return results


def test_cors_in_chromium(live):
    pages_port = free_port()
    allowed_origin = f"http://127.0.0.1:{pages_port}"
    pages = live("cors_app:pages", port=pages_port, ready_path="/__ready").start()
    api = live("cors_app:api", ready_path="/__ready", env={"CELLO_TEST_ALLOWED_ORIGIN": allowed_origin}).start()
    with chromium_browser() as browser:
        context = browser.new_context()
        context.add_cookies([{"name": "session", "value": "s3cret", "url": api.url}])
        page = context.new_page()
        page.goto(f"{pages.url}/page")  # origin http://127.0.0.1:<pages_port>: allowed
        allowed = run_fetches(page, api.url)
        assert allowed["simple"] == {"ok": True, "value": {"data": 42, "cookie": None}}
        assert allowed["preflighted"] == {"ok": True, "value": {"stored": {"a": 1}, "custom": "yes"}}
        assert allowed["credentialed"] == {"ok": True, "value": {"data": 42, "cookie": "s3cret"}}
        assert allowed["disallowed_method"]["ok"] is False  # DELETE is not in allow_methods

        page.goto(f"http://localhost:{pages_port}/page")  # another origin, not allowed
        refused = run_fetches(page, api.url)
        assert all(result["ok"] is False for result in refused.values()), refused
