"""The examples API against its own OpenAPI document (schemathesis), and Swagger UI in a real headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from _helpers import chromium_browser
from cello.testing import LiveServer, free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def api_server():
    port = free_port()
    command = [sys.executable, str(EXAMPLES / "api.py")]
    server = LiveServer(command, host="127.0.0.1", port=port, env={"PORT": str(port)}, ready_path="/openapi.json")
    with server:
        yield server


def test_schemathesis_finds_no_failures(api_server, tmp_path):
    schemathesis = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(schemathesis).exists():
        pytest.skip("schemathesis is not installed (it comes with the dev extra)")
    result = subprocess.run(
        [schemathesis, "run", f"{api_server.url}/openapi.json", "--checks", "all", "--max-examples", "25",
         "--seed", "20261125", "--request-timeout", "10"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout


def test_swagger_ui_try_it_out_executes_a_real_call(api_server):
    created = httpx.post(f"{api_server.url}/books", json={"title": "Dune", "author": "Frank Herbert", "year": 1965})
    book_id = created.json()["id"]
    with chromium_browser() as browser:
        page = browser.new_page()
        outside: list[str] = []
        page.on("request", lambda request: outside.append(request.url)
                if not request.url.startswith(api_server.url) else None)  # fmt: skip
        page.goto(f"{api_server.url}/docs", wait_until="networkidle")
        page.wait_for_selector("text=Bookshelf", timeout=15000)
        operation = page.locator("#operations-books-get_book_get")
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        operation.locator("input[placeholder='book_id']").fill(str(book_id))
        operation.locator("button.execute").click()
        responses = operation.locator(".live-responses-table")
        responses.wait_for(timeout=15000)
        status = responses.locator("tbody td.response-col_status").first.inner_text(timeout=15000)
        body = responses.locator("tbody .response-col_description pre").first.inner_text()
        assert status.strip() == "200"
        assert '"title": "Dune"' in body
        assert outside == []  # every asset came from the app itself


def test_redoc_renders_the_document(api_server):
    with chromium_browser() as browser:
        page = browser.new_page()
        page.goto(f"{api_server.url}/redoc")
        page.wait_for_selector("h1:has-text('Bookshelf')", timeout=20000)
        page.get_by_role("heading", name="List books, oldest first.").wait_for(timeout=20000)
