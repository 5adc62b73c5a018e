"""The examples run as documented."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid
from pathlib import Path

import pytest

from _helpers import redis_server, require_service
from cello.testing import TestClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec and typing resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_hello_example():
    app = load("hello").app
    with TestClient(app) as client:
        assert client.get("/").json() == {"message": "Hello, World!"}
        assert client.get("/users/7/posts/42").json() == {
            "user_id": 7,
            "post_id": 42,
            "params": {"user_id": 7, "post_id": 42},
        }
        assert client.get("/search?q=a&tag=x&tag=y").json() == {"q": "a", "tags": ["x", "y"]}
        assert client.post("/echo", json={"hello": "world"}).json()["you_sent"] == {"hello": "world"}
        assert client.get("/count").text == "0\n1\n2\n3\n4\n"
        assert client.get("/teapot").status_code == 418
        response = client.get("/api/v1/status")
        assert response.json()["ok"] is True
        assert response.headers["server-timing"].startswith("app;dur=")


def test_api_example():
    module = load("api")
    with TestClient(module.app) as client:
        created = client.post("/books", json={"title": "Dune", "author": "Frank Herbert", "year": 1965},
                              headers={"x-reader": "ada"})  # fmt: skip
        assert created.status_code == 201
        book = created.json()
        assert client.get(f"/books/{book['id']}").json()["title"] == "Dune"
        assert client.get("/books?limit=1").json()[0]["id"] == book["id"]
        cover = client.post(f"/books/{book['id']}/cover", files={"cover": ("c.png", b"png-bytes")})
        assert len(cover.json()["cover_sha256"]) == 64
        assert client.post("/books", json={"title": "", "author": "x", "year": 1}).status_code == 422
        assert client.get("/books/999").status_code == 404
        import time

        deadline = time.monotonic() + 5
        while "ada added Dune" not in client.get("/events").json() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "ada added Dune" in client.get("/events").json()


def test_site_example():
    module = load("site")
    with TestClient(module.app) as client:
        assert "No notes yet." in client.get("/").text
        added = client.post("/notes", data={"text": "<b>hello</b>"}, follow_redirects=False)
        assert added.status_code == 303
        page = client.get("/").text
        assert "&lt;b&gt;hello&lt;/b&gt;" in page and "<b>hello</b>" not in page
        assert client.get("/notes/0").status_code == 200
        assert client.get("/notes/5").status_code == 404
        assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
        assert client.post("/notes", data={"text": ""}).status_code == 422


def test_middleware_example():
    module = load("middleware")
    with TestClient(module.app) as client:
        first = client.get("/quotes/1")
        assert first.headers["x-cache"] == "miss"
        assert len(first.headers["x-request-id"]) == 32
        assert "remaining=" in first.headers["ratelimit"]
        assert client.get("/quotes/1").headers["x-cache"] == "hit"
        assert client.get("/quotes", headers={"accept-encoding": "gzip"}).headers["content-encoding"] == "gzip"
        preflight = client.options("/quotes", headers={"origin": "https://app.example",
                                                        "access-control-request-method": "GET"})  # fmt: skip
        assert preflight.status_code == 204
        assert client.post("/quotes/1?text=New").json() == {"id": 1, "text": "New"}
        assert client.get("/quotes/1").json()["text"] == "New"  # the tag invalidation dropped the old answer
        assert "cello_requests_total" in client.get("/metrics").text
        assert client.get("/health/ready").json()["status"] == "pass"
        assert client.get("/quotes/9").status_code == 404


def test_auth_example():
    module = load("auth")
    with TestClient(module.app) as client:
        login = client.post("/token", json={"username": "ada", "password": "correct horse battery staple"})
        assert login.status_code == 200
        ada = {"authorization": f"Bearer {login.json()['access_token']}"}
        assert client.get("/me", headers=ada).json() == {"user": "ada", "roles": ["editor"]}
        assert client.delete("/posts/2", headers=ada).json() == {"deleted": 2}
        assert client.get("/admin/stats", headers=ada).status_code == 403
        assert client.get("/admin/stats").status_code == 401
        assert client.post("/token", json={"username": "ada", "password": "wrong"}).status_code == 401
        reader = {"x-api-key": "demo-reader-key-000000000000"}
        assert client.get("/api/orders", headers=reader).json() == []
        assert client.post("/api/orders", params={"item": "book"}, headers=reader).status_code == 403
        assert client.get("/openapi.json").json()["components"]["securitySchemes"]["jwt"]["scheme"] == "bearer"


def test_login_example():
    module = load("login")
    with TestClient(module.app) as client:
        page = client.get("/")
        token = page.cookies["csrftoken"]
        assert f'name="csrf_token" value="{token}"' in page.text
        nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
        assert f'<style nonce="{nonce}">' in page.text
        assert client.get("/account").status_code == 401
        # a form posted without the token (as another site would) is refused
        forged = client.post("/login", data={"username": "ada", "password": "lovelace-1815"})
        assert forged.status_code == 403
        wrong = client.post("/login", data={"username": "ada", "password": "nope", "csrf_token": token})
        assert wrong.status_code == 401
        before = client.cookies.get("session")
        signed_in = client.post("/login", data={"username": "ada", "password": "lovelace-1815", "csrf_token": token})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/account"
        stolen = client.cookies["session"]
        assert stolen != before  # regenerated at login
        assert "Hello, ada" in client.get("/account").text
        assert client.get("/admin").json() == {"users": ["ada", "alan"], "you": "ada"}
        assert client.post("/logout", data={"csrf_token": token}).status_code == 303
        assert client.get("/account").status_code == 401
        # the cookie copied before logout opens nothing: the server-side session is gone
        client.cookies.set("session", stolen)
        assert client.get("/account").status_code == 401


def test_chat_example():
    module = load("chat")
    with TestClient(module.app) as client:
        assert "Cello chat" in client.get("/").text
        with (
            client.websocket_connect("/ws/lobby?name=ada") as ada,
            client.websocket_connect("/ws/lobby?name=bob") as bob,
        ):
            assert ada.receive_text().startswith("* welcome to lobby, ada")
            assert ada.receive_text() == "* ada joined"
            assert bob.receive_text().startswith("* welcome to lobby, bob")
            assert bob.receive_text() == "* bob joined"
            assert ada.receive_text() == "* bob joined"
            ada.send_text("hello")
            assert bob.receive_text() == "ada: hello"
            assert ada.receive_text() == "ada: hello"


def test_orders_example_bridges_the_broker_to_websockets(monkeypatch):
    monkeypatch.delenv("BROKER_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    module = load("orders")
    with TestClient(module.app) as client, client.websocket_connect("/ws/c-7") as ws:
        assert ws.receive_json() == {"watching": "c-7"}
        queued = client.post("/orders", json={"customer": "c-7", "item": "pen", "qty": 2})
        assert queued.status_code == 202 and queued.json()["queued"]
        assert ws.receive_json() == {"customer": "c-7", "item": "pen", "total": 3.0}
        client.publish("orders", {"customer": "c-7", "item": "gold", "qty": 1})  # no price: given up on
        assert client.get("/parked").json()[0]["error"] == "LookupError: no price for 'gold'"
        client.publish("orders", {"customer": "c-7", "item": "ink"})
        assert ws.receive_json() == {"customer": "c-7", "item": "ink", "total": 4.0}
        assert "orders.dlq" in client.get("/asyncapi").text


def test_database_example_on_sqlite(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/notes.db")
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = load("database").app
    with TestClient(app) as client:
        created = client.post("/notes", json={"title": "hi", "body": "there"})
        assert created.status_code == 201
        note = created.json()
        assert note["title"] == "hi" and isinstance(note["id"], int)
        assert client.get(f"/notes/{note['id']}").json() == note
        assert client.get("/notes").json() == [note]
        assert client.post("/notes", json={"title": ""}).status_code == 422
        assert client.get("/health/ready").json()["checks"]["database"]["status"] == "pass"
        assert client.delete(f"/notes/{note['id']}").status_code == 204
        assert client.get(f"/notes/{note['id']}").status_code == 404


@pytest.mark.services
def test_database_example_on_postgres_with_a_redis_cache(monkeypatch, tmp_path):
    pytest.importorskip("asyncpg")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with redis_server(tmp_path) as redis:  # the example's cache keys go to a Redis of the test's own
        monkeypatch.setenv("REDIS_URL", redis.url)
        _notes_through_the_cache(load("database").app)


def _notes_through_the_cache(app) -> None:
    title = f"pg-{uuid.uuid4().hex[:8]}"
    with TestClient(app) as client:
        note = client.post("/notes", json={"title": title}).json()
        assert client.get(f"/notes/{note['id']}").json()["title"] == title  # from PostgreSQL, then cached
        assert client.get(f"/notes/{note['id']}").json()["title"] == title  # from Redis
        ready = client.get("/health/ready").json()["checks"]
        assert ready["database"]["status"] == ready["redis"]["status"] == "pass"
        assert client.delete(f"/notes/{note['id']}").status_code == 204


def _library(app, module) -> None:
    """The GraphQL example: a page of books and their authors in one author query; a book added reaches a
    subscriber."""
    books = "{ books(first: 50) { title author { name } } }"
    with TestClient(app) as client:
        before = module.author_queries
        page = client.post("/graphql", json={"query": books}).json()["data"]["books"]
        assert {"title": "Kindred", "author": {"name": "Octavia E. Butler"}} in page
        assert module.author_queries == before + 1  # one query for every author of the page (no N+1)
        client.post("/graphql", json={"query": books})
        assert module.author_queries == before + 2  # a new loader per request: nothing cached across requests
        title = f"Book {uuid.uuid4().hex[:8]}"
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_text(json.dumps({"type": "connection_init"}))
            assert json.loads(ws.receive_text())["type"] == "connection_ack"
            subscription = {"query": "subscription { bookAdded { title author { name } } }"}
            ws.send_text(json.dumps({"type": "subscribe", "id": "1", "payload": subscription}))
            time.sleep(0.3)  # the subscription reaches the hub
            added = client.post(
                "/graphql", json={"query": f'mutation {{ addBook(title: "{title}", authorId: 2) {{ id }} }}'}
            )
            assert added.json()["data"]["addBook"]["id"] > 0
            event = json.loads(ws.receive_text())
            assert event["payload"]["data"]["bookAdded"] == {"title": title, "author": {"name": "Frank Herbert"}}


def test_graphql_example_on_sqlite(tmp_path, monkeypatch):
    pytest.importorskip("strawberry")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/library.db")
    monkeypatch.delenv("REDIS_URL", raising=False)
    module = load("graphql_api")
    _library(module.app, module)


@pytest.mark.services
def test_graphql_example_on_postgres(monkeypatch, postgres_database):
    pytest.importorskip("strawberry")
    monkeypatch.setenv("DATABASE_URL", postgres_database)
    monkeypatch.delenv("REDIS_URL", raising=False)
    module = load("graphql_api")
    _library(module.app, module)
