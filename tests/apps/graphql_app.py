"""A GraphQL endpoint the live tests reach over real sockets (tests/live/test_graphql_live.py): queries with the
request in the context, a mutation, a resolver whose error must stay masked, and the limits on by default."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry

from cello import App, Request
from cello.graphql import Context, Info

app = App()
counter = {"value": 0}


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, info: Info, name: str = "world") -> str:
        return f"hello {name} from {info.context['agent']}"

    @strawberry.field
    def count(self) -> int:
        return counter["value"]

    @strawberry.field
    def secret(self) -> str:
        raise RuntimeError("the signing key is 0xDEADBEEF")


@strawberry.type
class Mutation:
    @strawberry.mutation
    def increment(self, by: int = 1) -> int:
        counter["value"] += by
        return counter["value"]


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def countdown(self, info: Info, start: int = 3) -> AsyncGenerator[str, None]:
        for n in range(start, 0, -1):
            yield f"{n} for {info.context['agent']}"
            await asyncio.sleep(0.01)

    @strawberry.subscription
    async def quiet(self) -> AsyncGenerator[int, None]:
        await asyncio.sleep(3600)  # never says anything: the connection lives on the server's pings
        yield 0


def context(request: Request) -> dict[str, str]:
    return {"agent": request.header("user-agent", "nobody") or "nobody"}


def on_connect(context: Context, params: dict[str, object]) -> dict[str, str] | bool:
    """Authentication at connection_init: a client presenting the wrong token is refused (4403)."""
    if params.get("token") == "stolen":
        return False
    return {"welcome": str(params.get("token", "guest"))}


app.graphql(
    "/graphql",
    strawberry.Schema(Query, Mutation, Subscription),
    context=context,
    ping_interval=0.2,
    connection_init_timeout=1.0,
    max_subscriptions=3,
    on_connect=on_connect,
    origins=["http://trusted.example"],
)


@app.get("/__ready")
def ready() -> dict[str, bool]:
    return {"ready": True}
