"""Litestar with Strawberry's own integration (strawberry.litestar.make_graphql_controller) serving the benchmark
schema."""

from graphql_schema import close_pool, open_pool, schema
from litestar import Litestar
from strawberry.litestar import make_graphql_controller

GraphQLController = make_graphql_controller(schema, path="/graphql")
app = Litestar(route_handlers=[GraphQLController], on_startup=[open_pool], on_shutdown=[close_pool])
