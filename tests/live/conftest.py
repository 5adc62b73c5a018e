"""Fixtures for the live tests: a throwaway CA and server certificate, and a LiveServer factory that proves, after
every test, that no server process it started is still running.

Every server started here carries ``CELLO_LIVE_TOKEN`` in its environment (forked ones are tracked by process
group), so a leftover is found even if it escaped its process group.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _live import Certs, Factory, live_servers


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    trustme = pytest.importorskip("trustme")
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    paths = Certs(str(directory / "ca.pem"), str(directory / "cert.pem"), str(directory / "key.pem"))
    ca.cert_pem.write_to_path(paths.ca)
    server.cert_chain_pems[0].write_to_path(paths.cert)
    server.private_key_pem.write_to_path(paths.key)
    return paths


@pytest.fixture
def live() -> Iterator[Factory]:
    """``live(target, server="granian", **LiveServer options)`` — stopped, and checked for leftovers, afterwards."""
    with live_servers() as make:
        yield make


@pytest.fixture(scope="module")
def live_module() -> Iterator[Factory]:
    """``live`` for servers shared by the tests of one module."""
    with live_servers() as make:
        yield make


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/js/node_modules, installed with ``npm ci`` from the committed lock file when missing: the JavaScript
    clients (graphql-ws) the tests run under Node. Skipped (failed with CELLO_REQUIRE_SERVICES=1) without Node."""
    from _helpers import require_program

    require_program("node", shutil.which("node"))
    npm = require_program("npm", shutil.which("npm"))
    folder = Path(__file__).resolve().parents[1] / "js"
    installed = folder / "node_modules"
    lock = folder / "package-lock.json"
    if not installed.is_dir() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"npm ci in tests/js failed: {done.stderr[-2000:]}")
    return installed
