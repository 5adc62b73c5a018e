"""Cello's guards as Strawberry permission classes:
``@strawberry.field(permission_classes=[permission(Role("admin"))])`` — the same ``Authenticated()``, ``Role``,
``Permission``, guard functions and ``&`` / ``|`` / ``~`` combinations that protect routes, checked against the
request's user (set by the app's authenticator: JWT, API key, session)."""

from __future__ import annotations

from typing import Any

from strawberry.exceptions import StrawberryGraphQLError
from strawberry.permission import BasePermission

from ..security.guards import Guard, GuardFunction, as_guard, current_user

__all__ = ["permission"]

UNAUTHENTICATED = "Authentication is required."
FORBIDDEN = "You are not allowed to do this."


def permission(guard: Guard | GuardFunction) -> type[BasePermission]:
    """A Strawberry permission class checking ``guard``. A refusal is the field's error — ``UNAUTHENTICATED``
    (no user) or ``FORBIDDEN`` in its ``extensions.code`` — and its resolver does not run."""
    checked = as_guard(guard)

    class GuardPermission(BasePermission):
        message = FORBIDDEN

        async def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
            request = _request_of(info.context)
            user = current_user(request)
            if await checked.check_async(request, user):
                return True
            if user is None:
                raise StrawberryGraphQLError(UNAUTHENTICATED, extensions={"code": "UNAUTHENTICATED"})
            raise StrawberryGraphQLError(FORBIDDEN, extensions={"code": "FORBIDDEN"})

    GuardPermission.__qualname__ = GuardPermission.__name__ = f"permission({checked!r})"
    return GuardPermission


def _request_of(context: Any) -> Any:
    """The request of ``info.context``: Cello's ``Context``, a dict holding ``"request"``, or an application's
    context object with a ``request`` attribute."""
    request = getattr(context, "request", None)
    if request is None and isinstance(context, dict):
        request = context.get("request")
    if request is None:
        raise TypeError("a Cello permission needs the request in info.context (context.request)")
    return request
