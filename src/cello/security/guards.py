"""Access rules (RBAC guards): who may call a route, checked after authentication.

``Role("admin")``, ``Permission("posts:write")``, ``Authenticated()`` and any function of the request
(``def is_owner(request) -> bool``, sync or async) combine with ``&``, ``|`` and ``~`` (or ``And``, ``Or``,
``Not``) and attach where middleware does::

    @app.delete("/posts/{id}", guards=[Role("admin") | (Role("editor") & Permission("posts:delete"))])
    admin.use(Role("admin"))          # a whole blueprint; app.use(...) for everything

The caller is ``request.user``: the ``Principal`` an authenticator (JWT, Basic, API key) or a ``UserLoader``
put there, or else the ``"user"`` entry of the session (a mapping with ``id``, ``roles``, ``permissions``).
A refused anonymous caller gets 401, a refused known one 403 — never a 500: a guard that raises refuses.
Guards are attached to routes, not path patterns, so no spelling of a path (``//admin``, ``/admin/``,
``/%61dmin``) reaches a guarded handler without its guards.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable
from typing import Any

from ..http.response import Response
from .base import Principal, challenge, forbidden, is_public, logger, principal_from

GuardFunction = Callable[[Any], Any]


def current_user(request: Any) -> Principal | None:
    """``request.user``, falling back to the session's ``"user"`` entry (cached for the rest of the request)."""
    context = request.context
    user: Principal | None = context.get("user")
    if user is not None:
        return user
    session = context.get("session")
    if session is not None:
        user = principal_from(session.get("user"), "session")
        if user is not None:
            context["user"] = user
    return user


class Guard(abc.ABC):
    """Base of every access rule. ``check(request, user)`` returns a bool — or, for a guard with
    ``is_async``, an awaitable of one. A guard is also a middleware (enter/leave when synchronous)."""

    is_async = False
    openapi_responses = (401, 403)

    @abc.abstractmethod
    def check(self, request: Any, user: Principal | None) -> Any:
        """Whether ``user`` may go on with ``request`` (an awaitable of the answer for an ``is_async`` guard)."""

    async def check_async(self, request: Any, user: Principal | None) -> bool:
        result = self.check(request, user)
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    # -- composition ----------------------------------------------------------------------------------------

    def __and__(self, other: Guard | GuardFunction) -> Guard:
        return And(self, other)

    def __rand__(self, other: Guard | GuardFunction) -> Guard:
        return And(other, self)

    def __or__(self, other: Guard | GuardFunction) -> Guard:
        return Or(self, other)

    def __ror__(self, other: Guard | GuardFunction) -> Guard:
        return Or(other, self)

    def __invert__(self) -> Guard:
        return Not(self)

    # -- as middleware --------------------------------------------------------------------------------------

    @property
    def uses_hooks(self) -> bool:
        return not self.is_async

    def enter(self, request: Any) -> Any:
        if is_public(request):
            return None
        user = current_user(request)
        try:
            allowed = self.check(request, user)
        except Exception:
            logger.exception("guard %r failed; refusing", self)
            allowed = False
        return None if allowed else _refusal(request, user)

    def leave(self, request: Any, response: Response, state: Any) -> Response:
        return response

    async def __call__(self, request: Any, call_next: Callable[[Any], Any]) -> Response:
        if is_public(request):
            return await call_next(request)  # type: ignore[no-any-return]
        user = current_user(request)
        try:
            allowed = await self.check_async(request, user)
        except Exception:
            logger.exception("guard %r failed; refusing", self)
            allowed = False
        if not allowed:
            return _refusal(request, user)
        return await call_next(request)  # type: ignore[no-any-return]


def _refusal(request: Any, user: Principal | None) -> Response:
    if user is None:
        # the challenge of an authenticator that let the anonymous request through, if any (a session login has none)
        return challenge(request, request.context.get("auth_challenge"), "Authentication is required.")
    return forbidden(request)


def as_guard(guard: Guard | GuardFunction) -> Guard:
    """A Guard as is; a function of the request wrapped as one."""
    if isinstance(guard, Guard):
        return guard
    if callable(guard):
        return FunctionGuard(guard)
    raise TypeError(f"a guard is a Guard or a function of the request, not {guard!r}")


class Authenticated(Guard):
    """Any authenticated caller."""

    def check(self, request: Any, user: Principal | None) -> bool:
        return user is not None

    def __repr__(self) -> str:
        return "Authenticated()"


class Role(Guard):
    """A caller holding at least one of these roles: ``Role("admin")``, ``Role("admin", "editor")``."""

    def __init__(self, *roles: str) -> None:
        if not roles:
            raise ValueError("Role() needs at least one role name")
        self.roles = frozenset(roles)

    def check(self, request: Any, user: Principal | None) -> bool:
        return user is not None and not self.roles.isdisjoint(user.roles)

    def __repr__(self) -> str:
        return f"Role({', '.join(map(repr, sorted(self.roles)))})"


class Permission(Guard):
    """A caller holding every one of these permissions: ``Permission("posts:write")``."""

    def __init__(self, *permissions: str) -> None:
        if not permissions:
            raise ValueError("Permission() needs at least one permission name")
        self.permissions = frozenset(permissions)

    def check(self, request: Any, user: Principal | None) -> bool:
        return user is not None and self.permissions <= user.permissions

    def __repr__(self) -> str:
        return f"Permission({', '.join(map(repr, sorted(self.permissions)))})"


class FunctionGuard(Guard):
    """A rule written as a function of the request (sync or async) returning whether it may go on."""

    def __init__(self, function: GuardFunction) -> None:
        self.function = function
        self.is_async = inspect.iscoroutinefunction(function)

    def check(self, request: Any, user: Principal | None) -> Any:
        result = self.function(request)
        if not self.is_async and inspect.isawaitable(result):
            # NOTE: an awaitable is truthy; taken for an answer it would let everyone through
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(f"guard {self!r} returned an awaitable: declare it with async def")
        return result

    def __repr__(self) -> str:
        return getattr(self.function, "__name__", repr(self.function))  # type: ignore[no-any-return]


class _Combination(Guard):
    """Several guards judged together; asynchronous as soon as one of them is."""

    symbol = ""

    def __init__(self, *guards: Guard | GuardFunction) -> None:
        self.guards = [as_guard(g) for g in guards]
        self.is_async = any(g.is_async for g in self.guards)

    def __repr__(self) -> str:
        return "(" + f" {self.symbol} ".join(map(repr, self.guards)) + ")"


class And(_Combination):
    """Every one of the guards."""

    symbol = "&"

    def check(self, request: Any, user: Principal | None) -> Any:
        if self.is_async:
            return self.check_async(request, user)
        return all(g.check(request, user) for g in self.guards)

    async def check_async(self, request: Any, user: Principal | None) -> bool:
        for guard in self.guards:
            if not await guard.check_async(request, user):
                return False
        return True


class Or(_Combination):
    """At least one of the guards."""

    symbol = "|"

    def check(self, request: Any, user: Principal | None) -> Any:
        if self.is_async:
            return self.check_async(request, user)
        return any(g.check(request, user) for g in self.guards)

    async def check_async(self, request: Any, user: Principal | None) -> bool:
        for guard in self.guards:
            if await guard.check_async(request, user):
                return True
        return False


class Not(Guard):
    """The opposite of a guard. ``~Role("banned")`` lets anonymous callers through too: combine it with
    ``Authenticated()`` when only known callers may pass."""

    def __init__(self, guard: Guard | GuardFunction) -> None:
        self.guard = as_guard(guard)
        self.is_async = self.guard.is_async

    def check(self, request: Any, user: Principal | None) -> Any:
        if self.is_async:
            return self.check_async(request, user)
        return not self.guard.check(request, user)

    async def check_async(self, request: Any, user: Principal | None) -> bool:
        return not await self.guard.check_async(request, user)

    def __repr__(self) -> str:
        return f"~{self.guard!r}"
