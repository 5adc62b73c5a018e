"""The examples run as documented."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cello.testing import TestClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
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
