"""Dependency injection: ``Depends`` plans compiled at startup, resolved per request (or once per app).

A dependency is any callable; its parameters are classified like a handler's (``cello.handlers.plan``), so it can
take the request, path/query/header/cookie values, the body, or other dependencies. Within one resolution scope
(one request, or one ``app.dependency_scope()`` block) each dependency runs once and its value is shared, unless
declared ``Depends(dep, use_cache=False)``.

Generator dependencies run up to their ``yield``; the code after it runs when the scope closes — for a request,
after the handler returned (or raised: the exception is thrown in at the ``yield``) and before the response is
sent, so a failing teardown still turns into an error response and resources are released before the client
sees the answer. ``scope="app"`` dependencies are created once per app (per worker process) on first use and
torn down at shutdown.

Sync dependencies run on the event loop, where they are resolved: they should not block. A dependency that does
blocking I/O should be ``async``, or hand its blocking part to ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .dto.errors import ValidationFailed
from .handlers.plan import Signature, Slot, read_signature
from .http.exceptions import ConfigurationError
from .params import Depends

if TYPE_CHECKING:
    from .app import App
    from .http.request import Request
    from .routing.router import Route

PLAIN, ASYNC, GENERATOR, ASYNC_GENERATOR = range(4)
_MISS: Any = object()


class DependencyPlan:
    """One dependency compiled for one route: how to call it and how to obtain its arguments."""

    __slots__ = ("call", "kind", "use_cache", "scope", "route", "extractors", "subdependencies", "specials",
                 "signature", "simple")  # fmt: skip

    def __init__(self, call: Callable[..., Any], marker: Depends, route: Route | None, seen: tuple[Any, ...] = ()):
        if call in seen:
            chain = " -> ".join(getattr(c, "__qualname__", repr(c)) for c in (*seen, call))
            raise ConfigurationError(f"dependency cycle: {chain}")
        self.call = call
        self.use_cache = marker.use_cache
        self.scope = marker.scope
        self.route = route
        self.signature: Signature = read_signature(call, route, kind="dependency")
        self.kind = _kind(call)
        self.extractors, self.specials, self.subdependencies = split_slots(self.signature.slots, route, (*seen, call))
        # no arguments, no teardown, per request: called inline by ResolutionScope.arguments (the common case)
        self.simple = (
            self.kind in (PLAIN, ASYNC)
            and self.scope == "request"
            and not (self.extractors or self.specials or self.subdependencies)
        )
        if self.scope == "app":
            request_bound = [s.name for s in self.signature.slots if s.source != "depends"]
            request_bound += [n for n, sub in self.subdependencies if sub.scope != "app"]
            if request_bound:
                raise ConfigurationError(
                    f"app-scoped dependency {_name(call)} cannot take request values or request-scoped "
                    f"dependencies ({', '.join(request_bound)}): it is created once for all requests"
                )

    def __repr__(self) -> str:
        return f"<DependencyPlan {_name(self.call)}>"


def split_slots(
    slots: list[Slot], route: Route | None, seen: tuple[Any, ...] = ()
) -> tuple[list[tuple[str, Any]], list[tuple[str, str]], list[tuple[str, DependencyPlan]]]:
    """Extractors (request → value), specials (request, background, form...) and dependency plans."""
    extractors: list[tuple[str, Any]] = []
    specials: list[tuple[str, str]] = []
    dependencies: list[tuple[str, DependencyPlan]] = []
    for slot in slots:
        if slot.source == "depends":
            marker = slot.marker
            assert isinstance(marker, Depends)
            call = marker.dependency if marker.dependency is not None else slot.annotation
            if not callable(call):
                raise ConfigurationError(f"Depends() for {slot.name!r} needs a callable (or a class annotation)")
            dependencies.append((slot.name, DependencyPlan(call, marker, route, seen)))
        elif slot.extract is not None:
            extractors.append((slot.name, slot.extract))
        elif slot.source in ("form", "file"):
            if seen:  # NOTE: `seen` is non-empty exactly when these are a dependency's slots
                raise ConfigurationError(
                    f"{_name(seen[-1])}: form and file parameters belong on the handler, not on a dependency"
                )
        else:
            specials.append((slot.name, slot.source))
    return extractors, specials, dependencies


def _kind(call: Any) -> int:
    target = call if inspect.isroutine(call) or isinstance(call, type) else type(call).__call__
    if inspect.isasyncgenfunction(call) or inspect.isasyncgenfunction(target):
        return ASYNC_GENERATOR
    if inspect.isgeneratorfunction(call) or inspect.isgeneratorfunction(target):
        return GENERATOR
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(target):
        return ASYNC
    return PLAIN


def _name(call: Any) -> str:
    return str(getattr(call, "__qualname__", None) or repr(call))


class ResolutionScope:
    """The values and teardowns of one resolution: one request, or one ``dependency_scope()`` block."""

    __slots__ = ("app", "request", "cache", "stack")

    def __init__(self, app: App, request: Request | None) -> None:
        self.app = app
        self.request = request
        self.cache: dict[Any, Any] = {}
        self.stack: contextlib.AsyncExitStack | None = None

    async def resolve(self, plan: DependencyPlan) -> Any:
        overrides = self.app.dependency_overrides
        if overrides and plan.call in overrides:
            plan = self.app.dependencies.override_plan(plan)
        if plan.scope == "app":
            return await self.app.dependencies.app_value(plan)
        if plan.use_cache:
            try:
                return self.cache[plan.call]
            except KeyError:
                pass
        kwargs = await self.arguments(plan.extractors, plan.specials, plan.subdependencies)
        value = await self._invoke(plan, kwargs)
        if plan.use_cache:
            self.cache[plan.call] = value
        return value

    async def arguments(
        self,
        extractors: list[tuple[str, Any]],
        specials: list[tuple[str, str]],
        dependencies: list[tuple[str, DependencyPlan]],
    ) -> dict[str, Any]:
        """Every argument, or ValidationFailed with all the errors found (dependencies with errors not called)."""
        kwargs: dict[str, Any] = {}
        errors: list[Any] | None = None
        request = self.request
        if extractors or specials:
            if request is None:
                raise ConfigurationError("this dependency reads the request; resolve it while handling one")
            for name, extract in extractors:
                try:
                    kwargs[name] = extract(request)
                except ValidationFailed as exc:
                    errors = [*errors, *exc.errors] if errors else exc.errors
            for name, source in specials:
                kwargs[name] = special_value(request, source)
        overrides = self.app.dependency_overrides
        for name, plan in dependencies:
            if plan.simple and not overrides:
                call = plan.call
                value = self.cache.get(call, _MISS) if plan.use_cache else _MISS
                if value is _MISS:
                    value = call() if plan.kind == PLAIN else await call()
                    if plan.use_cache:
                        self.cache[call] = value
                kwargs[name] = value
                continue
            try:
                kwargs[name] = await self.resolve(plan)
            except ValidationFailed as exc:
                errors = [*errors, *exc.errors] if errors else exc.errors
        if errors:
            raise ValidationFailed(errors)
        return kwargs

    async def _invoke(self, plan: DependencyPlan, kwargs: dict[str, Any]) -> Any:
        kind = plan.kind
        if kind == PLAIN:
            return plan.call(**kwargs)
        if kind == ASYNC:
            return await plan.call(**kwargs)
        if self.stack is None:
            self.stack = contextlib.AsyncExitStack()
        if kind == GENERATOR:
            return self.stack.enter_context(contextlib.contextmanager(plan.call)(**kwargs))
        return await self.stack.enter_async_context(contextlib.asynccontextmanager(plan.call)(**kwargs))

    async def close(self, exc: BaseException | None = None) -> None:
        """Run generator teardowns, newest first; ``exc`` is thrown in at their ``yield``."""
        stack, self.stack = self.stack, None
        if stack is None:
            return
        if exc is None:
            await stack.aclose()
        else:
            await stack.__aexit__(type(exc), exc, exc.__traceback__)


def special_value(request: Request, source: str) -> Any:
    if source == "request":
        return request
    if source == "background":
        return request.background
    raise ConfigurationError(f"no value for a {source!r} parameter here")


class Dependencies:
    """An app's dependency state: overrides' plans and app-scoped values (created once, torn down at shutdown)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._override_plans: dict[tuple[Any, Any, Any], DependencyPlan] = {}
        self._values: dict[Any, Any] = {}
        self._locks: dict[Any, asyncio.Lock] = {}
        self._stack: contextlib.AsyncExitStack | None = None

    def override_plan(self, plan: DependencyPlan) -> DependencyPlan:
        replacement = self.app.dependency_overrides[plan.call]
        key = (plan.call, replacement, plan.route)
        cached = self._override_plans.get(key)
        if cached is None:
            marker = Depends(replacement, use_cache=plan.use_cache, scope=plan.scope)
            cached = self._override_plans[key] = DependencyPlan(replacement, marker, plan.route)
        return cached

    async def app_value(self, plan: DependencyPlan) -> Any:
        try:
            return self._values[plan.call]
        except KeyError:
            pass
        lock = self._locks.setdefault(plan.call, asyncio.Lock())
        async with lock:
            if plan.call in self._values:
                return self._values[plan.call]
            if self._stack is None:
                self._stack = contextlib.AsyncExitStack()
            scope = ResolutionScope(self.app, None)
            scope.stack = self._stack
            kwargs = await scope.arguments([], [], plan.subdependencies)
            value = await scope._invoke(plan, kwargs)
            self._values[plan.call] = value
            return value

    async def close(self) -> None:
        """Tear down app-scoped generator dependencies (at app shutdown)."""
        stack, self._stack = self._stack, None
        self._values.clear()
        self._locks.clear()
        if stack is not None:
            await stack.aclose()

    @contextlib.asynccontextmanager
    async def scope(self, request: Request | None = None) -> AsyncIterator[Resolver]:
        resolution = ResolutionScope(self.app, request)
        try:
            yield Resolver(resolution)
        except BaseException as exc:
            await resolution.close(exc)
            raise
        await resolution.close()


class Resolver:
    """What ``app.dependency_scope()`` yields: ``await resolver.resolve(dep)`` → the dependency's value."""

    def __init__(self, scope: ResolutionScope) -> None:
        self._scope = scope
        self._plans: dict[Any, DependencyPlan] = {}

    async def resolve(self, dependency: Callable[..., Any] | Depends) -> Any:
        marker = dependency if isinstance(dependency, Depends) else Depends(dependency)
        call = marker.dependency
        if call is None:
            raise ConfigurationError("resolve(Depends()) needs the dependency callable")
        plan = self._plans.get((call, marker.scope))
        if plan is None:
            plan = self._plans[(call, marker.scope)] = DependencyPlan(call, marker, None)
        return await self._scope.resolve(plan)
