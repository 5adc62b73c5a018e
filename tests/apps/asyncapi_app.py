"""An app with a broker whose AsyncAPI document the tests read (tests/test_asyncapi.py, the CLI, the page in a
browser): a typed subscriber with a header, one that forwards its result, and a dead-letter parking lot."""

from __future__ import annotations

import dataclasses

import msgspec

from cello import App, Header
from cello.messaging import Broker, Message

app = App()
app.enable_security_headers()  # the page must work under the default Content-Security-Policy
broker = Broker("memory://")
app.include_broker(broker)


class Order(msgspec.Struct):
    item: str
    qty: int = msgspec.field(default=1)


@dataclasses.dataclass
class Invoice:
    order: str
    amount: float


@broker.subscriber("orders", group="billing", concurrency=4, retries=2, dead_letter="orders.dlq")
@broker.publisher("invoices")
async def bill(order: Order, x_tenant: str = Header()) -> Invoice:
    """Bill an order.

    Each order becomes one invoice for its tenant."""
    return Invoice(order=order.item, amount=9.5 * order.qty)


@broker.subscriber("orders.dlq", group="parking")
async def park(message: Message) -> None:
    """Keep what billing gave up on."""


@app.get("/")
async def home() -> dict[str, str]:
    return {"see": "/asyncapi"}
