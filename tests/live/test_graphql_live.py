"""GraphQL over real sockets, served by granian (through its ASGI interface, which ``cello run`` picks for an app
whose WebSocket routes choose a subprotocol) and by uvicorn: queries and mutations with httpx, the specification's
media types and status codes, masked errors, a hostile document refused while the worker stays up; subscriptions
with gql over graphql-transport-ws and graphql-ws, the server's pings, the connection_init timeout, authentication
at connection_init, the subscription cap, the Origin check, and a subscription over SSE."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("strawberry")

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module", params=["granian", "uvicorn"])
def server(request: pytest.FixtureRequest, live_module: Any) -> Any:
    started = live_module("graphql_app:app", request.param, ready_path="/__ready").start()
    if request.param == "granian":  # subscriptions: cello run serves the app through granian's ASGI interface
        assert "serving through granian's ASGI interface" in started.output()
    return started


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


# -- subscriptions ---------------------------------------------------------------------------------------------------


def ws_url(server: Any) -> str:
    return server.url.replace("http://", "ws://", 1) + "/graphql"


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_subscriptions_with_gql_over_both_protocols(server: Any, protocol: str) -> None:
    from gql import Client, gql
    from gql.transport.websockets import WebsocketsTransport

    transport = WebsocketsTransport(url=ws_url(server), subprotocols=[protocol], init_payload={"token": "t-1"},
                                    headers={"user-agent": "gql-client"})  # fmt: skip
    async with Client(transport=transport) as session:
        assert transport.subprotocol == protocol  # the handshake answered with the protocol chosen
        answers = [answer async for answer in session.subscribe(gql("subscription { countdown(start: 3) }"))]
        assert answers == [{"countdown": f"{n} for gql-client"} for n in (3, 2, 1)]
        if protocol == "graphql-transport-ws":  # the legacy protocol carries subscriptions only
            assert set(await session.execute(gql("{ count }"))) == {"count"}


async def exchange(server: Any, *messages: dict[str, Any], origin: str | None = None,
                   until: str | None = None, timeout: float = 5.0) -> tuple[list[dict[str, Any]], Any]:  # fmt: skip
    """Open a graphql-transport-ws connection, send ``messages``, and collect what comes back until a message of
    type ``until`` (or the close); the messages and the close code."""
    import asyncio
    import json

    import websockets

    received: list[dict[str, Any]] = []
    headers = {"origin": origin} if origin else {}
    async with websockets.connect(ws_url(server), subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                                  additional_headers=headers) as socket:  # fmt: skip
        for message in messages:
            await socket.send(json.dumps(message))
        try:
            async with asyncio.timeout(timeout):
                async for raw in socket:
                    received.append(json.loads(raw))
                    if until is not None and received[-1]["type"] == until:
                        break
        except websockets.ConnectionClosed:
            pass
        return received, socket.close_code


async def test_the_server_pings_after_connection_ack(server: Any) -> None:
    received, _ = await exchange(server, {"type": "connection_init", "payload": {"token": "t"}}, until="ping")
    assert received == [{"type": "connection_ack", "payload": {"welcome": "t"}}, {"type": "ping"}]


async def test_connection_init_timeout_and_refused_authentication(server: Any) -> None:
    _, code = await exchange(server)  # says nothing
    assert code == 4408
    _, code = await exchange(server, {"type": "connection_init", "payload": {"token": "stolen"}})
    assert code == 4403


async def test_the_subscription_cap_per_connection(server: Any) -> None:
    init = {"type": "connection_init"}
    subscribe = [{"type": "subscribe", "id": str(n), "payload": {"query": "subscription { quiet }"}} for n in range(4)]
    received, _ = await exchange(server, init, *subscribe, until="error")
    assert received[-1]["id"] == "3" and received[-1]["payload"][0]["message"] == "Subscription limit reached"


async def test_cross_origin_pages_are_refused_unless_allowed(server: Any) -> None:
    import websockets

    with pytest.raises(websockets.InvalidStatus) as refused:
        await exchange(server, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    received, _ = await exchange(server, {"type": "connection_init"}, origin="http://trusted.example",
                                 until="connection_ack")  # fmt: skip
    assert received[0]["type"] == "connection_ack"


def test_a_subscription_over_sse(server: Any) -> None:
    query = {"query": "subscription { countdown(start: 2) }"}
    with httpx.Client(base_url=server.url, headers={"user-agent": "sse-client"}) as client:
        with client.stream("POST", "/graphql", json=query, headers={"accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            text = "".join(stream.iter_text()).replace("\r\n", "\n")
    events = [block.strip() for block in text.split("\n\n") if block.strip() and not block.startswith(":")]
    assert events == [
        'event: next\ndata: {"data":{"countdown":"2 for sse-client"}}',
        'event: next\ndata: {"data":{"countdown":"1 for sse-client"}}',
        "event: complete\ndata:",
    ]


# -- the example, on two servers sharing PostgreSQL and Redis -----------------------------------------------------


@pytest.mark.services
async def test_a_subscription_on_one_server_gets_what_another_published(
    live: Any, postgres_database: str, tmp_path: Path
) -> None:
    """examples/graphql_api.py twice (as two machines would run it): a book added through one server reaches a
    subscriber of the other, through the broadcast hub's Redis."""
    from gql import Client, gql
    from gql.transport.websockets import WebsocketsTransport

    from _helpers import redis_server

    with redis_server(tmp_path) as redis:
        env = {"DATABASE_URL": postgres_database, "REDIS_URL": redis.url}
        first, second = (live("graphql_api:app", cwd=EXAMPLES, env=env, ready_path="/graphql?query={__typename}")
                         .start() for _ in range(2))  # fmt: skip
        transport = WebsocketsTransport(url=ws_url(first), subprotocols=["graphql-transport-ws"])
        async with Client(transport=transport) as session:
            added: list[Any] = []

            async def listen() -> None:
                async for event in session.subscribe(gql("subscription { bookAdded { title author { name } } }")):
                    added.append(event["bookAdded"])
                    return

            listening = asyncio.ensure_future(listen())
            await asyncio.sleep(0.5)  # subscribed: the first server listens to the hub's channel
            async with httpx.AsyncClient(base_url=second.url) as client:
                mutation = 'mutation { addBook(title: "The Left Hand of Darkness", authorId: 1) { id } }'
                answer = await client.post("/graphql", json={"query": mutation})
                assert answer.json()["data"]["addBook"]["id"] > 0
            await asyncio.wait_for(listening, 10)
        assert added == [{"title": "The Left Hand of Darkness", "author": {"name": "Ursula K. Le Guin"}}]


# -- the npm graphql-ws client under Node -------------------------------------------------------------------------


def test_the_npm_graphql_ws_client(server: Any, node_modules: Path) -> None:
    import json
    import subprocess

    script = node_modules.parent / "graphql_ws_client.mjs"
    done = subprocess.run(["node", str(script), ws_url(server)], capture_output=True, text=True, timeout=30,
                          cwd=node_modules.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [item["data"]["countdown"] for item in result["countdown"]] == [f"{n} for nobody" for n in (3, 2, 1)]
    assert result["query"] == [{"data": {"hello": "hello node from nobody"}}]
    assert result["pings"] >= 2  # the server's pings, answered by the client


# -- granian's RSGI interface: a schema without subscriptions stays on it -----------------------------------------


def test_queries_and_mutations_over_granian_rsgi(live: Any) -> None:
    server = live("graphiql_app:app", ready_path="/__ready").start()  # no subscription type: no WebSocket route
    assert "ASGI interface" not in server.output()  # cello run did not switch interfaces
    with httpx.Client(base_url=server.url) as client:
        answer = client.post("/graphql", json={"query": '{ hello(name: "rsgi") }'})
        assert answer.json() == {"data": {"hello": "hello rsgi"}}
        assert client.get("/graphql", params={"query": "{ hello }"}).json() == {"data": {"hello": "hello world"}}
        strict = client.post(
            "/graphql", json={"query": "{ nope }"}, headers={"accept": "application/graphql-response+json"}
        )
        assert strict.status_code == 400
        shout = client.post("/graphql", json={"query": 'mutation { shout(text: "rsgi") }'})
        assert shout.json() == {"data": {"shout": "RSGI"}}
        assert client.get("/graphql", params={"query": 'mutation { shout(text: "x") }'}).status_code == 405
