"""Security: authentication (JWT, Basic, API keys), RBAC guards, sessions, CSRF protection, security headers.

Everything here is middleware of the one contract (``cello.middleware``): attach it to the app, a blueprint or
a route. Authenticators put the caller in ``request.user`` (a ``Principal``); guards decide from it.
"""

from .api_key import ApiKeyAuth
from .base import Authenticator, Principal, UserLoader
from .basic import BasicAuth
from .guards import And, Authenticated, FunctionGuard, Guard, Not, Or, Permission, Role, current_user
from .jwt import JwtAuth, JwtConfig

__all__ = [
    "And",
    "ApiKeyAuth",
    "Authenticated",
    "Authenticator",
    "BasicAuth",
    "FunctionGuard",
    "Guard",
    "JwtAuth",
    "JwtConfig",
    "Not",
    "Or",
    "Permission",
    "Principal",
    "Role",
    "UserLoader",
    "current_user",
]
