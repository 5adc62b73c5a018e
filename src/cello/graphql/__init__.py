"""GraphQL on Strawberry: ``app.graphql("/graphql", schema, ...)`` serves a ``strawberry.Schema`` natively on
every engine, with the GraphQL-over-HTTP specification's media types and status codes, limits on by default and
resolvers' errors masked outside debug mode. Needs the ``graphql`` extra (strawberry-graphql)."""

from .context import Context, Info, Response
from .limits import Limits
from .permissions import permission
from .view import GraphQLView

__all__ = ["Context", "GraphQLView", "Info", "Limits", "Response", "permission"]
