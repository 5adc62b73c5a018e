"""Templates (autoescape, url_for, sync and async rendering) and static files (caching, ranges, traversal)."""

from __future__ import annotations

import os
import socket

import pytest

SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "site")


@pytest.fixture
def client(typed_client):
    return typed_client


@pytest.mark.parametrize("path", ["/posts/7", "/posts-async/7"])
def test_template_is_autoescaped_with_url_for(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in html
    assert 'data-author="&#34;quoted&#34;"' in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in html
    assert '<link rel="stylesheet" href="/static/css/site.css">' in html
    assert '<a href="/posts/7">permalink</a>' in html


def test_request_in_template_context(client):
    assert "<p>/posts/7</p>" in client.get("/posts/7").text


def test_text_templates_are_not_escaped(client):
    assert client.get("/note").text.strip() == "<not escaped>"


def test_static_file_with_content_type_and_caching(client):
    response = client.get("/static/css/site.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.text == "body { color: red; }\n"
    etag = response.headers["etag"]
    assert client.get("/static/css/site.css", headers={"if-none-match": etag}).status_code == 304
    partial = client.get("/static/css/site.css", headers={"range": "bytes=0-3"})
    assert (partial.status_code, partial.text) == (206, "body")


def test_static_index_and_head(client):
    assert client.get("/static/").text == "<h1>home</h1>\n"
    assert client.get("/static", follow_redirects=True).text == "<h1>home</h1>\n"
    head = client.head("/static/notes.txt")
    assert head.status_code == 200
    assert head.headers["content-length"] == "11"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/%2e%2e/typed_app.py",
        "/static/css/../../secret.txt",
        "/static/..%2fsecret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/..\\secret.txt",
        "/static/missing.css",
        "/static/css",
    ],
)
def test_static_traversal_is_404(client, face, path):
    if face != "inprocess" and path.startswith("/static/..") and "%" not in path:
        pytest.skip("an HTTP client normalizes literal dot segments; the raw-socket test sends them")
    response = client.get(path)
    assert response.status_code == 404, (path, response.text[:100])


def test_symlink_out_of_the_root_is_404(client, tmp_path_factory):
    link = os.path.join(SITE, "public", "escape.txt")
    if not os.path.lexists(link):
        os.symlink(os.path.join(SITE, "secret.txt"), link)
    try:
        assert client.get("/static/escape.txt").status_code == 404
    finally:
        os.unlink(link)


@pytest.mark.parametrize("face_name", ["granian", "uvicorn", "hypercorn"])
def test_raw_dot_segments_over_a_socket(servers, face_name):
    server = servers.get(face_name, "typed_app:app")
    for raw in (b"/static/../secret.txt", b"/static/./../secret.txt", b"/static/%2e%2e/secret.txt"):
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"GET " + raw + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        status = data.split(b" ", 2)[1]
        assert status in (b"400", b"404"), (raw, data[:200])
        assert data.split(b"\r\n\r\n", 1)[-1].startswith(b'{"type"')  # a problem document, not the file


def test_static_on_a_blueprint_and_url_for(tmp_path):
    from cello import App, Blueprint, Templates
    from cello.testing import TestClient

    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path / "page.html").write_text("{{ url_for('assets', path='app.js') }}")
    app = App(templates=Templates(tmp_path))
    bp = Blueprint("/admin")
    bp.static("/assets", tmp_path / "assets", name="assets", index=None)
    app.register_blueprint(bp)
    app.get("/page")(lambda request: app.templates.response("page.html", request=request))
    with TestClient(app) as client:
        assert client.get("/page").text == "/admin/assets/app.js"
        response = client.get("/admin/assets/app.js")
        assert response.text == "console.log(1)"
        assert response.headers["content-type"].startswith(("text/javascript", "application/javascript"))
        assert client.get("/admin/assets/").status_code == 404  # index=None


def test_a_missing_template_or_static_folder_fails_at_registration(tmp_path, monkeypatch):
    from cello import App, ConfigurationError, Templates

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=r"template directory 'templates' does not exist .*working directory"):
        App(templates="templates")
    with pytest.raises(ConfigurationError, match="template directory 'views' does not exist"):
        Templates([tmp_path, "views"])
    with pytest.raises(ConfigurationError, match=r"static directory 'public' does not exist .*working directory"):
        App().static("/static", "public")
    (tmp_path / "templates").mkdir()
    assert App(templates="templates").templates is not None  # relative to the working directory
