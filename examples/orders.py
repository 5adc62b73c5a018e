"""Orders through a message broker, with invoices pushed to the customer's browser over a WebSocket.

``POST /orders`` takes an order and publishes it; the ``billing`` subscriber turns it into an invoice, which
``@broker.publisher`` sends on to ``invoices``; the ``notify`` subscriber fans each invoice out to the WebSocket
room of its customer through the broadcast hub. An order that fails to bill three times lands in ``orders.dlq``.
The AsyncAPI document of all this is at ``/asyncapi`` (and ``/asyncapi.json``).

Run it with ``python examples/orders.py`` (the in-process memory broker: no service needed), then::

    websocat ws://127.0.0.1:8000/ws/c-7                       # or any WebSocket client
    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
         -d '{"customer": "c-7", "item": "pen", "qty": 2}'

With a real broker and several workers — ``BROKER_URL=amqp://guest:guest@127.0.0.1:5672/
REDIS_URL=redis://127.0.0.1:6379 WORKERS=2 python examples/orders.py`` — an order taken by one worker is billed
by whichever worker the broker hands it to, and its invoice reaches the customer's socket on any worker.
"""

from __future__ import annotations

import os

import msgspec

from cello import App, WebSocket
from cello.messaging import Broker, Message
from cello.realtime import Broadcast

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    from cello.stores.redis import RedisStore

    hub = Broadcast(RedisStore(REDIS_URL, prefix="orders-example:"))
else:
    hub = Broadcast()  # memory: one process

app = App(on_shutdown=[hub.close])
broker = Broker(os.environ.get("BROKER_URL", "memory://"))
app.include_broker(broker)
parked: list[dict[str, str]] = []  # what billing gave up on (a real service would store it)


class Order(msgspec.Struct):
    customer: str
    item: str
    qty: int = 1


class Invoice(msgspec.Struct):
    customer: str
    item: str
    total: float


PRICES = {"pen": 1.5, "ink": 4.0, "pad": 3.25}


@app.post("/orders", status_code=202)
async def take_order(order: Order) -> dict[str, str]:
    """Queue an order for billing; the invoice arrives on the customer's WebSocket."""
    message_id = await broker.publish("orders", order, key=order.customer)
    return {"queued": message_id}


@broker.subscriber("orders", group="billing", concurrency=8, retries=3, dead_letter="orders.dlq")
@broker.publisher("invoices")
async def bill(order: Order) -> Invoice:
    """Price an order: one invoice per order, in order per customer."""
    if order.item not in PRICES:
        raise LookupError(f"no price for {order.item!r}")
    return Invoice(order.customer, order.item, PRICES[order.item] * order.qty)


@broker.subscriber("invoices", group="notify")
async def notify(invoice: Invoice) -> None:
    """Push an invoice to its customer's open WebSockets, on every worker."""
    await hub.publish(f"customer:{invoice.customer}", msgspec.to_builtins(invoice))


@broker.subscriber("orders.dlq", group="parking")
async def park(message: Message) -> None:
    """Keep what billing gave up on, with the reason."""
    parked.append({"order": message.body.decode(), "error": message.header("x-cello-error") or ""})


@app.get("/parked")
async def show_parked() -> list[dict[str, str]]:
    return parked


@app.websocket("/ws/{customer}")
async def invoices(ws: WebSocket, customer: str) -> None:
    await ws.accept()
    room = f"customer:{customer}"
    await hub.join(room, ws)
    await ws.send_json({"watching": customer})  # joined: every invoice of the customer comes from here on
    try:
        async for _ in ws:  # nothing to read: the socket stays open for the invoices
            pass
    finally:
        await hub.leave(room, ws)


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")),
            workers=int(os.environ.get("WORKERS", "1")))  # fmt: skip
