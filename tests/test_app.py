"""App behaviour through the in-process client: lifecycle, hooks, middleware, errors, proxies."""

from __future__ import annotations

import contextlib
import logging

import pytest

from cello import App, Blueprint, HTTPException, Response
from cello.testing import AsyncTestClient, TestClient

# -- lifecycle --------------------------------------------------------------------------------------------


def test_startup_and_shutdown_hooks_run_once_each():
    calls: list[str] = []
    app = App(on_startup=[lambda: calls.append("init-arg")])

    @app.on_startup
    async def start(app_arg):
        assert app_arg is app
        calls.append("startup")

    @app.on_shutdown
    def stop():
        calls.append("shutdown")

    app.get("/")(lambda: calls.copy())
    with TestClient(app) as client:
        assert client.get("/").json() == ["init-arg", "startup"]
        client.get("/")
    assert calls == ["init-arg", "startup", "shutdown"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_lifespan_context_manager(kind):
    log: list[str] = []
    if kind == "async":

        @contextlib.asynccontextmanager
        async def lifespan(app):
            log.append("enter")
            yield {"db": "connected"}
            log.append("exit")
    else:

        @contextlib.contextmanager
        def lifespan(app):
            log.append("enter")
            yield {"db": "connected"}
            log.append("exit")

    app = App(lifespan=lifespan)
    app.get("/")(lambda request: {"db": request.app.state["db"]})
    with TestClient(app) as client:
        assert client.get("/").json() == {"db": "connected"}
        assert log == ["enter"]
    assert log == ["enter", "exit"]


def test_failing_startup_propagates_and_unwinds_lifespan():
    log: list[str] = []

    @contextlib.contextmanager
    def lifespan(app):
        log.append("enter")
        try:
            yield
        finally:
            log.append("exit")

    app = App(lifespan=lifespan)

    @app.on_startup
    def broken():
        raise RuntimeError("no database")

    client = TestClient(app)
    with pytest.raises(RuntimeError, match="no database"):
        client.__enter__()
    assert log == ["enter", "exit"]
    client.close()


async def test_async_test_client_runs_lifespan():
    log: list[str] = []
    app = App(on_startup=[lambda: log.append("up")], on_shutdown=[lambda: log.append("down")])
    app.get("/")(lambda: "hi")
    async with AsyncTestClient(app) as client:
        assert (await client.get("/")).text == "hi"
        assert log == ["up"]
    assert log == ["up", "down"]


def test_drain_hooks_stop_the_work_sources_before_the_shutdown_hooks_run():
    log: list[str] = []
    app = App(on_shutdown=[lambda: log.append("pool closed")])
    app.drain_hooks.append(lambda: log.append("subscribers drained"))
    app.on_shutdown(lambda: log.append("cache closed"))
    with TestClient(app):
        pass
    assert log == ["subscribers drained", "pool closed", "cache closed"]


def test_mounted_app_has_its_own_lifecycle_and_handlers():
    log: list[str] = []
    child = App(on_startup=[lambda: log.append("child up")], on_shutdown=[lambda: log.append("child down")])

    @child.exception_handler(KeyError)
    def missing(request, exc):
        return {"child handled": str(exc)}, 404

    @child.get("/k")
    def k():
        raise KeyError("k")

    parent = App()
    parent.mount("/child", child)
    with TestClient(parent) as client:
        assert client.get("/child/k").json() == {"child handled": "'k'"}
    assert log == ["child up", "child down"]


# -- hooks and middleware ---------------------------------------------------------------------------------


def build_layered_app(order: list[str]) -> App:
    app = App()

    def middleware(name):
        async def layer(request, call_next):
            order.append(f"{name} in")
            response = await call_next(request)
            order.append(f"{name} out")
            response.headers.append("x-layers", name)
            return response

        return layer

    app.use(middleware("app"))
    bp = Blueprint("/bp")
    bp.use(middleware("bp"))
    bp.before_request(lambda request: order.append("bp before"))
    bp.after_request(lambda request, response: order.append("bp after"))
    app.before_request(lambda request: order.append("app before"))
    app.after_request(lambda request, response: order.append("app after"))

    @bp.get("/x", middleware=[middleware("route")])
    def x():
        order.append("handler")
        return "x"

    app.register_blueprint(bp)
    return app


def test_middleware_and_hook_order():
    order: list[str] = []
    with TestClient(build_layered_app(order)) as client:
        response = client.get("/bp/x")
    assert response.text == "x"
    assert order == [
        "app in", "bp in", "route in",
        "app before", "bp before", "handler", "bp after", "app after",
        "route out", "bp out", "app out",
    ]  # fmt: skip
    assert response.headers.get_list("x-layers") == ["route", "bp", "app"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/missing", 404), ("DELETE", "/bp/x", 405), ("OPTIONS", "/bp/x", 204), ("HEAD", "/bp/x", 200)],
)
def test_middleware_sees_framework_answers(method, path, status):
    order: list[str] = []
    with TestClient(build_layered_app(order)) as client:
        response = client.request(method, path)
    assert response.status_code == status
    assert "app in" in order
    assert response.headers.get_list("x-layers")[-1] == "app"


def test_before_request_can_answer():
    app = App()

    @app.before_request
    def gate(request):
        if request.headers.get("x-key") != "open":
            return {"denied": True}, 401
        return None

    app.get("/")(lambda: "inside")
    with TestClient(app) as client:
        assert client.get("/").status_code == 401
        assert client.get("/", headers={"x-key": "open"}).text == "inside"


def test_after_request_can_replace_response():
    app = App()
    app.after_request(lambda request, response: Response("replaced", 203))
    app.get("/")(lambda: "original")
    with TestClient(app) as client:
        response = client.get("/")
    assert (response.status_code, response.text) == (203, "replaced")


def test_middleware_sees_error_responses_as_responses():
    seen: list[int] = []
    app = App()

    @app.use
    async def record(request, call_next):
        response = await call_next(request)
        seen.append(response.status)
        return response

    @app.get("/boom")
    def boom():
        raise HTTPException(418)

    with TestClient(app) as client:
        client.get("/boom")
        client.get("/nope")
    assert seen == [418, 404]


def test_middleware_must_be_callable():
    with pytest.raises(Exception, match="callable"):
        App().use("not callable")  # type: ignore[arg-type]


# -- errors -----------------------------------------------------------------------------------------------


def test_debug_mode_shows_traceback(caplog):
    app = App(debug=True)

    @app.get("/")
    def boom():
        raise ValueError("visible in debug")

    with TestClient(app) as client, caplog.at_level(logging.ERROR, "cello.error"):
        body = client.get("/").json()
    assert body["status"] == 500
    assert body["detail"] == "ValueError: visible in debug"
    assert any("visible in debug" in line for line in body["traceback"])
    assert "unhandled error in GET /" in caplog.text


def test_production_mode_logs_but_hides(caplog):
    app = App()

    @app.get("/")
    def boom():
        raise ValueError("hidden detail")

    with TestClient(app) as client, caplog.at_level(logging.ERROR, "cello.error"):
        body = client.get("/").json()
    assert body == {"type": "about:blank", "title": "Internal Server Error", "status": 500, "instance": "/"}
    assert "hidden detail" in caplog.text


def test_status_500_handler_catches_unhandled():
    app = App()
    app.exception_handler(500)(lambda request, exc: ({"custom": type(exc).__name__}, 500))

    @app.get("/")
    def boom():
        raise ZeroDivisionError

    with TestClient(app) as client:
        assert client.get("/").json() == {"custom": "ZeroDivisionError"}


def test_broken_exception_handler_is_a_plain_500():
    app = App()

    @app.exception_handler(KeyError)
    def broken(request, exc):
        raise RuntimeError("handler bug")

    @app.get("/")
    def boom():
        raise KeyError("x")

    with TestClient(app) as client:
        response = client.get("/")
    assert response.status_code == 500
    assert "handler bug" not in response.text


def test_exception_handler_by_subclass():
    app = App()
    app.exception_handler(LookupError)(lambda request, exc: ("lookup", 404))

    @app.get("/")
    def boom():
        raise IndexError

    with TestClient(app) as client:
        assert client.get("/").text == "lookup"


# -- proxies ----------------------------------------------------------------------------------------------


def client_view(request):
    return {"client": request.client.host, "scheme": request.scheme, "url": str(request.url)}


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        ((), "1.1.1.1", "127.0.0.1"),
        (("127.0.0.1",), "1.1.1.1", "1.1.1.1"),
        (("127.0.0.0/8",), "9.9.9.9, 1.1.1.1", "1.1.1.1"),  # right-most untrusted hop; the left is forgeable
        (("127.0.0.1", "10.0.0.0/8"), "1.1.1.1, 10.0.0.5", "1.1.1.1"),
        (("10.0.0.1",), "1.1.1.1", "127.0.0.1"),  # the peer is not a trusted proxy
    ],
)
def test_trusted_proxies(trusted, forwarded, expected):
    app = App(trusted_proxies=trusted)
    app.get("/")(client_view)
    with TestClient(app) as client:
        data = client.get("/", headers={"X-Forwarded-For": forwarded, "X-Forwarded-Proto": "https"}).json()
    assert data["client"] == expected
    assert data["scheme"] == ("https" if expected != "127.0.0.1" else "http")


def test_configuration_is_validated():
    with pytest.raises(Exception, match="max_body_size"):
        App(max_body_size=-1)


@pytest.mark.parametrize("key", [404, "NotFound", "HTTPException", 405, "MethodNotAllowed"])
def test_handlers_for_framework_answers(key):
    from cello import HTTPException as Base
    from cello import MethodNotAllowed, NotFound

    resolved = {"NotFound": NotFound, "HTTPException": Base, "MethodNotAllowed": MethodNotAllowed}.get(key, key)
    app = App()
    app.exception_handler(resolved)(lambda request, exc: ({"custom": exc.status}, exc.status))
    app.get("/")(lambda: "ok")
    with TestClient(app) as client:
        missing, wrong_method = client.get("/missing"), client.post("/")
    custom_404 = key in (404, "NotFound", "HTTPException")
    custom_405 = key in (405, "MethodNotAllowed", "HTTPException")
    assert (missing.json() == {"custom": 404}) is custom_404
    assert (wrong_method.json() == {"custom": 405}) is custom_405
    assert missing.status_code == 404
    assert wrong_method.status_code == 405
    assert wrong_method.headers.get("allow") == ("GET, HEAD, OPTIONS" if not custom_405 else None)
