"""Messaging on the memory broker (no service): subscribers take the same parameters as routes, consumer groups,
at-least-once delivery with retries and dead letters, validation failures dead-lettered at once, manual
settling, per-key order under concurrency, forwarding, draining at shutdown, metrics, and the test client."""

from __future__ import annotations

import asyncio
import threading

import msgspec
import orjson
import pydantic
import pytest

from cello import App, ConfigurationError, Depends, Header
from cello.messaging import Broker, Message, RequestFailed
from cello.testing import AsyncTestClient, TestClient


class Order(msgspec.Struct):
    item: str
    qty: int


class Refund(pydantic.BaseModel):
    order: str
    amount: float


def quick(attempt: int) -> float:
    return 0.001


def make() -> tuple[App, Broker]:
    app = App()
    broker = Broker("memory://")
    app.include_broker(broker)
    return app, broker


def test_a_subscriber_takes_the_parameters_a_route_takes():
    app, broker = make()
    seen = []

    def tenant(x_tenant: str = Header("none")) -> str:
        return x_tenant

    @broker.subscriber("orders")
    async def bill(order: Order, message: Message, who: str = Depends(tenant), trace: str = Header("-")):
        seen.append((order, who, trace, message.topic, message.key, message.correlation_id, message.attempt))

    @broker.subscriber("refunds")
    def refund(refund: Refund):  # a sync handler, a pydantic model
        seen.append(refund)

    with TestClient(app) as client:
        client.publish("orders", Order("pen", 2), key="c-1", headers={"x-tenant": "acme"}, correlation_id="k-9")
        client.publish("refunds", {"order": "o-1", "amount": 2.5})
    assert seen == [
        (Order("pen", 2), "acme", "-", "orders", "c-1", "k-9", 1),
        Refund(order="o-1", amount=2.5),
    ]


def test_every_group_gets_each_message_and_a_group_shares_them():
    app, broker = make()
    got: dict[str, list[int]] = {"audit": [], "a": [], "b": []}

    @broker.subscriber("events", group="audit")
    def audit(n: dict):
        got["audit"].append(n["n"])

    @broker.subscriber("events", group="work", concurrency=4)
    async def worker_a(n: dict):
        got["a"].append(n["n"])
        await asyncio.sleep(0.001)

    @broker.subscriber("events", group="work", concurrency=4)
    async def worker_b(n: dict):
        got["b"].append(n["n"])
        await asyncio.sleep(0.001)

    with TestClient(app) as client:
        for n in range(40):
            client.publish("events", {"n": n})
    assert sorted(got["audit"]) == list(range(40))
    assert sorted(got["a"] + got["b"]) == list(range(40))  # each message once in the group
    assert got["a"] and got["b"]  # shared between its members


def test_a_failing_message_is_retried_then_dead_lettered_with_its_error():
    app, broker = make()
    attempts = []
    dead = []

    @broker.subscriber("jobs", retries=2, backoff=quick, dead_letter="jobs.dlq")
    def job(message: Message, job: dict):
        attempts.append(message.attempt)
        if job["fail"]:
            raise RuntimeError("the job failed")

    @broker.subscriber("jobs.dlq")
    def dead_letter(message: Message):
        dead.append((message.json(), message.header("x-cello-error"), message.header("x-cello-attempts"),
                     message.header("x-cello-original-topic")))  # fmt: skip

    with TestClient(app) as client:
        client.publish("jobs", {"fail": False})
        client.publish("jobs", {"fail": True})
    assert attempts == [1, 1, 2, 3]
    assert dead == [({"fail": True}, "RuntimeError: the job failed", "3", "jobs")]


def test_a_message_that_does_not_validate_goes_to_the_dead_letter_at_once():
    app, broker = make()
    calls = []
    dead = []

    @broker.subscriber("orders", retries=5, dead_letter="orders.dlq")
    def bill(order: Order):
        calls.append(order)

    @broker.subscriber("orders.dlq")
    def dead_letter(message: Message):
        dead.append((message.body, message.header("x-cello-error")))

    with TestClient(app) as client:
        client.publish("orders", {"item": 5})
        client.publish("orders", b"not json at all")
    assert calls == []
    assert dead[0][0] == b'{"item":5}' and '"loc":["body","item"]' in dead[0][1]
    assert dead[1][0] == b"not json at all" and "json_invalid" in dead[1][1]


def test_without_a_dead_letter_a_message_given_up_on_is_dropped_not_looped():
    app, broker = make()
    attempts = []

    @broker.subscriber("jobs", retries=1, backoff=quick)
    def job(message: Message):
        attempts.append(message.attempt)
        raise RuntimeError("always")

    with TestClient(app) as client:
        client.publish("jobs", {})
    assert attempts == [1, 2]  # tried, retried, then dropped (and logged): no crash loop


def test_manual_settling_and_redelivery():
    app, broker = make()
    seen = []

    @broker.subscriber("tasks", ack="manual")
    async def task(message: Message):
        seen.append(message.attempt)
        if message.attempt < 3:
            await message.nack()  # delivered again by the broker
        else:
            await message.ack()

    with TestClient(app) as client:
        client.publish("tasks", {})
    assert seen == [1, 2, 3]


def test_messages_with_one_key_stay_in_order_under_concurrency():
    app, broker = make()
    order: dict[str, list[int]] = {}

    @broker.subscriber("ticks", concurrency=8)
    async def tick(message: Message, body: dict):
        await asyncio.sleep(0.002 * (body["n"] % 3))  # later ones may finish first unless kept in line
        order.setdefault(message.key, []).append(body["n"])

    async def run() -> None:
        async with AsyncTestClient(app):
            for n in range(30):
                await broker.publish("ticks", {"n": n}, key=f"k{n % 3}")
            await broker.settled()

    asyncio.run(run())
    for key, numbers in order.items():
        assert numbers == sorted(numbers), key
    assert sum(len(numbers) for numbers in order.values()) == 30


def test_a_publisher_forwards_what_the_handler_returns():
    app, broker = make()
    forwarded = []

    @broker.subscriber("orders")
    @broker.publisher("invoices")
    def invoice(order: Order):
        return {"invoice": order.item}

    @broker.publisher("audit")  # above the subscriber works too
    @broker.subscriber("invoices")
    def keep(message: Message):
        forwarded.append((message.json(), message.correlation_id))
        return {"kept": True}

    @broker.subscriber("audit")
    def audit(message: Message):
        forwarded.append(message.json())

    with TestClient(app) as client:
        client.publish("orders", Order("pen", 1), correlation_id="c-1")
    assert forwarded == [({"invoice": "pen"}, "c-1"), {"kept": True}]


def test_shutdown_lets_the_handlers_under_way_finish():
    app, broker = make()
    started = threading.Event()
    finished = []

    @broker.subscriber("slow")
    async def slow(message: Message):
        started.set()
        await asyncio.sleep(0.2)
        finished.append(message.id)

    async def run() -> str:
        async with AsyncTestClient(app):
            message_id = await broker.publish("slow", {})
            while not started.is_set():
                await asyncio.sleep(0.01)
        return message_id  # the app stopped here, with the handler under way

    assert finished == [asyncio.run(run())]


def test_handlers_under_way_finish_before_the_shutdown_hooks_close_what_they_use(tmp_path):
    from cello.enterprise import Database

    app, broker = App(), Broker("memory://")
    db = Database(f"sqlite:///{tmp_path / 'drain.db'}")
    db.attach(app)  # a resource, attached before the broker as apps do: closed by a shutdown hook
    events: list[str] = []
    app.on_shutdown(lambda: events.append("database closed"))
    app.include_broker(broker)
    started = asyncio.Event()

    @broker.subscriber("jobs")
    async def job(body: dict):
        started.set()
        await asyncio.sleep(0.1)
        await db.execute("CREATE TABLE IF NOT EXISTS done (n INTEGER)")
        await db.execute("INSERT INTO done VALUES ($1)", body["n"])
        events.append("handled")

    async def run() -> None:
        async with AsyncTestClient(app):
            await broker.publish("jobs", {"n": 1})
            await started.wait()

    asyncio.run(run())
    assert events == ["handled", "database closed"]  # the broker drained before the pool closed


def test_at_shutdown_messages_not_yet_started_go_back_to_the_broker():
    app, broker = make()
    started = asyncio.Event()
    finished = []

    @broker.subscriber("slow", concurrency=1)
    async def slow(body: dict):
        started.set()
        await asyncio.sleep(0.1)
        finished.append(body["n"])

    async def run() -> None:
        async with AsyncTestClient(app):
            for n in range(5):
                await broker.publish("slow", {"n": n})
            await started.wait()  # the first is under way, the next four were taken ahead of it
        assert finished == [0]  # the first finished; the others were not started
        (queue,) = broker.transport.groups["slow"].values()
        assert [orjson.loads(envelope.body)["n"] for envelope in queue.queue] == [1, 2, 3, 4]
        assert broker.transport.unsettled == 4  # back with the broker, for the next member

    asyncio.run(run())


def test_messages_published_before_the_app_starts_wait_for_it():
    app, broker = make()
    seen = []

    @broker.subscriber("early")
    def early(body: dict):
        seen.append(body["n"])

    async def run() -> None:
        await broker.publish("early", {"n": 1})
        async with AsyncTestClient(app):
            await broker.settled()

    asyncio.run(run())
    assert seen == [1]


def test_readiness_and_metrics():
    pytest.importorskip("prometheus_client")
    app, broker = make()
    app.enable_prometheus()

    @broker.subscriber("counted", name="counted-sub")
    def counted(body: dict):
        if body.get("fail"):
            raise RuntimeError("no")

    with TestClient(app) as client:
        client.publish("counted", {})
        client.publish("counted", {"fail": True})
        assert client.get("/health/ready").json()["checks"]["broker"]["status"] == "pass"
        text = client.get("/metrics").text
    # counted in plain integers, handed to prometheus-client when /metrics is exported
    assert 'cello_messages_received_total{subscriber="counted-sub"} 2.0' in text
    assert 'cello_messages_processed_total{subscriber="counted-sub"} 1.0' in text
    assert 'cello_messages_failed_total{subscriber="counted-sub"} 1.0' in text
    assert 'cello_message_handler_seconds_count{subscriber="counted-sub"} 2.0' in text
    assert 'cello_message_handler_seconds_bucket{le="+Inf",subscriber="counted-sub"} 2.0' in text


def test_metrics_reach_prometheus_client_without_a_scrape_within_a_second():
    prometheus = pytest.importorskip("prometheus_client")
    from cello.messaging import metrics

    app, broker = make()

    @broker.subscriber("timed", name="timed-sub")
    async def timed(body: dict):
        await asyncio.sleep(0.03)

    def sample(name: str, **labels: str) -> float | None:
        return prometheus.REGISTRY.get_sample_value(name, {"subscriber": "timed-sub", **labels})

    async def run() -> None:
        async with AsyncTestClient(app):
            for n in range(3):
                await broker.publish("timed", {"n": n})
            await broker.settled()
            assert sample("cello_messages_processed_total") in (None, 0.0)  # not handed over yet
            await asyncio.sleep(metrics.FLUSH_AFTER + 0.2)
            assert sample("cello_messages_processed_total") == 3.0
            assert sample("cello_message_handler_seconds_count") == 3.0
            assert sample("cello_message_handler_seconds_bucket", le="0.025") == 0.0
            assert sample("cello_message_handler_seconds_bucket", le="0.05") == 3.0
            assert 0.09 <= (sample("cello_message_handler_seconds_sum") or 0.0) < 1.0
            await broker.publish("timed", {"n": 3})
            await broker.settled()
        assert sample("cello_messages_processed_total") == 4.0  # stopping hands over the rest

    asyncio.run(run())


def test_mistakes_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="no broker adapter"):
        Broker("carrier-pigeon://coop")
    with pytest.raises(ConfigurationError, match="concurrency"):
        Broker().subscriber("t", concurrency=0)
    with pytest.raises(ConfigurationError, match="memory:// takes no options"):
        Broker("memory://", claim_after=1)


def test_request_and_reply():
    app, broker = make()

    @broker.subscriber("rpc.add")
    def add(numbers: dict) -> int:
        return numbers["a"] + numbers["b"]

    @broker.subscriber("rpc.fail", retries=1, backoff=quick)
    def fail(numbers: dict) -> int:
        raise ValueError("no sums today")

    async def run() -> None:
        async with AsyncTestClient(app):
            assert await broker.request("rpc.add", {"a": 2, "b": 3}, timeout=2) == 5
            with pytest.raises(RequestFailed, match="ValueError: no sums today"):
                await broker.request("rpc.fail", {"a": 1, "b": 1}, timeout=2)
            with pytest.raises(TimeoutError):
                await broker.request("rpc.nobody", {}, timeout=0.05)

    asyncio.run(run())


def test_dedup_handles_a_message_id_once():
    from cello.stores import MemoryStore

    app, broker = make()
    handled = []

    @broker.subscriber("payments", dedup=MemoryStore(), dedup_ttl=60)
    def pay(order: Order, message: Message):
        handled.append(message.id)

    with TestClient(app) as client:
        client.publish("payments", Order("pen", 1), message_id="m-1")
        client.publish("payments", Order("pen", 1), message_id="m-1")  # a producer's resend
        client.publish("payments", Order("pen", 1), message_id="m-2")
    assert handled == ["m-1", "m-2"]


def test_a_failed_message_is_not_remembered_as_handled():
    from cello.stores import MemoryStore

    app, broker = make()
    calls = []

    @broker.subscriber("payments", dedup=MemoryStore())
    def pay(order: Order):
        calls.append(order.qty)
        if len(calls) == 1:
            raise RuntimeError("first time fails")

    with TestClient(app) as client:
        client.publish("payments", Order("pen", 1), message_id="m-1")
        client.publish("payments", Order("pen", 2), message_id="m-1")  # sent again: not handled yet, so it runs
    assert calls == [1, 2]


def test_guards_refuse_messages_into_the_dead_letter():
    app, broker = make()
    handled, refused = [], []

    def signed(message: Message) -> bool:
        return message.header("x-signature") == "ok"

    @broker.subscriber("orders", guards=[signed], dead_letter="orders.dlq", retries=3)
    def take(order: Order):
        handled.append(order.item)

    @broker.subscriber("orders.dlq")
    def park(message: Message):
        refused.append((message.json()["item"], message.header("x-cello-error")))

    with TestClient(app) as client:
        client.publish("orders", Order("pen", 1), headers={"x-signature": "ok"})
        client.publish("orders", Order("ink", 1), headers={"x-signature": "forged"})
    assert handled == ["pen"]
    assert refused == [("ink", "refused by signed")]  # at once: retrying cannot change a guard's mind


def test_a_batch_handler_gets_a_list_and_each_message():
    app, broker = make()
    calls = []

    @broker.subscriber("lines", batch=5, batch_timeout=0.05)
    def write(lines: list[Order], message: Message):
        calls.append(([line.qty for line in lines], [m.id for m in message.batch]))

    async def run() -> None:
        async with AsyncTestClient(app):
            ids = [await broker.publish("lines", Order("pen", n), message_id=f"m{n}") for n in range(12)]
            await broker.settled()
            assert [n for qtys, _ in calls for n in qtys] == list(range(12))
            assert [i for _, batch_ids in calls for i in batch_ids] == ids

    asyncio.run(run())
    assert [len(qtys) for qtys, _ in calls] == [5, 5, 2]  # full batches, then what came within the timeout


def test_an_invalid_message_leaves_its_batch_for_the_dead_letter():
    app, broker = make()
    calls, dead = [], []

    @broker.subscriber("lines", batch=3, batch_timeout=0.05, dead_letter="lines.dlq")
    def write(lines: list[Order]):
        calls.append([line.qty for line in lines])

    @broker.subscriber("lines.dlq")
    def park(message: Message):
        dead.append((message.json(), orjson.loads(message.header("x-cello-error"))[0]["loc"]))

    async def run() -> None:
        async with AsyncTestClient(app):
            await broker.publish("lines", Order("pen", 1))
            await broker.publish("lines", {"item": "pen", "qty": "two"})
            await broker.publish("lines", Order("pen", 3))
            await broker.settled()

    asyncio.run(run())
    assert calls == [[1, 3]]
    assert dead == [({"item": "pen", "qty": "two"}, ["body", 1, "qty"])]


def test_a_failing_batch_is_retried_then_each_message_dead_lettered():
    app, broker = make()
    attempts, dead = [], []

    @broker.subscriber("lines", batch=2, retries=1, backoff=quick, dead_letter="lines.dlq")
    def write(lines: list[Order], message: Message):
        attempts.append(message.attempt)
        raise RuntimeError("disk full")

    @broker.subscriber("lines.dlq")
    def park(order: Order, message: Message):
        dead.append((order.qty, message.header("x-cello-attempts")))

    async def run() -> None:
        async with AsyncTestClient(app):
            await broker.publish("lines", Order("pen", 1))
            await broker.publish("lines", Order("pen", 2))
            await broker.settled()

    asyncio.run(run())
    assert attempts == [1, 2]
    assert sorted(dead) == [(1, "2"), (2, "2")]


def test_a_broker_that_refuses_the_configuration_after_an_outage_is_not_tried_again():
    from cello.messaging.memory import MemoryTransport

    class RefusesWhenBack(MemoryTransport):
        """Unreachable at startup; once it answers, it refuses the configuration (a server too old, say)."""

        tries = 0

        async def connect(self) -> None:
            RefusesWhenBack.tries += 1
            if RefusesWhenBack.tries == 1:
                raise ConnectionRefusedError("not yet")
            raise ConfigurationError("this server is too old")

    app = App()
    broker = Broker()
    broker.transport = RefusesWhenBack()
    app.include_broker(broker)

    async def scenario() -> None:
        async with AsyncTestClient(app, real_brokers=True):
            retrying = broker._connecting
            assert retrying is not None
            await asyncio.wait_for(retrying, 10)  # the first retry comes after half a second, and is the last
            assert RefusesWhenBack.tries == 2
            assert not await broker.ping()

    asyncio.run(scenario())


def test_a_request_id_follows_into_the_messages_it_causes_and_their_log_lines(caplog):
    import logging

    from cello.middleware import RequestIdLogFilter

    app = App()
    app.enable_request_id()
    broker = Broker()
    app.include_broker(broker)
    seen: list[tuple[str, str | None]] = []

    @broker.subscriber("orders", group="billing")
    async def bill(order: dict, message: Message):
        logging.getLogger("shop").warning("billing order %s", order["n"])
        seen.append(("orders", message.correlation_id))
        await broker.publish("invoices", {"n": order["n"]})  # no correlation id given: it keeps the order's

    @broker.subscriber("invoices", group="mail")
    async def mail(invoice: dict, message: Message):
        seen.append(("invoices", message.correlation_id))

    @app.post("/orders")
    async def order():
        await broker.publish("orders", {"n": 1})
        return {"queued": True}

    caplog.handler.addFilter(RequestIdLogFilter())
    caplog.set_level(logging.WARNING, logger="shop")

    async def scenario() -> None:
        async with AsyncTestClient(app) as client:
            assert (await client.post("/orders", headers={"x-request-id": "req-42"})).status_code == 200
            await broker.settled()
            await broker.publish("orders", {"n": 2}, correlation_id="given")  # an explicit one wins

            await broker.settled()

    asyncio.run(scenario())
    assert sorted(seen) == [("invoices", "given"), ("invoices", "req-42"), ("orders", "given"), ("orders", "req-42")]
    billing = [record for record in caplog.records if record.name == "shop"]
    assert [(record.getMessage(), record.request_id) for record in billing] == [
        ("billing order 1", "req-42"),
        ("billing order 2", "given"),
    ]
