"""CQRS: a command bus and a query bus — typed messages, one handler each, middleware around every dispatch,
``Depends`` in handlers, and a route per message in one line.

    commands = CommandBus()

    class PlaceOrder(msgspec.Struct):
        order_id: str
        total: int

    @commands.handler
    async def place(command: PlaceOrder, orders: Repository = Depends(order_repository)) -> dict:
        order = Order.new(command.order_id)
        order.record(OrderPlaced(command.order_id, command.total))
        await orders.save(order)
        return {"id": command.order_id}

    commands.attach(app)                                  # Depends resolved with the app's dependencies
    commands.route(app, "/orders", PlaceOrder, status_code=201, guards=[Role("clerk")])   # POST /orders
    await commands.send(PlaceOrder("42", 250))            # or dispatched from code

A handler is found by its first parameter's type, the message class; its other parameters are dependencies
(``Depends(...)``), resolved per dispatch — within the request's own scope when the dispatch comes from a route,
so a ``db.request_transaction`` dependency is the request's transaction. Middleware (``bus.use(fn)``,
``fn(message, call_next)``) wraps every dispatch, outermost first: validation, authorization, logging, metrics,
a transaction (``transactional(db)``). ``route`` adds a route whose JSON body is the message — validated, a 422
on a bad body — and whose answer is the handler's result; ``QueryBus.route`` takes the message's fields from the
query string of a GET instead.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ..http.exceptions import ConfigurationError
from ..http.request import Request
from ..params import Depends

if TYPE_CHECKING:
    from ..app import App
    from ..enterprise.database import Database

__all__ = ["CommandBus", "QueryBus", "transactional"]

Middleware = Callable[[Any, Callable[[Any], Awaitable[Any]]], Awaitable[Any]]


class _Handler:
    __slots__ = ("call", "dependencies", "is_async")

    def __init__(self, call: Callable[..., Any], dependencies: dict[str, Depends]) -> None:
        self.call = call
        self.dependencies = dependencies
        self.is_async = inspect.iscoroutinefunction(call)


class _Bus:
    """A message class -> handler table, with middleware and dependency resolution."""

    kind = "message"

    def __init__(self) -> None:
        self.handlers: dict[type, _Handler] = {}
        self.middleware: list[Middleware] = []
        self.app: App | None = None

    def handler(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``call`` as the handler of the message class its first parameter is annotated with."""
        parameters = list(inspect.signature(call).parameters.values())
        hints = typing.get_type_hints(call)
        if not parameters or parameters[0].name not in hints:
            raise ConfigurationError(f"{call.__qualname__}: its first parameter's annotation is the {self.kind} class")
        message_type = hints[parameters[0].name]
        if not isinstance(message_type, type):
            raise ConfigurationError(
                f"{call.__qualname__}: a {self.kind} is an instance of one class, not {message_type}"
            )
        if message_type in self.handlers:
            raise ConfigurationError(f"{message_type.__qualname__} already has a handler: one {self.kind}, one handler")
        dependencies = {}
        for parameter in parameters[1:]:
            if not isinstance(parameter.default, Depends):
                raise ConfigurationError(f"{call.__qualname__}: parameter {parameter.name!r} is neither the "
                                         f"{self.kind} nor a Depends(...)")  # fmt: skip
            dependencies[parameter.name] = parameter.default
        self.handlers[message_type] = _Handler(call, dependencies)
        return call

    def use(self, middleware: Middleware) -> Middleware:
        """Add ``middleware(message, call_next)`` around every dispatch (outermost first)."""
        self.middleware.append(middleware)
        return middleware

    def attach(self, app: App) -> _Bus:
        """Resolve the handlers' dependencies with ``app``'s (overrides, app-scoped values)."""
        self.app = app
        return self

    async def _dispatch(self, message: Any, request: Request | None = None) -> Any:
        found = self.handlers.get(type(message))
        if found is None:
            raise ConfigurationError(f"no handler for {type(message).__qualname__}")

        async def run(message: Any) -> Any:
            if not found.dependencies:
                return await _called(found, message, {})
            if self.app is None:
                raise ConfigurationError("a handler with dependencies needs the bus attached: bus.attach(app)")
            async with self.app.dependency_scope(request) as resolver:
                values = {name: await resolver.resolve(marker) for name, marker in found.dependencies.items()}
                return await _called(found, message, values)

        call: Callable[[Any], Awaitable[Any]] = run
        for middleware in reversed(self.middleware):
            call = _wrapped(middleware, call)
        return await call(message)

    def _route(self, app: App, method: str, path: str, message_type: type, options: dict[str, Any]) -> None:
        if message_type not in self.handlers:
            raise ConfigurationError(f"{message_type.__qualname__} has no handler on this bus")
        bus = self

        if method == "GET":  # the message's fields from the query string (and the path), one parameter each
            fields = _fields(message_type)

            async def endpoint(request: Request, **values: Any) -> Any:
                return await bus._dispatch(message_type(**values), request)

            parameters = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
            parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
                           for name, kind, default in fields]  # fmt: skip
            endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
            endpoint.__annotations__ = {"request": Request, **{name: kind for name, kind, _ in fields}, "return": Any}
        else:  # the message is the JSON body

            async def endpoint(message: Any, request: Request) -> Any:  # type: ignore[misc]
                return await bus._dispatch(message, request)

            endpoint.__annotations__ = {"message": message_type, "request": Request, "return": Any}
        endpoint.__name__ = endpoint.__qualname__ = f"{self.kind}_{_snake(message_type.__name__)}"
        endpoint.__doc__ = (message_type.__doc__ or "").strip() or f"The {self.kind} {message_type.__name__}."
        if self.app is None:
            self.attach(app)
        app.route(path, methods=[method], **options)(endpoint)


def _fields(message_type: type) -> list[tuple[str, Any, Any]]:
    """``(name, type, default)`` of a Struct's or dataclass's fields (``inspect.Parameter.empty``: required)."""
    hints = typing.get_type_hints(message_type)
    if dataclasses.is_dataclass(message_type):
        return [(field.name, hints[field.name], field.default if field.default is not dataclasses.MISSING
                 else inspect.Parameter.empty) for field in dataclasses.fields(message_type)]  # fmt: skip
    if isinstance(message_type, type) and issubclass(message_type, msgspec.Struct):
        return [(field.name, hints[field.name], field.default if field.default is not msgspec.NODEFAULT
                 else inspect.Parameter.empty) for field in msgspec.structs.fields(message_type)]  # fmt: skip
    raise ConfigurationError(f"a query sent over GET is a msgspec.Struct or a dataclass, not {message_type!r}")


def _wrapped(middleware: Middleware, call: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    async def step(message: Any) -> Any:
        return await middleware(message, call)

    return step


async def _called(handler: _Handler, message: Any, values: dict[str, Any]) -> Any:
    if handler.is_async:
        return await handler.call(message, **values)
    result = handler.call(message, **values)
    return await result if inspect.isawaitable(result) else result


def _snake(name: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() and index else char.lower() for index, char in
                   enumerate(name))  # fmt: skip


class CommandBus(_Bus):
    """Commands: a change asked for, one handler each; ``send`` dispatches one (see the module)."""

    kind = "command"

    async def send(self, command: Any, *, request: Request | None = None) -> Any:
        """Dispatch ``command`` to its handler through the middleware; returns what the handler returned."""
        return await self._dispatch(command, request)

    def route(self, app: App, path: str, command: type, **options: Any) -> None:
        """``POST path``: the JSON body is the command (a 422 when it does not validate), the answer its
        handler's result; ``options`` are the route's (``status_code``, ``guards``, ``tags``, ``name``…)."""
        self._route(app, options.pop("method", "POST"), path, command, options)


class QueryBus(_Bus):
    """Queries: a question about the read models, one handler each; ``ask`` dispatches one (see the module)."""

    kind = "query"

    async def ask(self, query: Any, *, request: Request | None = None) -> Any:
        """Dispatch ``query`` to its handler through the middleware; returns the answer."""
        return await self._dispatch(query, request)

    def route(self, app: App, path: str, query: type, **options: Any) -> None:
        """``GET path``: the query's fields from the query string (a 422 when they do not validate), the answer
        its handler's result; ``options`` are the route's."""
        self._route(app, "GET", path, query, options)


def transactional(db: Database) -> Middleware:
    """Middleware running each dispatch in a transaction of ``db`` (joined by the event store's appends):
    committed when the handler returns, rolled back when it raises."""

    async def in_transaction(message: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        async with db.transaction(immediate=True):
            return await call_next(message)

    return in_transaction
