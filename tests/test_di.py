"""Dependency injection: nesting, caching, teardown order, app scope, overrides, resolution outside routes."""

from __future__ import annotations

import asyncio
from typing import Annotated

import pytest

from cello import App, ConfigurationError, Depends, HTTPException, Request
from cello.testing import TestClient


class Database:
    """The seed's snippet uses a Database of the reader's own; this one keeps posts in a dict."""

    def __init__(self):
        self.posts = {"7": ["hello", "world"]}

    def get_posts(self, user_id):
        return self.posts.get(user_id, [])


def test_seed_routing_and_di_snippet_runs_unchanged():
    # the snippet from the feature page, verbatim apart from the Database class above
    app = App()

    def get_db():
        return Database()

    @app.get("/users/{user_id}/posts/{post_id}")
    def get_post(request, db=Depends(get_db)):
        return {
            "user_id": request.params["user_id"],
            "post_id": request.params["post_id"],
            "posts": db.get_posts(request.params["user_id"])
        }  # fmt: skip

    with TestClient(app) as client:
        assert client.get("/users/7/posts/3").json() == {"user_id": "7", "post_id": "3", "posts": ["hello", "world"]}


calls = {"settings": 0, "db": 0}


def settings():
    calls["settings"] += 1
    return {"dsn": "memory"}


async def db(config=Depends(settings)):
    calls["db"] += 1
    return f"db({config['dsn']})"


def repository(database=Depends(db), config: Annotated[dict, Depends(settings)] = {}):
    return {"db": database, "dsn": config["dsn"]}


class Pager:
    def __init__(self, limit: int = 5):
        self.limit = limit


def test_nested_dependencies_resolve_once_per_request():
    calls.update(settings=0, db=0)
    app = App()

    @app.get("/")
    async def handler(repo=Depends(repository), database=Depends(db), again=Depends(settings)):
        return {"repo": repo, "db": database}

    with TestClient(app) as client:
        assert client.get("/").json() == {"repo": {"db": "db(memory)", "dsn": "memory"}, "db": "db(memory)"}
        assert calls == {"settings": 1, "db": 1}
        client.get("/")
        assert calls == {"settings": 2, "db": 2}  # cached per request, not across requests


def test_use_cache_false_calls_again():
    counter = {"n": 0}
    app = App()

    def tick():
        counter["n"] += 1
        return counter["n"]

    @app.get("/")
    def handler(a=Depends(tick), b=Depends(tick, use_cache=False)):
        return [a, b]

    with TestClient(app) as client:
        assert client.get("/").json() == [1, 2]


def test_dependencies_take_request_values():
    app = App()

    def pagination(page: int = 1, size: int = 20):
        return {"page": page, "size": size}

    def current_user(request: Request, x_user: str | None = None):
        return x_user or request.headers.get("x-user", "anonymous")

    @app.get("/items/{kind}")
    def items(kind: str, paging=Depends(pagination), user=Depends(current_user)):
        return {"kind": kind, "paging": paging, "user": user}

    with TestClient(app) as client:
        response = client.get("/items/books?page=2", headers={"x-user": "ada"})
        assert response.json() == {"kind": "books", "paging": {"page": 2, "size": 20}, "user": "ada"}
        bad = client.get("/items/books?page=two&size=x")
        assert bad.status_code == 422
        assert sorted(e["loc"][1] for e in bad.json()["errors"]) == ["page", "size"]


def test_class_dependency_with_depends_and_no_argument():
    app = App()

    @app.get("/")
    def handler(pager: Annotated[Pager, Depends()]):
        return {"limit": pager.limit}

    with TestClient(app) as client:
        assert client.get("/?limit=9").json() == {"limit": 9}


@pytest.mark.parametrize("handler_kind", ["async", "sync-pooled", "sync-inline"])
def test_generator_teardown_runs_after_handler_before_response(handler_kind):
    events: list[str] = []
    app = App()

    def sync_resource():
        events.append("sync open")
        try:
            yield "sync"
        finally:
            events.append("sync close")

    async def async_resource():
        events.append("async open")
        try:
            yield "async"
        finally:
            events.append("async close")

    @app.after_request
    def after(request, response):
        events.append("response built")

    if handler_kind == "async":

        @app.get("/")
        async def handler(a=Depends(sync_resource), b=Depends(async_resource)):
            events.append("handler")
            return {"a": a, "b": b}
    else:

        @app.get("/", threadpool=handler_kind == "sync-pooled")
        def handler(a=Depends(sync_resource), b=Depends(async_resource)):
            events.append("handler")
            return {"a": a, "b": b}

    with TestClient(app) as client:
        assert client.get("/").json() == {"a": "sync", "b": "async"}
    # teardown newest first, after the handler, before the response leaves the app
    assert events == ["sync open", "async open", "handler", "async close", "sync close", "response built"]


def test_handler_exception_is_thrown_into_generator_dependency():
    seen: list[str] = []
    app = App()

    def transaction():
        try:
            yield "tx"
            seen.append("commit")
        except HTTPException as exc:
            seen.append(f"rollback on {exc.status}")
            raise

    @app.post("/ok")
    def ok(tx=Depends(transaction)):
        return {"tx": tx}

    @app.post("/fail")
    def fail(tx=Depends(transaction)):
        raise HTTPException(409, "conflict")

    with TestClient(app) as client:
        assert client.post("/ok").status_code == 200
        assert client.post("/fail").status_code == 409
    assert seen == ["commit", "rollback on 409"]


def test_failing_teardown_is_a_500():
    app = App()

    def broken():
        yield 1
        raise RuntimeError("teardown failed")

    @app.get("/")
    def handler(value=Depends(broken)):
        return {"value": value}

    with TestClient(app) as client:
        assert client.get("/").status_code == 500
        assert client.get("/").status_code == 500  # and the worker lives on


def test_dependency_can_refuse_with_http_exception():
    app = App()

    def require_token(x_token: str | None = None):
        if x_token != "secret":
            raise HTTPException(401, "Bad token.", headers={"www-authenticate": "Token"})
        return x_token

    @app.get(
        "/",
    )
    def handler(token=Depends(require_token)):
        return {"token": token}

    with TestClient(app) as client:
        response = client.get("/")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Token"
        assert client.get("/?x_token=secret").json() == {"token": "secret"}


def test_app_scoped_dependency_is_created_once_and_torn_down_at_shutdown():
    events: list[str] = []
    app = App()

    async def pool():
        events.append("create pool")
        yield {"pool": len(events)}
        events.append("close pool")

    @app.get("/")
    async def handler(p=Depends(pool, scope="app")):
        return p

    with TestClient(app) as client:
        results = [client.get("/").json() for _ in range(3)]
        assert results == [{"pool": 1}] * 3
        assert events == ["create pool"]
    assert events == ["create pool", "close pool"]


def test_app_scoped_dependency_concurrent_first_use_creates_once():
    created = []
    app = App()

    async def slow_singleton():
        created.append(1)
        await asyncio.sleep(0.05)
        return "singleton"

    @app.get("/")
    async def handler(value=Depends(slow_singleton, scope="app")):
        return value

    async def run():
        from cello.testing import AsyncTestClient

        async with AsyncTestClient(app) as client:
            responses = await asyncio.gather(*(client.get("/") for _ in range(10)))
        return [r.text for r in responses]

    assert asyncio.run(run()) == ["singleton"] * 10
    assert created == [1]


def test_app_scope_cannot_read_the_request():
    app = App()

    def per_request(q: str = "x"):
        return q

    @app.get("/")
    def handler(value=Depends(per_request, scope="app")):
        return value

    with pytest.raises(ConfigurationError, match="app-scoped"):
        app.dispatcher


def test_dependency_cycle_is_reported():
    app = App()

    def a(value=Depends(lambda: None)):
        return value

    def b(value=Depends(a)):
        return value

    a.__defaults__ = (Depends(b),)

    @app.get("/")
    def handler(value=Depends(a)):
        return value

    with pytest.raises(ConfigurationError, match="cycle"):
        app.dispatcher


def test_dependency_overrides():
    app = App()

    def real_db():
        raise AssertionError("the real database must not be touched in this test")

    def service(db=Depends(real_db), page: int = 1):
        return {"db": db, "page": page}

    @app.get("/{kind}")
    def handler(kind: str, svc=Depends(service)):
        return {"kind": kind, **svc}

    app.dependency_overrides[real_db] = lambda: "fake db"
    with TestClient(app) as client:
        assert client.get("/x?page=3").json() == {"kind": "x", "db": "fake db", "page": 3}

        def fake_service(kind: str):  # an override with its own signature, reading a path value
            return {"db": "none", "page": 0, "seen": kind}

        app.dependency_overrides[service] = fake_service
        assert client.get("/y").json() == {"kind": "y", "db": "none", "page": 0, "seen": "y"}
        app.dependency_overrides.clear()
        assert client.get("/z").status_code == 500  # the real one runs again


async def test_dependency_scope_outside_routes():
    events: list[str] = []
    app = App()

    async def connection():
        events.append("open")
        yield "conn"
        events.append("close")

    def repository(conn=Depends(connection)):
        return f"repo({conn})"

    async with app.dependency_scope() as deps:
        assert await deps.resolve(repository) == "repo(conn)"
        assert await deps.resolve(connection) == "conn"  # cached within the scope
        assert events == ["open"]
    assert events == ["open", "close"]


async def test_dependency_scope_refuses_request_values():
    app = App()

    def needs_request(request: Request):
        return request

    async with app.dependency_scope() as deps:
        with pytest.raises(ConfigurationError, match="reads the request"):
            await deps.resolve(needs_request)


def test_unresolvable_annotation_is_a_startup_error():
    app = App()

    class LocalOnly:
        pass

    @app.get("/")
    def handler(value: LocalOnly):
        return None

    with pytest.raises(ConfigurationError, match="cannot resolve the annotation 'LocalOnly'"):
        app.dispatcher
