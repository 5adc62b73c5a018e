"""FastAPI and Starlette habits work in Cello, on every engine face (tests/apps/habits_app.py), and the ones that
cannot work fail clearly at registration instead of being ignored."""

from __future__ import annotations

import pytest

from cello import App, ConfigurationError, HTTPException


@pytest.fixture
def client(habits_client):
    return habits_client


def test_models_returned_without_a_return_annotation_are_serialized(client):
    assert client.get("/model").json() == {"name": "pen", "price": 1.5}
    assert client.get("/models").json() == [{"name": "pen", "price": 1.5}, {"name": "ink", "price": 3.0}]
    assert client.get("/nested").json() == {
        "item": {"name": "pen", "price": 1.5},
        "point": {"x": 1, "y": 2},
        "tag": {"label": "new"},
    }
    response = client.post("/created")
    assert (response.status_code, response.json()) == (201, {"name": "pen", "price": 1.5})


def test_ellipsis_means_required(client):
    assert client.get("/search?q=pens").json() == {"q": "pens", "limit": 10}
    for response, location in (
        (client.get("/search"), ["query", "q"]),
        (client.post("/login", data={}), ["form", "username"]),
        (client.post("/note", json={}), ["body", "text"]),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == location
        assert response.json()["errors"][0]["type"] == "missing"
    assert client.post("/login", data={"username": "ada"}).json() == {"username": "ada"}
    assert client.post("/note", json={"text": "hi"}).json() == {"text": "hi"}


def test_response_model_converts_and_filters_results(client):
    created = client.post("/users", json={"name": "ada", "password": "secret"})
    assert (created.status_code, created.json()) == (201, {"name": "ada"})
    assert client.get("/users/raw").json() == {"name": "ada"}
    assert client.get("/users/many").json() == [{"name": "ada"}, {"name": "bob"}]
    assert client.get("/users/as-returned").json() == {"name": "ada", "extra": True}  # None: as returned
    document = client.get("/openapi.json").json()
    schema = document["paths"]["/users"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/UserOut"}


def test_starlette_request_spellings(client):
    assert client.post("/starlette/json", json={"a": [1, 2]}).json() == {"received": {"a": [1, 2]}}
    assert client.post("/starlette/body", content=b"12345").json() == {"length": 5, "same": True}
    assert client.post("/flask/body", content=b"123").json() == {"length": 3, "plain": 3}


def test_http_exception_with_status_code(client):
    response = client.get("/missing/x")
    assert response.status_code == 404
    assert response.json()["detail"] == "No item x"


def test_unknown_route_options_fail_at_registration():
    app = App()
    with pytest.raises(ConfigurationError, match="frobnicate") as refused:
        app.get("/x", frobnicate=True)
    assert "response_model" in str(refused.value)  # it names the valid ones
    with pytest.raises(ConfigurationError, match="response_modle"):
        app.post("/y", response_modle=dict)
    with pytest.raises(TypeError):
        HTTPException()
    with pytest.raises(TypeError):
        HTTPException(404, status_code=404)
