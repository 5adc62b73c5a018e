"""GraphiQL served by the app itself, under the default security headers (tests/live/test_graphiql_browser.py);
a schema without subscriptions, so ``cello run`` keeps granian's RSGI interface (tests/live/test_graphql_live.py)."""

from __future__ import annotations

import strawberry

from cello import App

app = App()
app.enable_security_headers()  # the page must work under the default Content-Security-Policy


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"


@strawberry.type
class Mutation:
    @strawberry.mutation
    def shout(self, text: str) -> str:
        return text.upper()


app.graphql("/graphql", strawberry.Schema(Query, Mutation), graphiql=True)


@app.get("/__ready")
def ready() -> dict[str, bool]:
    return {"ready": True}
