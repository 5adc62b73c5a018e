"""GraphiQL in a real headless Chromium (tests/apps/graphiql_app.py, default security headers): the page loads
from the app alone — no request to any other origin, no Content-Security-Policy violation — runs a query typed into
its editor and shows the answer."""

from __future__ import annotations

import pytest

from _helpers import RECORD_VIOLATIONS, chromium_browser

pytest.importorskip("strawberry")

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]


def test_graphiql_runs_a_query_offline(live):
    server = live("graphiql_app:app", ready_path="/__ready").start()
    with chromium_browser() as browser:
        context = browser.new_context()
        requested: list[str] = []
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        page.add_init_script(RECORD_VIOLATIONS)
        response = page.goto(f"{server.url}/graphql")
        assert response.status == 200
        page.wait_for_selector(".graphiql-container", timeout=30_000)
        editor = page.locator(".graphiql-query-editor .CodeMirror").first
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.type('{ hello(name: "browser") }')
        page.locator(".graphiql-execute-button").click()
        page.wait_for_function(
            "document.querySelector('.graphiql-response') && "
            "document.querySelector('.graphiql-response').innerText.includes('hello browser')",
            timeout=30_000,
        )
        assert page.evaluate("window.__violations") == []
        assert requested and all(url.startswith(server.url) for url in requested), requested
        context.close()
