"""Typed handler parameters: path/query/header/cookie conversion, bodies of every DTO kind, 422 errors."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from typing import Annotated, Literal, TypedDict

import msgspec
import pydantic
import pytest

from cello import App, Body, ConfigurationError, Cookie, Header, Path, Query, Request
from cello.testing import TestClient


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class ItemStruct(msgspec.Struct):
    name: str
    price: float
    tags: list[str] = []


class ItemModel(pydantic.BaseModel):
    name: str
    price: float = pydantic.Field(gt=0)
    tags: list[str] = []


@dataclasses.dataclass
class ItemData:
    name: str
    price: float


class ItemDict(TypedDict):
    name: str
    price: float


def make_app() -> App:
    app = App()

    @app.get("/items/{item_id}")
    def typed_path(item_id: int, q: str | None = None, limit: int = 10, flag: bool = False):
        return {"item_id": item_id, "q": q, "limit": limit, "flag": flag}

    @app.get("/conv/{when}/{u}/{color}")
    def converted(when: datetime.date, u: uuid.UUID, color: Color):
        return {"when": when.isoformat(), "u": str(u), "color": color.value}

    @app.get("/list")
    def many(tags: list[str] = Query([]), ids: Annotated[list[int], Query()] = []):
        return {"tags": tags, "ids": ids}

    @app.get("/required")
    def required(q: str, n: int):
        return {"q": q, "n": n}

    @app.get("/constrained")
    def constrained(
        page: Annotated[int, Query(ge=1, le=100)] = 1,
        name: str = Query("x", min_length=2, max_length=5, pattern="^[a-z]+$"),
        kind: Literal["a", "b"] = "a",
    ):
        return {"page": page, "name": name, "kind": kind}

    @app.get("/alias")
    def alias(item_query: str = Query(alias="item-query")):
        return {"value": item_query}

    @app.get("/headers")
    def headers(
        user_agent: str = Header(),
        x_token: Annotated[list[str], Header()] = [],
        x_count: int = Header(0),
        session: str | None = Cookie(None),
        visits: Annotated[int, Cookie()] = 0,
    ):
        return {"ua": user_agent, "tokens": x_token, "count": x_count, "session": session, "visits": visits}

    @app.post("/struct")
    def struct(item: ItemStruct):
        return {"kind": type(item).__name__, "name": item.name, "price": item.price, "tags": item.tags}

    @app.post("/pydantic")
    async def model(item: ItemModel):
        return {"kind": type(item).__name__, "name": item.name, "price": item.price}

    @app.post("/dataclass")
    def data(item: ItemData):
        return {"kind": type(item).__name__, "name": item.name}

    @app.post("/typeddict")
    def typed_dict(item: ItemDict):
        return {"kind": type(item).__name__, "name": item["name"]}

    @app.post("/list-body")
    def list_body(items: list[ItemStruct]):
        return {"count": len(items)}

    @app.post("/embedded")
    def embedded(item: ItemStruct = Body(embed=True), note: str = Body("none", embed=True)):
        return {"name": item.name, "note": note}

    @app.post("/mixed/{owner:int}")
    def mixed(owner: int, item: ItemStruct, request: Request, verbose: bool = False):
        return {"owner": owner, "name": item.name, "verbose": verbose, "path": request.path}

    @app.post("/optional-body")
    def optional_body(item: ItemStruct | None = Body(None)):
        return {"item": None if item is None else item.name}

    @app.get("/annotated-path/{n}")
    def annotated_path(n: Annotated[int, Path(ge=10)]):
        return {"n": n}

    @app.post("/raw-dict")
    def raw_dict(payload: dict):
        return {"keys": sorted(payload)}

    return app


@pytest.fixture(scope="module")
def client():
    with TestClient(make_app()) as client:
        yield client


def errors_of(response):
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422
    assert body["title"] == "Unprocessable Content"
    return body["errors"]


def test_path_and_query_conversion(client):
    assert client.get("/items/5?q=hi&limit=3&flag=true").json() == {"item_id": 5, "q": "hi", "limit": 3, "flag": True}
    assert client.get("/items/5").json() == {"item_id": 5, "q": None, "limit": 10, "flag": False}


def test_bad_path_and_query_values(client):
    errors = errors_of(client.get("/items/abc?limit=x&flag=maybe"))
    locs = {tuple(e["loc"]): e for e in errors}
    assert set(locs) == {("path", "item_id"), ("query", "limit"), ("query", "flag")}
    assert locs[("path", "item_id")]["input"] == "abc"
    assert locs[("query", "limit")]["input"] == "x"


def test_rich_scalar_types(client):
    value = uuid.uuid4()
    assert client.get(f"/conv/2026-01-31/{value}/red").json() == {"when": "2026-01-31", "u": str(value), "color": "red"}
    errors = errors_of(client.get(f"/conv/2026-13-01/{value}/green"))
    assert [e["loc"] for e in errors] == [["path", "when"], ["path", "color"]]


def test_list_query(client):
    assert client.get("/list?tags=a&tags=b&ids=1&ids=2").json() == {"tags": ["a", "b"], "ids": [1, 2]}
    assert client.get("/list").json() == {"tags": [], "ids": []}
    assert errors_of(client.get("/list?ids=1&ids=x"))[0]["loc"] == ["query", "ids", 1]


def test_missing_required(client):
    errors = errors_of(client.get("/required"))
    assert [(e["loc"], e["type"]) for e in errors] == [(["query", "q"], "missing"), (["query", "n"], "missing")]


def test_constraints(client):
    assert client.get("/constrained?page=5&name=abc&kind=b").json() == {"page": 5, "name": "abc", "kind": "b"}
    errors = errors_of(client.get("/constrained?page=0&name=ABCDEFG&kind=c"))
    assert [e["loc"] for e in errors] == [["query", "page"], ["query", "name"], ["query", "kind"]]
    assert "1" in errors[0]["msg"]


def test_alias(client):
    assert client.get("/alias?item-query=v").json() == {"value": "v"}
    assert errors_of(client.get("/alias?item_query=v"))[0]["loc"] == ["query", "item-query"]


def test_headers_and_cookies(client):
    response = client.get(
        "/headers",
        headers=[("User-Agent", "tester"), ("X-Token", "a"), ("X-Token", "b"), ("X-Count", "3"),
                 ("Cookie", "session=s1; visits=4")],
    )  # fmt: skip
    assert response.json() == {"ua": "tester", "tokens": ["a", "b"], "count": 3, "session": "s1", "visits": 4}
    errors = errors_of(client.get("/headers", headers={"X-Count": "many", "Cookie": "visits=x"}))
    assert {tuple(e["loc"]) for e in errors} == {("header", "x-count"), ("cookie", "visits")}


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/struct", "ItemStruct"), ("/pydantic", "ItemModel"), ("/dataclass", "ItemData"), ("/typeddict", "dict")],
)
def test_bodies(client, path, kind):
    response = client.post(path, json={"name": "pen", "price": 1.5})
    assert response.status_code == 200, response.text
    assert response.json()["kind"] == kind
    assert response.json()["name"] == "pen"


@pytest.mark.parametrize("path", ["/struct", "/pydantic", "/dataclass", "/typeddict"])
def test_body_errors_have_one_shape(client, path):
    # msgspec stops at the first problem, pydantic reports them all; the shape is the same
    errors = errors_of(client.post(path, json={"price": "cheap"}))
    assert errors
    assert {tuple(e["loc"]) for e in errors} <= {("body", "name"), ("body", "price")}
    missing = errors_of(client.post(path, json={"price": 1.0}))
    assert [(e["loc"], e["type"]) for e in missing] == [(["body", "name"], "missing")]
    for error in errors + missing:
        assert set(error) == {"loc", "msg", "type", "input"}
        assert error["msg"]


def test_nested_error_location(client):
    errors = errors_of(client.post("/list-body", json=[{"name": "a", "price": 1}, {"name": "b", "price": "x"}]))
    assert errors[0]["loc"] == ["body", 1, "price"]
    assert errors[0]["input"] == "x"


def test_pydantic_constraint_error(client):
    errors = errors_of(client.post("/pydantic", json={"name": "pen", "price": -1}))
    assert errors[0]["loc"] == ["body", "price"]
    assert errors[0]["input"] == -1


def test_invalid_json_body_is_422_with_location(client):
    errors = errors_of(client.post("/struct", content=b"{nope", headers={"content-type": "application/json"}))
    assert errors[0]["loc"] == ["body"]
    assert errors[0]["type"] == "json_invalid"


def test_missing_body(client):
    assert errors_of(client.post("/struct"))[0]["loc"] == ["body"]
    assert client.post("/optional-body").json() == {"item": None}


def test_embedded_body(client):
    assert client.post("/embedded", json={"item": {"name": "a", "price": 1}}).json() == {"name": "a", "note": "none"}
    assert errors_of(client.post("/embedded", json={}))[0]["loc"] == ["body", "item"]


def test_errors_from_every_source_together(client):
    errors = errors_of(client.post("/mixed/7?verbose=perhaps", json={"price": 1}))
    assert sorted(tuple(e["loc"]) for e in errors) == [("body", "name"), ("query", "verbose")]
    ok = client.post("/mixed/7?verbose=1", json={"name": "n", "price": 1})
    assert ok.json() == {"owner": 7, "name": "n", "verbose": True, "path": "/mixed/7"}


def test_annotated_path_constraint(client):
    assert client.get("/annotated-path/12").json() == {"n": 12}
    assert errors_of(client.get("/annotated-path/3"))[0]["loc"] == ["path", "n"]


def test_plain_dict_body(client):
    assert client.post("/raw-dict", json={"b": 1, "a": 2}).json() == {"keys": ["a", "b"]}


def test_huge_integer_is_a_validation_error(client):
    assert errors_of(client.get("/items/" + "9" * 5000))[0]["loc"] == ["path", "item_id"]


def test_path_marker_for_unknown_name_fails_at_startup():
    app = App()

    @app.get("/x")
    def handler(n: int = Path()):
        return n

    with pytest.raises(ConfigurationError, match="not in the route's path"):
        app.dispatcher


def test_header_must_be_scalar():
    app = App()

    @app.get("/x")
    def handler(h: ItemStruct = Header()):
        return None

    with pytest.raises(ConfigurationError, match="scalar"):
        app.dispatcher


@pytest.mark.parametrize("opener", [b'{"a":', b"["])
def test_json_nested_deeper_than_the_stack_is_422(opener):
    app = App()

    @app.post("/object")
    async def an_object(payload: dict[str, object]):
        return {"ok": True}

    @app.post("/array")
    async def an_array(payload: Annotated[list[object], Body()]):
        return {"ok": True}

    path, closer = ("/object", b"}") if opener.startswith(b"{") else ("/array", b"]")
    body = opener * 5000 + b"1" + closer * 5000
    with TestClient(app) as client:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "json_invalid"


def test_integers_beyond_64_bits_go_in_and_out_exactly():
    app = App()

    @app.get("/items/{item_id:int}")
    def item(item_id: int):
        return {"id": item_id}

    with TestClient(app) as client:
        response = client.get("/items/44531245726913257472")
    assert response.status_code == 200
    assert response.content == b'{"id":44531245726913257472}'


@pytest.mark.parametrize("path", ["/struct", "/pydantic"])
def test_invalid_utf8_inside_a_json_string_is_422(client, path):
    response = client.post(path, content=b'{"name": "\xfd", "price": 3}', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] in ("json_invalid", "string_unicode")


def test_a_huge_number_with_trailing_garbage_is_422_not_500():
    # msgspec reports the type first, then the retry finds the document malformed
    app = App()

    @app.post("/object")
    async def an_object(payload: dict[str, object]):
        return payload

    with TestClient(app) as client:
        response = client.post("/object", content=b"5" * 90 + b":0", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "json_invalid"


def test_an_app_may_read_json_bodies_of_any_content_type():
    lenient = App(strict_content_type=False)

    @lenient.post("/struct")
    def create(item: ItemStruct):
        return {"name": item.name}

    @lenient.post("/strict", strict_content_type=True)  # a route's own choice wins over the app's
    def strict(item: ItemStruct):
        return {"name": item.name}

    with TestClient(lenient) as client:
        body = b'{"name": "pen", "price": 1}'
        assert client.post("/struct", content=body, headers={"content-type": "text/plain"}).json() == {"name": "pen"}
        assert client.post("/strict", content=body, headers={"content-type": "text/plain"}).status_code == 415
