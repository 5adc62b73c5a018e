"""Security: authentication (JWT, Basic, API keys), RBAC guards, sessions, CSRF protection, security headers.

Everything here is middleware of the one contract (``cello.middleware``): attach it to the app, a blueprint or
a route. Authenticators put the caller in ``request.user`` (a ``Principal``); guards decide from it.
"""

from .api_key import ApiKeyAuth
from .base import Authenticator, Principal, UserLoader
from .basic import BasicAuth
from .csrf import CSRF, CSRFConfig
from .guards import And, Authenticated, FunctionGuard, Guard, Not, Or, Permission, Role, current_user
from .headers import CSP, HSTS, PermissionsPolicy, SecurityHeaders, SecurityHeadersConfig
from .jwt import JwtAuth, JwtConfig
from .sessions import Session, SessionConfig, Sessions

__all__ = [
    "CSP",
    "CSRF",
    "HSTS",
    "And",
    "ApiKeyAuth",
    "Authenticated",
    "Authenticator",
    "BasicAuth",
    "CSRFConfig",
    "FunctionGuard",
    "Guard",
    "JwtAuth",
    "JwtConfig",
    "Not",
    "Or",
    "Permission",
    "PermissionsPolicy",
    "Principal",
    "Role",
    "SecurityHeaders",
    "SecurityHeadersConfig",
    "Session",
    "SessionConfig",
    "Sessions",
    "UserLoader",
    "current_user",
]
