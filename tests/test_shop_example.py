"""examples/shop: an order placed through the command route goes through the outbox, the broker, the payment saga
and the projection — paid, or cancelled with its stock released when the card is declined; and a second order
with the same id is a 409."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from cello.testing import AsyncTestClient

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "shop" / "app.py"


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'shop.db'}")
    monkeypatch.delenv("BROKER_URL", raising=False)
    spec = importlib.util.spec_from_file_location("shop_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["shop_example"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("shop_example", None)


async def settled(client: Any, order_id: str) -> dict[str, Any]:
    for _ in range(500):
        answer = await client.get(f"/orders/{order_id}")
        if answer.status_code == 200 and answer.json()["status"] != "placed":
            return answer.json()  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError(f"order {order_id} never settled: {answer.text}")


async def test_orders_are_paid_or_cancelled(shop: Any) -> None:
    async with AsyncTestClient(shop.app) as client:
        placed = await client.post("/orders", json={"order_id": "1", "items": [{"sku": "pen", "quantity": 2,
                                                                                "price": 150}]})  # fmt: skip
        assert (placed.status_code, placed.json()) == (201, {"order_id": "1", "total": 300})
        again = await client.post("/orders", json={"order_id": "1", "items": []})
        assert again.status_code == 409
        assert await settled(client, "1") == {"order_id": "1", "status": "paid", "total": 300}
        pricey = {"order_id": "2", "items": [{"sku": "car", "quantity": 1, "price": 2_000_000}]}
        assert (await client.post("/orders", json=pricey)).status_code == 201
        assert (await settled(client, "2"))["status"] == "cancelled"
        saga = await shop.sagas.get("pay-2")
        assert saga.status == "compensated" and "card declined" in saga.error
        assert await shop.db.fetch_all("SELECT order_id FROM reservations") == [{"order_id": "1"}]
        assert await shop.db.fetch_all("SELECT order_id, amount FROM charges") == [{"order_id": "1", "amount": 300}]
        assert [event.type for event in await shop.store.read_stream("order-1")] == ["OrderPlaced", "OrderPaid"]
        assert (await client.get("/orders/nope")).status_code == 404
