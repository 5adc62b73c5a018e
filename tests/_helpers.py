"""Helpers for tests that need something outside Python: a service on a port, or a program on PATH.

They skip with a clear reason when it is missing, and fail instead when ``CELLO_REQUIRE_SERVICES=1`` (as in CI),
so a missing dependency can never pass for a green run there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cello.testing import free_port

REQUIRE_SERVICES = os.environ.get("CELLO_REQUIRE_SERVICES") == "1"


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, with CELLO_REQUIRE_SERVICES=1, fail) when an outside service is not reachable."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and CELLO_REQUIRE_SERVICES=1")
    pytest.skip(message)


def require_program(name: str, path: str | None) -> str:
    if path:
        return path
    message = f"the program {name!r} is not installed"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and CELLO_REQUIRE_SERVICES=1")
    pytest.skip(message)


# NOTE: no sandbox (CI runs as root), no GPU, and none of the background traffic a browser starts on its own:
# the tests assert which requests a page makes
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


# a page's init script: Content-Security-Policy violations collected in window.__violations
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.__violations.push({directive: event.violatedDirective, blocked: event.blockedURI});
});
"""


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright; skipped (failed with CELLO_REQUIRE_SERVICES=1) when
    the program is missing."""
    chromium = require_program("chromium", shutil.which("chromium") or shutil.which("chromium-browser"))
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class RedisServer:
    """A redis-server of a test's own on a free port: stopping it (for real, SIGKILL) disturbs nothing else."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.program = require_program("redis-server", shutil.which("redis-server"))
        self.options = options  # more redis-server arguments ("--requirepass", "...")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                   "no", "--dir", str(self.directory), *self.options]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    restart = start


@contextlib.contextmanager
def redis_server(directory: Path, *options: str) -> Iterator[RedisServer]:
    """A running ``RedisServer``, always stopped afterwards."""
    server = RedisServer(directory, *options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
