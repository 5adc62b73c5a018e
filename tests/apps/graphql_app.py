"""A GraphQL endpoint the live tests reach over real sockets (tests/live/test_graphql_live.py): queries with the
request in the context, a mutation, a resolver whose error must stay masked, and the limits on by default."""

from __future__ import annotations

import strawberry

from cello import App, Request
from cello.graphql import Info

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


def context(request: Request) -> dict[str, str]:
    return {"agent": request.header("user-agent", "nobody") or "nobody"}


app.graphql("/graphql", strawberry.Schema(Query, Mutation), context=context)


@app.get("/__ready")
def ready() -> dict[str, bool]:
    return {"ready": True}
