"""The router on its own: matching order, converters, conflicts caught at registration, blueprints, url_path_for."""

from __future__ import annotations

import contextlib
import uuid

import pytest

from cello import App, Blueprint, ConfigurationError, register_converter
from cello.testing import TestClient


def handler(request):
    return {"route": request.route.name, "params": {k: str(v) for k, v in request.params.items()}}


def make_app(*paths: str) -> App:
    app = App()
    for index, path in enumerate(paths):
        app.route(path, ["GET"], name=f"r{index}")(handler)
    return app


def resolve(app: App, path: str, method: str = "GET"):
    route, params = app.dispatcher.resolve(method, path)
    return route.name, params


def test_static_beats_dynamic():
    app = make_app("/users/{name}", "/users/me")
    assert resolve(app, "/users/me") == ("r1", {})
    assert resolve(app, "/users/bob") == ("r0", {"name": "bob"})


def test_typed_converter_beats_plain_param_regardless_of_order():
    app = make_app("/items/{slug}", "/items/{id:int}")
    assert resolve(app, "/items/12") == ("r1", {"id": 12})
    assert resolve(app, "/items/twelve") == ("r0", {"slug": "twelve"})


def test_backtracking_to_a_param_branch():
    app = make_app("/a/b/c", "/a/{x}/d")
    assert resolve(app, "/a/b/d") == ("r1", {"x": "b"})


def test_catch_all_path():
    app = make_app("/static/{p:path}", "/static/special")
    assert resolve(app, "/static/special") == ("r1", {})
    assert resolve(app, "/static/css/site.css") == ("r0", {"p": "css/site.css"})
    assert resolve(app, "/static/") == ("r0", {"p": ""})


def test_empty_segment_does_not_fill_a_param():
    app = make_app("/users/{name}/posts")
    assert resolve(app, "/users//posts")[0] == "not_found"


def test_converters_are_strict():
    app = make_app("/i/{v:int}", "/f/{v:float}", "/u/{v:uuid}")
    for bad in ("/i/+1", "/i/1_000", "/i/١٢", "/i/ 1", "/f/1e5", "/f/nan", "/f/.5", "/u/123"):
        assert resolve(app, bad)[0] == "not_found", bad
    assert resolve(app, "/f/-1.5") == ("r1", {"v": -1.5})
    value = uuid.uuid4()
    assert resolve(app, f"/u/{value}") == ("r2", {"v": value})


def test_custom_converter():
    register_converter("upper", lambda s: s.upper() if s.isalpha() else (_ for _ in ()).throw(ValueError(s)))
    app = make_app("/shout/{word:upper}")
    assert resolve(app, "/shout/hey") == ("r0", {"word": "HEY"})
    assert resolve(app, "/shout/h3y")[0] == "not_found"


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (("/a/{x}", "/a/{y}"), "clashes"),
        (("/a/{p:path}/b",), "last segment"),
        (("/a/pre{x}",), "whole segment"),
        (("/a/{x:nope}",), "unknown path converter"),
    ],
)
def test_bad_routes_fail_at_startup(paths, message):
    app = make_app(*paths)
    with pytest.raises(ConfigurationError, match=message):
        app.dispatcher


def test_duplicate_route_fails():
    app = App()
    app.get("/x")(handler)
    app.get("/x")(handler)
    with pytest.raises(ConfigurationError, match="registered twice"):
        app.dispatcher


def test_relative_path_fails_at_registration():
    with pytest.raises(ConfigurationError, match="must start with '/'"):
        App().get("no-slash")(handler)


def test_unknown_method_registration_fails():
    with pytest.raises(ConfigurationError, match="unknown HTTP method"):
        App().route("/x", ["FETCH"])(handler)


def test_same_path_several_methods():
    app = App()
    app.get("/thing")(lambda request: "get")
    app.post("/thing")(lambda request: "post")
    app.route("/thing", methods=["PUT", "PATCH"])(lambda request: "put-or-patch")
    with TestClient(app) as client:
        assert client.get("/thing").text == "get"
        assert client.post("/thing").text == "post"
        assert client.patch("/thing").text == "put-or-patch"
        response = client.delete("/thing")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD, OPTIONS, PATCH, POST, PUT"


def test_explicit_head_and_options_win():
    app = App()
    app.get("/x")(lambda request: "body")
    app.head("/x")(lambda request: ("", 200, {"x-head": "own"}))
    app.options("/x")(lambda request: ("", 200, {"x-options": "own"}))
    with TestClient(app) as client:
        assert client.head("/x").headers["x-head"] == "own"
        assert client.options("/x").headers["x-options"] == "own"


def test_trailing_slash_policy():
    app = App()
    app.get("/no-slash")(lambda: "a")
    app.get("/with-slash/")(lambda: "b")
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/no-slash/").headers["location"] == "/no-slash"
        assert client.get("/with-slash").headers["location"] == "/with-slash/"
        assert client.post("/no-slash/").status_code == 308  # the redirect keeps method and body
        assert client.get("//evil.example/").status_code == 404  # never an open redirect


def test_trailing_slash_redirect_can_be_turned_off():
    app = App(redirect_slashes=False)
    app.get("/x")(lambda: "a")
    with TestClient(app) as client:
        assert client.get("/x/").status_code == 404


def test_nested_blueprints_join_prefixes():
    app = App()
    outer = Blueprint("/outer/")
    inner = Blueprint("/inner")
    inner.get("/")(handler)
    inner.get("/{id:int}")(handler)
    outer.register_blueprint(inner)
    app.register_blueprint(outer)
    app.register_blueprint(inner, prefix="/again")
    paths = sorted(route.path for route in app.router if route.meta.get("include_in_schema") is not False)
    assert paths == ["/again", "/again/{id:int}", "/outer/inner", "/outer/inner/{id:int}"]


def test_blueprint_prefix_must_start_with_slash():
    with pytest.raises(ConfigurationError):
        Blueprint("api")


def test_url_path_for():
    app = App()
    app.get("/users/{user_id:int}/posts/{slug}", name="post")(handler)
    assert app.url_path_for("post", user_id=3, slug="hello") == "/users/3/posts/hello"
    with pytest.raises(KeyError):
        app.url_path_for("missing")


def test_routes_after_start_are_refused():
    app = App()
    app.get("/")(handler)
    with TestClient(app) as client:
        client.get("/")
        with pytest.raises(ConfigurationError):
            app.get("/late")(handler)


def test_static_match_is_a_dict_hit():
    app = make_app(*(f"/static/{i}" for i in range(200)))
    assert "/static/150" in app.dispatcher.static


def test_compiled_matcher_agrees_with_the_reference_search():
    import random

    from cello.routing.matcher import compile_matcher, search
    from cello.routing.router import Route, Router

    rng = random.Random(7)
    literals = ["a", "b", "users", "items", "x-y", "1", "", "me", "ab", "c", "d", "e"]
    kinds = ["", ":int", ":float", ":uuid", ":str"]
    router = Router()
    seen = set()
    for index in range(300):
        parts = []
        for position in range(rng.randint(1, 5)):
            if rng.random() < 0.45:
                name = f"p{position}"
                parts.append("{" + name + rng.choice(kinds) + "}")
            else:
                parts.append(rng.choice([*literals[:-1], "static"]) or "z")
        if rng.random() < 0.1:
            parts.append("{rest:path}")
        path = "/" + "/".join(parts)
        if "{" not in path or path in seen:
            continue
        seen.add(path)
        with contextlib.suppress(ConfigurationError):  # "/{p0}" and "/{p0:str}" are one route
            router.add(Route(path, ["GET"], handler, name=f"r{index}"))
    compiled = compile_matcher(router._root)
    samples = ["42", "3.5", "-1", "users", "me", "", "a", "b", "x-y", "12345678-1234-5678-1234-567812345678", "z"]
    for _ in range(5000):
        path = "/" + "/".join(rng.choice(samples) for _ in range(rng.randint(0, 6)))
        params: dict = {}
        expected = search(router._root, path.split("/")[1:], 0, params)
        got = compiled(path, "GET")
        if expected is None:
            assert got is None, path
        else:
            assert got is not None, path
            assert got[0] is expected["GET"], path
            assert got[1] == params, path


def test_very_deep_routes_fall_back_to_the_walking_matcher():
    app = make_app("/" + "/".join(f"{{p{i}}}" for i in range(40)))
    path = "/" + "/".join(str(i) for i in range(40))
    name, params = resolve(app, path)
    assert name == "r0"
    assert params["p39"] == "39"
