"""The AsyncAPI 3.0 document of an app's brokers: valid against the AsyncAPI 3.0.0 JSON schema, its channels,
operations, messages and payload schemas taken from the subscribers' signatures (the same schemas as OpenAPI's),
served as JSON with a page that shows it, and printed by ``cello asyncapi``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import msgspec
import orjson
import pytest
from asyncapi_app import app as documented_app

from cello import App, OpenAPIConfig
from cello.messaging import Broker
from cello.testing import TestClient

SCHEMA = json.loads((Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json").read_text())


def validate(document: dict) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{list(error.path)}: {error.message}" for error in errors[:5])


def test_the_document_is_valid_asyncapi_3():
    document = documented_app.asyncapi()
    assert document["asyncapi"] == "3.0.0"
    validate(document)


def test_subscribers_and_publishers_become_channels_operations_and_messages():
    document = documented_app.asyncapi()
    assert {key: channel["address"] for key, channel in document["channels"].items()} == {
        "orders": "orders",
        "invoices": "invoices",
        "orders.dlq": "orders.dlq",
    }
    bill = document["operations"]["bill"]
    assert bill["action"] == "receive"
    assert bill["channel"] == {"$ref": "#/channels/orders"}
    assert bill["summary"] == "Bill an order."
    assert bill["description"] == "Each order becomes one invoice for its tenant."
    assert bill["x-cello-delivery"] == "group billing, concurrency 4, 2 retries, dead letter orders.dlq"
    forwarded = document["operations"]["bill.to.invoices"]
    assert forwarded["action"] == "send"
    assert forwarded["messages"] == [{"$ref": "#/channels/invoices/messages/Invoice"}]

    order = document["components"]["messages"]["Order"]
    assert order["payload"] == {"$ref": "#/components/schemas/Order"}
    assert order["headers"] == {"type": "object", "properties": {"x-tenant": {"type": "string"}},
                                "required": ["x-tenant"]}  # fmt: skip
    schemas = document["components"]["schemas"]
    assert schemas["Order"]["properties"] == {"item": {"type": "string"}, "qty": {"type": "integer", "default": 1}}
    assert schemas["Invoice"]["required"] == ["order", "amount"]


class Item(msgspec.Struct):
    name: str
    price: float = 0.0


def test_payload_schemas_are_the_ones_openapi_uses():
    app = App()
    broker = Broker()
    app.include_broker(broker)

    @broker.subscriber("items")
    async def take(item: Item): ...

    @app.post("/items")
    async def post(item: Item): ...

    assert app.asyncapi()["components"]["schemas"]["Item"] == app.openapi()["components"]["schemas"]["Item"]


def test_served_as_json_and_as_a_page_without_outside_assets():
    with TestClient(documented_app) as client:
        served = client.get("/asyncapi.json")
        assert served.headers["content-type"].startswith("application/json")
        assert served.json() == documented_app.asyncapi()
        page = client.get("/asyncapi")
        assert page.status_code == 200
        assert "<code>orders.dlq</code>" in page.text
        assert "Bill an order." in page.text
        assert "x-tenant" in page.text and "required" in page.text
        assert "<script" not in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
        style = client.get("/asyncapi/viewer.css")
        assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
        assert "/asyncapi.json" not in client.get("/openapi.json").text  # not an API route


def test_where_it_is_served_is_configurable_and_apps_without_brokers_have_none():
    app = App(openapi=OpenAPIConfig(title="Shop", asyncapi_url="/events.json", asyncapi_docs_url=None))
    broker = Broker()
    app.include_broker(broker)

    @broker.subscriber("orders")
    async def take(order: dict): ...

    with TestClient(app) as client:
        assert client.get("/events.json").json()["info"]["title"] == "Shop"
        assert client.get("/asyncapi").status_code == 404
    with TestClient(App()) as client:
        assert client.get("/asyncapi.json").status_code == 404


def test_the_cli_prints_it():
    result = subprocess.run(
        [sys.executable, "-m", "cello.cli", "asyncapi", "asyncapi_app:app", "--indent"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent / "apps")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == documented_app.asyncapi()


@pytest.mark.parametrize("topic", ["a/b", "events.*", "über"])
def test_unusual_topic_names_still_make_a_valid_document(topic):
    app = App()
    broker = Broker()
    app.include_broker(broker)

    @broker.subscriber(topic)
    async def take(body: dict): ...

    document = app.asyncapi()
    validate(document)
    (channel,) = document["channels"].values()
    assert channel["address"] == topic
