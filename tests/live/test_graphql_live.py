"""GraphQL over real sockets on both faces of the app — granian's RSGI and an ASGI server (uvicorn) — with httpx:
queries, a mutation and its refusal over GET, the specification's media types and status codes, masked errors, and
a hostile document refused while the worker stays up."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytest.importorskip("strawberry")

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]


@pytest.fixture(scope="module", params=["granian", "uvicorn"])
def server(request: pytest.FixtureRequest, live_module: Any) -> Any:
    return live_module("graphql_app:app", request.param, ready_path="/__ready").start()


def test_queries_and_mutations(server: Any) -> None:
    with httpx.Client(base_url=server.url, headers={"user-agent": "tester"}) as client:
        answer = client.post("/graphql", json={"query": 'query { hello(name: "ada") }'})
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        assert answer.json() == {"data": {"hello": "hello ada from tester"}}
        assert client.get("/graphql", params={"query": "{ hello }"}).json() == {
            "data": {"hello": "hello world from tester"}
        }
        before = client.post("/graphql", json={"query": "{ count }"}).json()["data"]["count"]
        refused = client.get("/graphql", params={"query": "mutation { increment }"})
        assert refused.status_code == 405 and refused.headers["allow"] == "POST"
        done = client.post("/graphql", json={"query": "mutation Add($by: Int!) { increment(by: $by) }",
                                             "variables": {"by": 2}, "operationName": "Add"})  # fmt: skip
        assert done.json() == {"data": {"increment": before + 2}}


def test_media_types_errors_and_limits(server: Any) -> None:
    strict = {"accept": "application/graphql-response+json"}
    with httpx.Client(base_url=server.url) as client:
        invalid = client.post("/graphql", json={"query": "{ nothing }"}, headers=strict)
        assert invalid.status_code == 400
        assert invalid.headers["content-type"] == "application/graphql-response+json"
        masked = client.post("/graphql", json={"query": "{ secret }"})
        assert masked.status_code == 200
        assert "DEADBEEF" not in masked.text and masked.json()["errors"][0]["message"] == "Internal server error."
        hostile = client.post("/graphql", json={"query": "{ " + " ".join(f"a{n}: count" for n in range(1000)) + " }"},
                              headers=strict)  # fmt: skip
        assert hostile.status_code == 400
        form = client.post("/graphql", data={"query": "mutation { increment }"})
        assert form.status_code == 415 and form.headers["content-type"] == "application/problem+json"
        assert client.post("/graphql", json={"query": "{ count }"}).status_code == 200  # the worker is fine
