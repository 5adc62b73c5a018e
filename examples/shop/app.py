"""A shop on Cello's patterns: an event-sourced order behind a CQRS API, a read model kept by a projection, the
order's events handed to a message broker through an outbox, and a payment saga that reserves stock, charges the
customer and confirms the order — or undoes what it did.

    python examples/shop/app.py                                    # SQLite file and in-memory broker: nothing else
    DATABASE_URL=postgresql://localhost/shop BROKER_URL=amqp://guest:guest@localhost/ python examples/shop/app.py

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
         -d '{"order_id": "1", "items": [{"sku": "pen", "quantity": 2, "price": 150}]}'
    curl localhost:8000/orders/1                                   # placed, then paid (or cancelled over 1000)
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from cello import App, Depends
from cello.enterprise.database import Database
from cello.http.exceptions import NotFound
from cello.messaging import Broker
from cello.patterns import (
    Aggregate,
    CommandBus,
    EventStore,
    Outbox,
    Projection,
    Projector,
    QueryBus,
    Repository,
    Saga,
    SagaContext,
    Sagas,
    transactional,
)

db = Database(os.environ.get("DATABASE_URL", "sqlite:///shop.db"))
broker = Broker(os.environ.get("BROKER_URL", "memory://"))
store = EventStore(db)
app = App()
app.enable_request_id()


# -- the order: its events and its aggregate --------------------------------------------------------------------


class Item(msgspec.Struct):
    sku: str
    quantity: int
    price: int  # cents


@store.event
class OrderPlaced(msgspec.Struct):
    order_id: str
    items: list[Item]
    total: int


@store.event
class OrderPaid(msgspec.Struct):
    order_id: str
    charge: str


@store.event
class OrderCancelled(msgspec.Struct):
    order_id: str
    reason: str


class Order(Aggregate):
    status: str = "new"
    total: int = 0

    def apply(self, event: Any) -> None:
        match event:
            case OrderPlaced(total=total):
                self.status, self.total = "placed", total
            case OrderPaid():
                self.status = "paid"
            case OrderCancelled():
                self.status = "cancelled"


orders = Repository(store, Order, snapshot_every=50)


def order_repository() -> Repository[Order]:
    return orders


# -- commands and queries ---------------------------------------------------------------------------------------

commands, queries = CommandBus(), QueryBus()
commands.use(transactional(db))


class PlaceOrder(msgspec.Struct):
    """Place an order; its payment follows in the background."""

    order_id: str
    items: list[Item]


class GetOrder(msgspec.Struct):
    """An order as the read model has it."""

    order_id: str


@commands.handler
async def place_order(command: PlaceOrder, repository: Repository[Order] = Depends(order_repository)) -> dict:
    order = Order.new(command.order_id)
    total = sum(item.quantity * item.price for item in command.items)
    order.record(OrderPlaced(command.order_id, command.items, total))
    await repository.save(order)  # a second order with this id: ConcurrencyError, a 409
    return {"order_id": command.order_id, "total": total}


@queries.handler
async def get_order(query: GetOrder) -> dict:
    row = await db.fetch_one("SELECT order_id, status, total FROM order_summaries WHERE order_id = $1", query.order_id)
    if row is None:
        raise NotFound("No order has this id.")
    return row


commands.route(app, "/orders", PlaceOrder, status_code=201)
queries.route(app, "/orders/{order_id}", GetOrder)


# -- the read model ---------------------------------------------------------------------------------------------

summaries = Projection("order_summaries")


@summaries.on(OrderPlaced)
async def placed(event: OrderPlaced, recorded: Any, conn: Any) -> None:
    await conn.execute("INSERT INTO order_summaries (order_id, status, total) VALUES ($1, 'placed', $2)",
                       event.order_id, event.total)  # fmt: skip


@summaries.on(OrderPaid, OrderCancelled)
async def settled(event: Any, recorded: Any, conn: Any) -> None:
    status = "paid" if isinstance(event, OrderPaid) else "cancelled"
    await conn.execute("UPDATE order_summaries SET status = $1 WHERE order_id = $2", status, event.order_id)


@summaries.reset
async def clear(conn: Any) -> None:
    await conn.execute("DELETE FROM order_summaries")


# -- the payment saga -------------------------------------------------------------------------------------------

payment = Saga("payment")


@payment.step(timeout=5.0, retries=2)
async def reserve_stock(saga: SagaContext) -> None:
    # a participant honouring the idempotency key: a repeated call reserves nothing more
    await db.execute("INSERT INTO reservations (key, order_id) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                     saga.key, saga.data["order_id"])  # fmt: skip


@reserve_stock.compensate
async def release_stock(saga: SagaContext) -> None:
    async with db.transaction(immediate=True):
        await db.execute("DELETE FROM reservations WHERE order_id = $1", saga.data["order_id"])
        order = await orders.load(saga.data["order_id"])
        if order.status == "placed":
            order.record(OrderCancelled(order.id, "the payment failed"))
            await orders.save(order)


@payment.step(timeout=10.0, retries=2)
async def charge(saga: SagaContext) -> None:
    if saga.data["total"] > 100_000:  # the payment provider declines
        raise RuntimeError("card declined")
    await db.execute("INSERT INTO charges (key, order_id, amount) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                     saga.key, saga.data["order_id"], saga.data["total"])  # fmt: skip
    saga.data["charge"] = saga.key


@payment.step(timeout=5.0, retries=2)
async def confirm(saga: SagaContext) -> None:
    order = await orders.load(saga.data["order_id"])
    if order.status == "placed":
        order.record(OrderPaid(order.id, saga.data["charge"]))
        await orders.save(order, event_ids=[f"{saga.key}:paid"])  # a repeated call is a retried append


sagas = Sagas(db, payment)


# -- the outbox: placed orders go to the broker, whose subscriber starts their payment ---------------------------

outbox = Outbox(store, broker)
outbox.route(OrderPlaced, "orders.placed")


@broker.subscriber("orders.placed", group="payments")
async def pay(order: OrderPlaced) -> None:
    await sagas.start("payment", {"order_id": order.order_id, "total": order.total}, saga_id=f"pay-{order.order_id}")


# -- wiring: in this order at startup — the pool, the tables, then what reads and writes them ---------------------


async def tables() -> None:
    await store.setup()
    for table in ("order_summaries (order_id TEXT PRIMARY KEY, status TEXT NOT NULL, total INTEGER NOT NULL)",
                  "reservations (key TEXT PRIMARY KEY, order_id TEXT NOT NULL)",
                  "charges (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, amount INTEGER NOT NULL)"):  # fmt: skip
        await db.execute(f"CREATE TABLE IF NOT EXISTS {table}")


db.attach(app)
app.on_startup(tables)
sagas.attach(app)
Projector(store, summaries, interval=0.1).attach(app)
outbox.attach(app)
app.include_broker(broker)

if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8000")))
