"""The ``cello`` command: ``cello routes`` prints the routing table; ``cello run --reload`` serves and, when a source
file changes, serves the new code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import httpx
import pytest
from _live import LIVE_ENV

from cello.testing import LiveServer


def cello(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cello", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**__import__("os").environ, **LIVE_ENV},
        cwd=cwd,
        check=False,
    )


def test_routes_prints_methods_path_and_name():
    result = cello("routes", "core_app:app")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["METHODS", "PATH", "NAME", "HANDLER"]
    rows = {tuple(line.split()[:3]) for line in lines[1:]}
    assert ("GET", "/__ready", "ready") in rows
    assert ("GET", "/users/{user_id}/posts/{post_id}", "user_post") in rows
    assert ("GET", "/items/{item_id:int}", "item") in rows
    assert ("POST,PUT,PATCH,DELETE", "/echo/body", "echo_body") in rows
    assert ("GET", "/api/v1/ping", "v1_ping") in rows  # nested blueprints, prefixes joined
    assert ("GET", "/sub/hello", "sub_hello") in rows  # a mounted Cello app
    # columns line up: every path starts where the PATH header does
    column = lines[0].index("PATH")
    assert all(line[column - 2 : column] == "  " and line[column] == "/" for line in lines[1:])
    handler = next(line for line in lines if " user_post " in line)
    assert handler.rstrip().endswith("core_app.user_post")


def test_routes_rejects_what_is_not_an_app():
    result = cello("routes", "core_app:BLOB")
    assert result.returncode != 0
    assert "not a cello App" in result.stderr


def test_a_target_that_cannot_be_found_is_named_without_a_traceback():
    for target, message in [
        ("nosuch:app", "cannot find the module 'nosuch'"),
        ("nosuch.deeper:app", "cannot find the module 'nosuch.deeper'"),
        ("core_app:nosuch", "core_app has no attribute 'nosuch'"),
    ]:
        for command in ("routes", "openapi", "run"):
            result = cello(command, target)
            assert result.returncode != 0
            assert message in result.stderr, (command, result.stderr)
            assert "Traceback" not in result.stderr


def test_a_missing_templates_folder_stops_run_in_one_line(tmp_path):
    (tmp_path / "site_app.py").write_text("from cello import App\n\napp = App(templates='templates')\n")
    result = cello("run", "site_app:app", cwd=str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.count("template directory 'templates' does not exist") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_run_help_shows_the_defaults():
    text = cello("run", "--help").stdout
    assert "(default: 127.0.0.1)" in text
    assert "(default: 8000)" in text


@pytest.mark.live
def test_the_lean_websocket_server_says_where_it_listens(live):
    server: LiveServer = live("realtime_app:app", "cello-ws", ready_path="/__ready").start()
    deadline = time.monotonic() + 5
    while "WebSocket server on" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"WebSocket server on ws://127.0.0.1:{server.port}" in server.output()


def test_run_reports_configuration_mistakes_in_one_line(certs):
    tls = ["--ssl-certfile", certs.cert, "--ssl-keyfile", certs.key]
    for args, message in [
        (["--workers", "0"], "workers must be >= 1"),
        (["--http3"], "--http3 needs --ssl-certfile and --ssl-keyfile"),
        (["--http3", "--reload", *tls], "reload is not available with HTTP/3"),
        (["--ssl-certfile", certs.cert], "TLS needs both ssl_certfile and ssl_keyfile"),
    ]:
        result = cello("run", "core_app:app", "--port", "1", *args)
        assert result.returncode != 0
        assert message in result.stderr
        assert "Traceback" not in result.stderr


APP_SOURCE = """
from cello import App

app = App()


@app.get("/__ready")
def ready():
    return "ok"


@app.get("/version")
def version():
    return {{"version": {version}}}
"""


@pytest.mark.live
@pytest.mark.timeout(60)
def test_run_reload_serves_and_picks_up_edits(live, tmp_path):
    source = tmp_path / "reload_app.py"
    source.write_text(textwrap.dedent(APP_SOURCE.format(version=1)))
    server: LiveServer = live(
        "reload_app:app", extra_args=["--reload", "--log-level", "info"], cwd=str(tmp_path), ready_path="/__ready"
    ).start()

    def version() -> int | None:
        try:
            response = httpx.get(server.url + "/version", headers={"connection": "close"}, timeout=2.0)
        except httpx.HTTPError:
            return None
        return int(response.json()["version"]) if response.status_code == 200 else None

    assert version() == 1
    # the app's own data files changing (a SQLite database and its -wal/-shm files, a log) restart nothing
    for name in ("app.db", "app.db-wal", "app.db-shm", "server.log", "notes.txt"):
        (tmp_path / name).write_bytes(b"x" * 100)
    time.sleep(1.5)  # well past the watcher's tick
    assert "Changes detected" not in server.output()
    assert version() == 1
    source.write_text(textwrap.dedent(APP_SOURCE.format(version=2)))
    deadline = time.monotonic() + 20.0
    while version() != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert version() == 2, server.output()
    assert "Changes detected, reloading workers" in server.output()


SCRIPT_SOURCE = """
import sys

import served_helper
from cello import App

app = App()


@app.get("/__ready")
def ready():
    return "ok"


@app.get("/version")
def version():
    return {"version": served_helper.VERSION}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), reload=True, log_level="info")
"""


@pytest.mark.live
@pytest.mark.timeout(60)
def test_script_app_run_reload_picks_up_edits_to_imported_modules(live, tmp_path):
    """``app.run(reload=True)`` from a script started in another directory: the script's directory is watched,
    and a module the script imports is served afresh after an edit."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "served.py").write_text(SCRIPT_SOURCE)
    helper = project / "served_helper.py"
    helper.write_text("VERSION = 1\n")
    server: LiveServer = live(
        [sys.executable, str(project / "served.py"), "{port}"], cwd=str(elsewhere), ready_path="/__ready"
    ).start()

    def version() -> int | None:
        try:
            response = httpx.get(server.url + "/version", headers={"connection": "close"}, timeout=2.0)
        except httpx.HTTPError:
            return None
        return int(response.json()["version"]) if response.status_code == 200 else None

    assert version() == 1
    helper.write_text("VERSION = 2\n")
    deadline = time.monotonic() + 20.0
    while version() != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert version() == 2, server.output()
