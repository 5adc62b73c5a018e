"""GraphQL over HTTP (cello.graphql) through the in-process client: the GraphQL-over-HTTP specification's methods,
media types and status codes, the context (request, DI, DataLoaders per request), guards as permissions, the limits
that refuse hostile documents before any resolver runs, and error masking."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

strawberry = pytest.importorskip("strawberry")

from strawberry.dataloader import DataLoader  # noqa: E402
from strawberry.file_uploads import Upload  # noqa: E402

from cello import App, Blueprint, ConfigurationError, Depends, HTTPException, Request  # noqa: E402
from cello.graphql import Context, Info, permission  # noqa: E402
from cello.realtime import WebSocketDisconnect  # noqa: E402
from cello.security import Authenticated, Principal, Role  # noqa: E402
from cello.testing import TestClient  # noqa: E402

GRAPHQL_RESPONSE = "application/graphql-response+json"
calls: list[str] = []  # resolvers that ran


@strawberry.type
class Author:
    id: int
    name: str


@strawberry.type
class Book:
    id: int
    title: str
    author_id: strawberry.Private[int]

    @strawberry.field
    async def author(self, info: Info) -> Author:
        return await info.context.loaders["author"].load(self.author_id)  # type: ignore[no-any-return]


BOOKS = [Book(id=n, title=f"Book {n}", author_id=n % 3) for n in range(1, 10)]


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, info: Info, name: str = "world") -> str:
        calls.append("hello")
        return f"hello {name} via {info.context.request.method}"

    @strawberry.field
    def who(self, info: Info) -> str:
        return info.context["tenant"]  # type: ignore[no-any-return]

    @strawberry.field
    def books(self, first: int = 100) -> list[Book]:
        calls.append("books")
        return BOOKS[:first]

    @strawberry.field
    def secret(self) -> str:
        raise RuntimeError("the database password is hunter2")

    @strawberry.field
    def missing(self) -> str:
        raise HTTPException(404, "No such thing.")

    @strawberry.field(permission_classes=[permission(Authenticated())])
    def me(self, info: Info) -> str:
        return info.context.request.user.id  # type: ignore[no-any-return]

    @strawberry.field(permission_classes=[permission(Role("admin") | Role("auditor"))])
    def audit(self) -> str:
        calls.append("audit")
        return "all clear"


@strawberry.type
class Mutation:
    @strawberry.mutation
    def rename(self, name: str) -> str:
        calls.append("rename")
        return name


schema = strawberry.Schema(Query, Mutation)
loads: list[list[int]] = []


def loaders() -> dict[str, DataLoader[int, Author]]:
    async def authors(ids: list[int]) -> list[Author]:
        loads.append(list(ids))
        return [Author(id=i, name=f"Author {i}") for i in ids]

    return {"author": DataLoader(load_fn=authors)}


def context(request: Request, made: dict[str, Any] = Depends(loaders)) -> dict[str, Any]:
    return {"tenant": request.header("x-tenant", "none"), "loaders": made}


def authenticate(request: Request, call_next: Any) -> Any:
    user = request.header("x-user")
    if user:
        roles = frozenset(filter(None, (request.header("x-roles") or "").split(",")))
        request.context["user"] = Principal(user, roles=roles)
    return call_next(request)


def make(**options: Any) -> App:
    app = App(debug=options.pop("debug", False))
    app.use(authenticate)
    app.graphql("/graphql", schema, context=context, **options)
    return app


@pytest.fixture
def client() -> Any:
    calls.clear()
    loads.clear()
    with TestClient(make()) as client:
        yield client


def post(client: Any, query: str, **extra: Any) -> Any:
    headers = extra.pop("headers", {})
    return client.post("/graphql", json={"query": query, **extra}, headers=headers)


# -- methods, media types, status codes --------------------------------------------------------------------------


def test_post_and_get_answer_queries_with_the_request_in_the_context(client: Any) -> None:
    answer = post(client, "query Q($n: String!) { hello(name: $n) who }", variables={"n": "ada"},
                  headers={"x-tenant": "acme"})  # fmt: skip
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"data": {"hello": "hello ada via POST", "who": "acme"}}
    answer = client.get("/graphql", params={"query": "{ hello }"})
    assert answer.json() == {"data": {"hello": "hello world via GET"}}


def test_a_mutation_over_get_is_405_and_runs_nothing(client: Any) -> None:
    answer = client.get("/graphql", params={"query": 'mutation { rename(name: "x") }'})
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.headers["content-type"] == "application/problem+json"
    assert calls == []
    assert post(client, 'mutation { rename(name: "x") }').json() == {"data": {"rename": "x"}}


def test_graphql_response_json_gets_the_specifications_status_codes(client: Any) -> None:
    accept = {"accept": f"{GRAPHQL_RESPONSE}, application/json;q=0.9"}
    refused = post(client, "{ nope }", headers=accept)
    assert refused.status_code == 400
    assert refused.headers["content-type"] == GRAPHQL_RESPONSE
    assert "data" not in refused.json() and refused.json()["errors"][0]["message"].startswith("Cannot query")
    partial = post(client, "{ hello secret }", headers=accept)
    assert partial.status_code == 200  # executed: a GraphQL answer, with a field error
    assert partial.json()["data"] is None or partial.json()["data"].get("hello")
    # a client of application/json (or of nothing in particular) gets 200 for any GraphQL answer
    legacy = post(client, "{ nope }")
    assert legacy.status_code == 200 and "data" not in legacy.json()


@pytest.mark.parametrize(
    ("request_options", "status"),
    [
        ({"content": b"{ hello }", "headers": {"content-type": "application/graphql"}}, 415),
        ({"data": {"query": "{ hello }"}}, 415),  # a form: a "simple" cross-site request
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"json": {"variables": {}}}, 400),  # no query
        ({"json": {"query": 7}}, 400),
        ({"json": {"query": "{ hello }", "variables": [1]}}, 400),
        ({"json": [{"query": "{ hello }"}]}, 400),  # batching is off
        ({"json": {"query": "{ hello }"}, "headers": {"accept": "text/html"}}, 406),
    ],
)
def test_bad_requests_get_problem_json(client: Any, request_options: dict[str, Any], status: int) -> None:
    answer = client.post("/graphql", **request_options)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert calls == []


def test_get_without_a_query_is_400_and_subscriptions_are_not_answered_over_plain_http(client: Any) -> None:
    assert client.get("/graphql").status_code == 400
    assert client.put("/graphql", json={"query": "{ hello }"}).status_code == 405


def test_batching_when_enabled() -> None:
    with TestClient(make(batching=2)) as client:
        answer = client.post("/graphql", json=[{"query": "{ hello }"}, {"query": '{ hello(name: "b") }'}])
        assert [item["data"]["hello"] for item in answer.json()] == ["hello world via POST", "hello b via POST"]
        too_many = client.post("/graphql", json=[{"query": "{ hello }"}] * 3)
        assert too_many.status_code == 400


# -- context: DI and DataLoaders per request ---------------------------------------------------------------------


def test_dataloaders_made_per_request_batch_the_authors(client: Any) -> None:
    query = "{ books(first: 9) { title author { name } } }"
    first = post(client, query).json()["data"]["books"]
    assert first[0] == {"title": "Book 1", "author": {"name": "Author 1"}}
    assert loads == [[1, 2, 0]]  # nine books, three authors, one load
    post(client, query)
    assert loads == [[1, 2, 0], [1, 2, 0]]  # a new loader (and cache) for the second request


def test_an_application_context_object_is_used_as_it_is() -> None:
    class Mine:
        def __init__(self, request: Request) -> None:
            self.request = request
            self.tenant = "own"
            self.loaders: dict[str, Any] = {}

    app = App()
    app.graphql("/graphql", schema, context=lambda request: Mine(request))
    app.graphql("/plain", schema)
    with TestClient(app) as client:
        for path in ("/graphql", "/plain"):
            assert client.post(path, json={"query": "{ hello }"}).json() == {"data": {"hello": "hello world via POST"}}


def test_the_context_reads_as_a_mapping() -> None:
    context = Context(None, None, {"a": 1})  # type: ignore[arg-type]
    assert dict(context) == {"request": None, "response": None, "a": 1}
    assert context.a == 1 and context["a"] == 1 and context.get("b") is None
    with pytest.raises(AttributeError):
        _ = context.b


# -- permissions -------------------------------------------------------------------------------------------------


def test_guards_as_permission_classes(client: Any) -> None:
    anonymous = post(client, "{ me }").json()
    assert anonymous["errors"][0]["message"] == "Authentication is required."
    assert anonymous["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert post(client, "{ me }", headers={"x-user": "ada"}).json() == {"data": {"me": "ada"}}
    forbidden = post(client, "{ audit }", headers={"x-user": "ada", "x-roles": "reader"}).json()
    assert forbidden["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    assert calls == []  # the resolver never ran
    allowed = post(client, "{ audit }", headers={"x-user": "bo", "x-roles": "auditor"}).json()
    assert allowed == {"data": {"audit": "all clear"}}


def test_guards_on_the_whole_endpoint() -> None:
    app = App()
    app.use(authenticate)
    app.graphql("/graphql", schema, guards=[Authenticated()])
    with TestClient(app) as client:
        assert client.post("/graphql", json={"query": "{ hello }"}).status_code == 401
        answer = client.post("/graphql", json={"query": "{ hello }"}, headers={"x-user": "ada"})
        assert answer.json() == {"data": {"hello": "hello world via POST"}}


def test_on_a_blueprint() -> None:
    api = Blueprint()
    api.graphql("/graphql", schema)
    app = App()
    app.register_blueprint(api, "/api")
    with TestClient(app) as client:
        assert client.post("/api/graphql", json={"query": "{ hello }"}).json()["data"]["hello"].startswith("hello")


# -- limits: refused before any resolver runs --------------------------------------------------------------------


def refused(client: Any, query: str) -> str:
    answer = post(client, query, headers={"accept": GRAPHQL_RESPONSE})
    assert answer.status_code == 400, answer.text
    assert calls == []
    return answer.json()["errors"][0]["message"]  # type: ignore[no-any-return]


def test_deep_nesting_is_refused(client: Any) -> None:
    assert post(client, "{ books { author { name } } }").status_code == 200
    calls.clear()
    with TestClient(make(max_depth=1)) as shallow:
        assert "exceeds maximum operation depth" in refused(shallow, "{ books { author { name } } }")


def test_a_thousand_aliases_are_refused(client: Any) -> None:
    query = "{ " + " ".join(f"a{n}: hello" for n in range(1000)) + " }"
    assert "more than 2000 tokens" in refused(client, query)  # the parser gives up first
    hundred = "{ " + " ".join(f"a{n}: hello" for n in range(100)) + " }"
    assert refused(client, hundred) == "100 aliases found. Allowed: 15"


def test_a_huge_document_is_refused_by_the_parser(client: Any) -> None:
    assert "more than 2000 tokens" in refused(client, "{ " + "hello " * 5000 + "}")
    assert "more than 2000 tokens" in refused(client, "{ books { " + "title " * 3000 + "} }")


def test_a_long_document_is_refused_before_it_is_read(client: Any) -> None:
    long = "{ hello } #" + "x" * 150_000  # one comment: a single token, 150,000 characters
    assert "more than 100000 code points" in refused(client, long)
    assert post(client, "{ hello } #" + "x" * 90_000).status_code == 200
    calls.clear()
    with TestClient(make(max_length=None)) as unlimited:
        assert post(unlimited, long).json()["data"]["hello"] == "hello world via POST"


def test_a_long_subscription_is_refused_before_it_is_read() -> None:
    @strawberry.type
    class Ticks:
        @strawberry.subscription
        async def tick(self) -> AsyncGenerator[int, None]:
            calls.append("tick")
            yield 1

    def subscribe(client: Any, query: str) -> Any:
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_text(json.dumps({"type": "connection_init"}))
            assert json.loads(ws.receive_text())["type"] == "connection_ack"
            ws.send_text(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": query}}))
            return json.loads(ws.receive_text())

    app = App()
    app.graphql("/graphql", strawberry.Schema(Query, subscription=Ticks), max_length=1000)
    calls.clear()
    with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect) as closed:  # graphql-transport-ws: a syntax error closes with 4400
            subscribe(client, "subscription { tick } #" + "x" * 2000)
        assert closed.value.code == 4400
        assert "more than 1000 code points" in closed.value.reason
        assert calls == []
        assert subscribe(client, "subscription { tick }")["payload"]["data"] == {"tick": 1}


def test_costly_operations_are_refused(client: Any) -> None:
    # nine books with their authors: 1 + 9 * (1 + 1 + 1 * 2)
    assert post(client, "{ books(first: 9) { title author { name } } }").status_code == 200
    calls.clear()
    with TestClient(make(max_cost=100)) as strict:
        message = refused(strict, "{ books(first: 500) { title author { id name } } }")
        assert "would resolve more than 100 fields" in message
        # without a size argument a list counts list_size (10) items
        assert post(strict, "{ books { title } }").status_code == 200
        calls.clear()
        fragments = "{ books(first: 50) { ...B } } fragment B on Book { title author { name } }"
        assert "more than 100" in refused(strict, fragments)


def test_limits_can_be_turned_off_and_are_checked() -> None:
    with TestClient(make(max_aliases=None)) as client:
        assert post(client, "{ " + " ".join(f"a{n}: hello" for n in range(100)) + " }").status_code == 200
    for bad in (
        {"max_depth": 0},
        {"max_cost": "many"},
        {"max_length": 0},
        {"list_size": 0},
        {"batching": True},
        {"context": 3},
    ):
        with pytest.raises(ConfigurationError):
            App().graphql("/graphql", schema, **bad)
    with pytest.raises(ConfigurationError):
        App().graphql("/graphql", object())


# -- errors, introspection ---------------------------------------------------------------------------------------


def test_resolver_errors_are_masked_and_logged(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="cello.graphql"):
        answer = post(client, "{ secret }")
    assert answer.status_code == 200
    assert "hunter2" not in answer.text and "Traceback" not in answer.text
    assert answer.json()["errors"][0]["message"] == "Internal server error."
    assert "hunter2" in caplog.text  # the log has it, with its traceback
    # an HTTPException's detail is written for clients
    assert post(client, "{ missing }").json()["errors"][0]["message"] == "No such thing."


def test_debug_mode_shows_errors_and_allows_introspection() -> None:
    with TestClient(make(debug=True)) as client:
        assert "hunter2" in post(client, "{ secret }").text
        types = post(client, "{ __schema { queryType { name } } }").json()
        assert types == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


def test_introspection_and_suggestions_are_off_outside_debug(client: Any) -> None:
    answer = post(client, "{ __schema { queryType { name } } }").json()
    assert "introspection has been disabled" in answer["errors"][0]["message"]
    suggestion = post(client, "{ helo }").json()["errors"][0]["message"]
    assert "Did you mean" not in suggestion
    with TestClient(make(introspection=True)) as open_client:
        assert post(open_client, "{ __typename }").json() == {"data": {"__typename": "Query"}}
        assert "Did you mean" in post(open_client, "{ helo }").json()["errors"][0]["message"]


def test_requests_refused_are_not_logged_as_errors(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        post(client, "{ " + "hello " * 5000 + "}")
        post(client, "{ nope }")
    logged = [record for record in caplog.records if record.name.startswith(("cello", "strawberry"))]
    assert not [record for record in logged if record.levelno >= logging.INFO]


def test_concurrent_requests_keep_their_own_context() -> None:
    async def run() -> None:
        from cello.testing import AsyncTestClient

        async with AsyncTestClient(make()) as client:
            answers = await asyncio.gather(*(
                client.post("/graphql", json={"query": "{ who }"}, headers={"x-tenant": f"t{n}"}) for n in range(20)
            ))  # fmt: skip
            assert [answer.json()["data"]["who"] for answer in answers] == [f"t{n}" for n in range(20)]

    asyncio.run(run())


# -- the OpenAPI document and the command line -------------------------------------------------------------------


def test_the_endpoint_in_the_openapi_document() -> None:
    from openapi_spec_validator import validate

    for debug, shown in ((False, False), (True, True)):
        document = make(debug=debug).openapi()
        validate(document)
        post_operation = document["paths"]["/graphql"]["post"]
        assert post_operation["requestBody"]["content"]["application/json"]["schema"]["required"] == ["query"]
        assert "application/graphql-response+json" in post_operation["responses"]["200"]["content"]
        get_operation = document["paths"]["/graphql"]["get"]
        assert [p["name"] for p in get_operation["parameters"]][:2] == ["query", "variables"]
        # the SDL only where introspection would give it anyway
        assert ("x-graphql-schema" in post_operation) is shown
        if shown:
            assert "type Query {" in post_operation["x-graphql-schema"]


def test_cello_graphql_schema_prints_the_sdl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from cello.cli import main

    monkeypatch.chdir(Path(__file__).parent / "apps")
    assert main(["graphql-schema", "graphql_app:app"]) == 0
    printed = capsys.readouterr().out
    assert "type Query {" in printed and "type Subscription {" in printed
    with pytest.raises(SystemExit) as refused:
        main(["graphql-schema", "graphql_app:app", "--path", "/elsewhere"])
    assert refused.value.code == 2
    assert "no GraphQL endpoint at /elsewhere" in capsys.readouterr().err


def test_prometheus_metrics_per_operation() -> None:
    prometheus = pytest.importorskip("prometheus_client")
    from cello.graphql import metrics

    app = App()
    app.enable_prometheus()
    app.graphql("/metered", schema, context=context)

    def count(**labels: str) -> float:
        value = prometheus.REGISTRY.get_sample_value(
            "cello_graphql_operations_total", {"endpoint": "/metered", **labels}
        )
        return value or 0.0

    with TestClient(app) as client:
        client.post("/metered", json={"query": "query Greeting { hello }"})
        client.post("/metered", json={"query": "{ secret }"})
        client.post("/metered", json={"query": "{ nope }"})
        client.post("/metered", json={"query": "{ broken"})
        for n in range(metrics.MAX_NAMES + 5):  # a client making up names cannot grow the label set
            client.post("/metered", json={"query": f"query Made{n} {{ hello }}"})
        text = client.get("/metrics").text
    assert count(operation="Greeting", type="query", outcome="ok") == 1
    assert count(operation="<anonymous>", type="query", outcome="errors") == 1
    assert count(operation="<anonymous>", type="query", outcome="refused") == 1
    assert count(operation="<invalid>", type="unknown", outcome="refused") == 1
    assert count(operation="<other>", type="query", outcome="ok") == 6  # Greeting took one of the hundred names
    assert 'cello_graphql_operation_seconds_count{endpoint="/metered",operation="Greeting",type="query"} 1.0' in text


# -- GraphiQL ----------------------------------------------------------------------------------------------------


def test_graphiql_is_served_by_the_app_when_on() -> None:
    import gzip

    from cello.graphql import ide

    browser = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    with TestClient(make()) as client:  # outside debug mode: no page, no files, no introspection
        assert client.get("/graphql", headers=browser).status_code == 400
        assert client.get(f"{ide.assets_path('/graphql')}/graphiql.min.js").status_code == 404
    with TestClient(make(graphiql=True)) as client:
        page = client.get("/graphql", headers=browser)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<script>" not in page.text and "https://" not in page.text  # nothing inline, nothing from elsewhere
        base = ide.assets_path("/graphql")
        assert f'src="{base}/graphiql.min.js"' in page.text
        packed = client.get(f"{base}/graphiql.min.js", headers={"accept-encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        assert "immutable" in packed.headers["cache-control"]
        plain = client.get(f"{base}/react.production.min.js", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content.startswith(b"/**")
        assert gzip.decompress((ide.STATIC / "react.production.min.js.gz").read_bytes()) == plain.content
        assert client.get(f"{base}/secrets.txt").status_code == 404
        # GraphiQL needs introspection: it comes with it
        assert post(client, "{ __schema { queryType { name } } }").json()["data"]["__schema"]["queryType"]["name"]
        # a GET with a query is still a GraphQL request, in a browser too
        assert client.get("/graphql", params={"query": "{ hello }"}, headers=browser).json()["data"]["hello"]


# -- persisted queries -------------------------------------------------------------------------------------------


def sha(document: str) -> str:
    import hashlib

    return hashlib.sha256(document.encode()).hexdigest()


def persisted(named: str, query: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": named}}, **extra}
    if query is not None:
        body["query"] = query
    return body


def code_of(answer: Any) -> str:
    return answer.json()["errors"][0]["extensions"]["code"]  # type: ignore[no-any-return]


def test_automatic_persisted_queries() -> None:
    query = '{ hello(name: "apq") }'
    with TestClient(make(apq=True)) as client:
        unknown = client.post("/graphql", json=persisted(sha(query)))
        assert unknown.status_code == 200 and unknown.json()["errors"][0]["message"] == "PersistedQueryNotFound"
        assert code_of(unknown) == "PERSISTED_QUERY_NOT_FOUND"
        assert client.post("/graphql", json=persisted(sha(query), query)).json() == {
            "data": {"hello": "hello apq via POST"}
        }
        # the hash alone now, over POST and over GET
        assert client.post("/graphql", json=persisted(sha(query))).json()["data"]["hello"] == "hello apq via POST"
        extensions = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha(query)}})
        assert client.get("/graphql", params={"extensions": extensions}).json()["data"]["hello"] == "hello apq via GET"
        wrong = client.post("/graphql", json=persisted(sha("{ other }"), query), headers={"accept": GRAPHQL_RESPONSE})
        assert wrong.status_code == 400 and code_of(wrong) == "PERSISTED_QUERY_HASH_MISMATCH"
        # an invalid document is not kept
        invalid = "{ nope }"
        client.post("/graphql", json=persisted(sha(invalid), invalid))
        assert code_of(client.post("/graphql", json=persisted(sha(invalid)))) == "PERSISTED_QUERY_NOT_FOUND"
        assert code_of(client.post("/graphql", json=persisted(sha(query)) | {"extensions": {"persistedQuery": {
            "version": 2, "sha256Hash": sha(query)}}})) == "PERSISTED_QUERY_NOT_SUPPORTED"  # fmt: skip


def test_an_endpoint_without_apq_says_so(client: Any) -> None:
    assert code_of(client.post("/graphql", json=persisted(sha("{ hello }")))) == "PERSISTED_QUERY_NOT_SUPPORTED"


def test_the_allowlist_runs_registered_operations_only() -> None:
    listed = "query Greeting { hello }"
    with TestClient(make(persisted_queries={sha(listed): listed})) as client:
        assert client.post("/graphql", json=persisted(sha(listed))).json()["data"]["hello"].startswith("hello")
        assert client.post("/graphql", json={"query": listed}).json()["data"]["hello"].startswith("hello")
        for refused_body in ({"query": "{ hello }"}, persisted(sha("{ hello }"), "{ hello }")):
            refused = client.post("/graphql", json=refused_body)
            assert code_of(refused) == "PERSISTED_QUERY_NOT_ALLOWED"
        assert calls == ["hello", "hello"]
    with pytest.raises(ConfigurationError, match="not the SHA-256"):
        App().graphql("/graphql", schema, persisted_queries={sha("{ a }"): "{ b }"})
    with pytest.raises(ConfigurationError, match="not both"):
        App().graphql("/graphql", schema, persisted_queries={}, apq=True)


@pytest.mark.services
def test_apq_in_redis_is_shared_by_every_worker() -> None:
    pytest.importorskip("redis")
    from _helpers import require_service
    from cello.stores import RedisStore

    require_service("Redis", "127.0.0.1", 6379)
    import uuid

    prefix = f"cello-test.{uuid.uuid4().hex[:8]}:"
    query = '{ hello(name: "redis") }'
    first, second = (make(apq=RedisStore("redis://127.0.0.1:6379/0", prefix=prefix)) for _ in range(2))
    with TestClient(first) as one:
        assert one.post("/graphql", json=persisted(sha(query), query)).json()["data"]["hello"] == "hello redis via POST"
    with TestClient(second) as other:  # another worker: the document is in Redis
        assert other.post("/graphql", json=persisted(sha(query))).json()["data"]["hello"] == "hello redis via POST"

    async def clean() -> None:
        store = RedisStore("redis://127.0.0.1:6379/0", prefix=prefix)
        await store.delete(f"graphql:apq:{sha(query)}")
        await store.close()

    asyncio.run(clean())


# -- uploads -----------------------------------------------------------------------------------------------------


def test_uploads_when_turned_on_and_never_from_a_simple_cross_site_form() -> None:
    @strawberry.type
    class Files:
        @strawberry.mutation
        async def upload(self, file: Upload) -> str:
            content = await file.read()
            return f"{file.filename} {file.content_type} {content.decode()}"

    files_schema = strawberry.Schema(Query, Files)
    mutation = "mutation ($file: Upload!) { upload(file: $file) }"
    form = {"operations": json.dumps({"query": mutation, "variables": {"file": None}}),
            "map": json.dumps({"0": ["variables.file"]})}  # fmt: skip
    upload = {"0": ("notes.txt", b"hello file", "text/plain")}
    app = App()
    app.graphql("/graphql", files_schema, uploads=True)
    app.graphql("/closed", files_schema)
    with TestClient(app) as client:
        answer = client.post("/graphql", data=form, files=upload, headers={"graphql-preflight": "1"})
        assert answer.json() == {"data": {"upload": "notes.txt text/plain hello file"}}
        bare = client.post("/graphql", data=form, files=upload)  # what a cross-site form could send
        assert bare.status_code == 400 and "GraphQL-Preflight" in bare.json()["detail"]
        assert client.post("/closed", data=form, files=upload, headers={"graphql-preflight": "1"}).status_code == 415
        broken = client.post("/graphql", data={"operations": "{", "map": "{}"}, files=upload,
                             headers={"graphql-preflight": "1"})  # fmt: skip
        assert broken.status_code == 400


# -- permissions on input fields ---------------------------------------------------------------------------------


@strawberry.input
class Raise:
    reason: str
    amount: int | None = strawberry.field(default=None, permission_classes=[permission(Role("hr"))])


@strawberry.input
class Review:
    raises: list[Raise]


@strawberry.type
class Payroll:
    @strawberry.mutation
    def review(self, review: Review) -> str:
        calls.append("review")
        return ", ".join(f"{item.reason}:{item.amount}" for item in review.raises)


def test_permissions_on_input_fields() -> None:
    app = App()
    app.use(authenticate)
    app.graphql("/graphql", strawberry.Schema(Query, Payroll))
    mutation = "mutation ($r: Review!) { review(review: $r) }"
    without_amount = {"r": {"raises": [{"reason": "promotion"}]}}
    with_amount = {"r": {"raises": [{"reason": "promotion"}, {"reason": "market", "amount": 5}]}}
    calls.clear()
    with TestClient(app) as client:
        mine = {"x-user": "ada", "x-roles": "engineer"}
        answer = client.post("/graphql", json={"query": mutation, "variables": without_amount}, headers=mine)
        assert answer.json() == {"data": {"review": "promotion:None"}}  # the guarded field not given: allowed
        refused = client.post("/graphql", json={"query": mutation, "variables": with_amount}, headers=mine).json()
        assert refused["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
        assert calls == ["review"]  # the refused one never ran
        hr = {"x-user": "bo", "x-roles": "hr"}
        allowed = client.post("/graphql", json={"query": mutation, "variables": with_amount}, headers=hr).json()
        assert allowed == {"data": {"review": "promotion:None, market:5"}}
        inline = 'mutation { review(review: {raises: [{reason: "x", amount: 1}]}) }'
        assert client.post("/graphql", json={"query": inline}).json()["errors"][0]["extensions"] == {
            "code": "UNAUTHENTICATED"
        }
