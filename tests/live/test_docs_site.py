"""The documentation site builds strictly (MkDocs with Material, the API reference from the docstrings, the
benchmark charts drawn from the committed results), and works in a real browser: the charts load, the API
reference is there, search finds a function."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from _helpers import chromium_browser

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    mkdocs = shutil.which("mkdocs", path=os.path.dirname(sys.executable)) or "mkdocs"
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(out)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_site_in_a_browser(site):
    with chromium_browser() as browser:
        page = browser.new_page()
        page.goto(site + "/benchmarks/")
        charts = page.locator("img[src*='charts/']")
        assert charts.count() >= 5
        page.wait_for_load_state("load")
        # NOTE: on a busy machine an image may still be decoding at the load event: wait for each, bounded
        drawn = ("() => [...document.querySelectorAll(\"img[src*='charts/']\")]"
                 ".every(i => i.complete && i.naturalWidth > 0)")  # fmt: skip
        try:
            page.wait_for_function(drawn, timeout=15_000)
        except Exception:  # the widths below say which chart never came
            pass
        widths = page.eval_on_selector_all("img[src*='charts/']", "imgs => imgs.map(i => i.naturalWidth)")
        assert all(width > 0 for width in widths), widths  # every chart was drawn and loads

        page.goto(site + "/reference/app/")
        assert page.locator("h2", has_text="App").count() >= 1
        assert page.locator("text=enable_cors").count() >= 1  # the conveniences, from their docstrings

        page.goto(site + "/")
        page.keyboard.press("/")  # Material's search shortcut
        page.locator("input.md-search__input").fill("register_singleton")
        page.wait_for_selector(".md-search-result__item", timeout=10_000)
        assert page.locator(".md-search-result__item").count() >= 1
