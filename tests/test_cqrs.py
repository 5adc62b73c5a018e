"""Command and query buses (cello.patterns.cqrs): dispatch by message class, dependencies resolved per dispatch
(the request's own when a route dispatches), middleware in order, a command route with a validated body and a
guard, a query route from the query string, and a transaction that rolls an event-sourced command back whole."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cello import App, ConfigurationError, Depends
from cello.enterprise.database import Database
from cello.patterns import Aggregate, CommandBus, EventStore, QueryBus, Repository, transactional
from cello.security import ApiKeyAuth, Permission
from cello.testing import AsyncTestClient


class PlaceOrder(msgspec.Struct):
    order_id: str
    total: int


class OrderPlaced(msgspec.Struct):
    order_id: str
    total: int


@dataclasses.dataclass
class OrderTotal:
    order_id: str
    currency: str = "EUR"


class Order(Aggregate):
    total: int = 0

    def apply(self, event: Any) -> None:
        self.total = event.total


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    async with Database(f"sqlite:///{tmp_path / 'shop.db'}") as db:
        events = EventStore(db, events=[OrderPlaced])
        await events.setup()
        yield events


def shop(store: EventStore) -> tuple[CommandBus, QueryBus, list[str]]:
    commands, queries, seen = CommandBus(), QueryBus(), []

    def orders() -> Repository[Order]:
        return Repository(store, Order)

    @commands.handler
    async def place(command: PlaceOrder, repository: Repository[Order] = Depends(orders)) -> dict[str, Any]:
        if command.total <= 0:
            raise ValueError("a total above 0, please")
        order = Order.new(command.order_id)
        order.record(OrderPlaced(command.order_id, command.total))
        await repository.save(order)
        if command.order_id == "after-save":
            raise RuntimeError("something after the save failed")
        return {"id": command.order_id, "version": order.version}

    @queries.handler
    async def total(query: OrderTotal, repository: Repository[Order] = Depends(orders)) -> dict[str, Any]:
        order = await repository.load(query.order_id)
        return {"total": order.total, "currency": query.currency}

    async def logged(message: Any, call_next: Any) -> Any:
        seen.append(f"before {type(message).__name__}")
        try:
            return await call_next(message)
        finally:
            seen.append(f"after {type(message).__name__}")

    commands.use(logged)
    commands.use(transactional(store.db))
    return commands, queries, seen


async def test_messages_go_to_their_handlers_through_the_middleware(store: EventStore) -> None:
    commands, queries, seen = shop(store)
    app = App()
    commands.attach(app)
    queries.attach(app)
    assert await commands.send(PlaceOrder("1", 30)) == {"id": "1", "version": 1}
    assert await queries.ask(OrderTotal("1")) == {"total": 30, "currency": "EUR"}
    assert seen == ["before PlaceOrder", "after PlaceOrder"]
    # the transaction middleware: a failure after the save rolls the events back
    with pytest.raises(RuntimeError):
        await commands.send(PlaceOrder("after-save", 5))
    assert await store.version("order-after-save") == 0
    with pytest.raises(ConfigurationError, match="no handler"):
        await commands.send(OrderTotal("1"))


def test_a_handler_is_declared_with_its_message_and_dependencies() -> None:
    bus = CommandBus()
    with pytest.raises(ConfigurationError, match="first parameter"):
        bus.handler(lambda message: None)

    async def plain(command: PlaceOrder, other: int) -> None: ...

    with pytest.raises(ConfigurationError, match="neither"):
        bus.handler(plain)

    async def one(command: PlaceOrder) -> None: ...

    async def two(command: PlaceOrder) -> None: ...

    bus.handler(one)
    with pytest.raises(ConfigurationError, match="already has a handler"):
        bus.handler(two)


async def test_routes_in_one_line_each(store: EventStore) -> None:
    commands, queries, _ = shop(store)
    app = App()
    app.use(ApiKeyAuth(keys={"clerk-key-0123456789": ["orders:write"], "guest-key-0123456789": []}))
    commands.route(app, "/orders", PlaceOrder, status_code=201, guards=[Permission("orders:write")])
    queries.route(app, "/orders/{order_id}/total", OrderTotal)
    clerk = {"x-api-key": "clerk-key-0123456789"}
    async with AsyncTestClient(app) as client:
        placed = await client.post("/orders", json={"order_id": "7", "total": 70}, headers=clerk)
        assert (placed.status_code, placed.json()) == (201, {"id": "7", "version": 1})
        refused = await client.post("/orders", json={"order_id": "8", "total": 5},
                                    headers={"x-api-key": "guest-key-0123456789"})  # fmt: skip
        assert refused.status_code == 403
        invalid = await client.post("/orders", json={"order_id": "9", "total": "lots"}, headers=clerk)
        assert invalid.status_code == 422 and invalid.headers["content-type"] == "application/problem+json"
        answer = await client.get("/orders/7/total?currency=USD", headers=clerk)
        assert answer.json() == {"total": 70, "currency": "USD"}
        missing = await client.get("/orders/nope/total", headers=clerk)
        assert missing.status_code == 404
        document = (await client.get("/openapi.json")).json()
    assert "/orders" in document["paths"] and "currency" in str(document["paths"]["/orders/{order_id}/total"])
