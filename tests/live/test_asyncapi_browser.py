"""The AsyncAPI page in a real headless Chromium (tests/apps/asyncapi_app.py, default security headers): it
renders the channels, operations and payload schemas with its own stylesheet, asks nothing of any other origin,
and trips no Content-Security-Policy violation."""

from __future__ import annotations

import pytest

from _helpers import RECORD_VIOLATIONS, chromium_browser

pytestmark = pytest.mark.live


def test_the_page_renders_from_the_app_alone(live):
    server = live("asyncapi_app:app").start()
    with chromium_browser() as browser:
        context = browser.new_context()
        requested: list[str] = []
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        page.add_init_script(RECORD_VIOLATIONS)
        response = page.goto(f"{server.url}/asyncapi")
        assert response.status == 200
        page.wait_for_load_state("load")
        assert page.locator("section.channel h2").all_inner_texts() == ["orders", "invoices", "orders.dlq"]
        bill = page.locator("#operation-bill")
        assert "Bill an order." in bill.inner_text()
        assert "x-tenant" in bill.inner_text() and "item" in bill.inner_text()
        # the stylesheet served beside the page applies: a receive badge is green
        colour = page.eval_on_selector("#operation-bill .action", "e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(46, 125, 50)"
        assert page.evaluate("window.__violations") == []
        assert requested and all(url.startswith(server.url) for url in requested), requested
        context.close()
