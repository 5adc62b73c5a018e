"""Swagger UI's Authorize dialog in a real headless Chromium: the bearer scheme the JWT middleware declares is
offered, and a call made after authorizing carries the token and succeeds."""

from __future__ import annotations

import pytest
from security_app import hs_config

from _helpers import chromium_browser

pytestmark = pytest.mark.live


def test_authorize_then_try_it_out(live):
    server = live("security_app:app", ready_path="/__ready").start()
    token = hs_config.create_token({"sub": "swagger-user", "role": "admin"})
    with chromium_browser() as browser:
        page = browser.new_page()
        page.goto(f"{server.url}/docs", wait_until="networkidle")
        page.locator("button.authorize").first.click()
        dialog = page.locator(".modal-ux")
        section = dialog.locator(".auth-container", has_text="jwt")
        section.locator("input").first.fill(token)
        section.locator("button.authorize").click()
        section.locator("button.btn-done").click()

        operation = page.locator("#operations-jwt-me_get")
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()
        responses = operation.locator(".live-responses-table")
        responses.wait_for(timeout=15000)
        status = responses.locator("tbody td.response-col_status").first.inner_text(timeout=15000)
        body = responses.locator("tbody .response-col_description pre").first.inner_text()
        assert status.strip() == "200", body
        assert '"user": "swagger-user"' in body
