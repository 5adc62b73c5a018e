"""The messaging contract, proven the same way against every real broker (tests/live/_brokers.py): typed consume
with headers and keys, every group getting each message, retry then dead letter, an invalid message dead-lettered
at once, nack and redelivery, per-key order under concurrency, a broker that is not there, a group sharing work
across two worker processes, a SIGTERM drain that loses and repeats nothing, and a kill -9 after which every
message is still processed (repeated only if it was under way when the worker died)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from _brokers import BROKERS, BrokerTarget, serving
from _live import Factory

from cello import App, ConfigurationError, Header
from cello.messaging import Broker, BrokerUnavailable, Message
from cello.testing import AsyncTestClient, free_port

pytestmark = [pytest.mark.live, pytest.mark.services, pytest.mark.timeout(180)]


class Order(msgspec.Struct):
    item: str
    qty: int


def quick(attempt: int) -> float:
    return 0.01


# every topic of this module's run starts with it: what they leave on a shared broker is deleted afterwards
PREFIX = f"cello-test.{uuid.uuid4().hex[:6]}."


@pytest.fixture(scope="module", params=list(BROKERS))
def target(request: pytest.FixtureRequest) -> Iterator[BrokerTarget]:
    with serving(request.param, PREFIX) as found:
        yield found


@pytest.fixture
def topic() -> str:
    return f"{PREFIX}{uuid.uuid4().hex[:10]}"


def make(target: BrokerTarget, **options: Any) -> tuple[App, Broker]:
    app = App()
    broker = Broker(target.url, **{**target.options, **options})
    app.include_broker(broker)
    return app, broker


async def until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_typed_consume_with_headers_keys_and_correlation(target, topic):
    app, broker = make(target)
    seen: list[tuple[Any, ...]] = []

    @broker.subscriber(topic, group="billing")
    async def bill(order: Order, message: Message, x_tenant: str = Header("none")):
        seen.append((order, x_tenant, message.key, message.correlation_id, message.id, message.attempt))

    async def scenario() -> None:
        async with AsyncTestClient(app, real_brokers=True):
            sent = await broker.publish(topic, Order("pen", 2), key="c-1", headers={"X-Tenant": "acme"},
                                        correlation_id="k-9")  # fmt: skip
            await until(lambda: len(seen) == 1, what="the order")
            assert seen == [(Order("pen", 2), "acme", "c-1", "k-9", sent, 1)]

    run(scenario)


def test_every_group_gets_each_message(target, topic):
    app, broker = make(target)
    got: dict[str, list[int]] = {"audit": [], "billing": []}

    @broker.subscriber(topic, group="audit")
    async def audit(order: Order):
        got["audit"].append(order.qty)

    @broker.subscriber(topic, group="billing")
    async def bill(order: Order):
        got["billing"].append(order.qty)

    async def scenario() -> None:
        if not broker.transport.fan_out:  # one queue per topic: a second group is refused, not silently split
            with pytest.raises(ConfigurationError):
                await broker.start()
            return
        async with AsyncTestClient(app, real_brokers=True):
            for n in range(10):
                await broker.publish(topic, Order("pen", n))
            await until(lambda: len(got["audit"]) == len(got["billing"]) == 10, what="both groups")
        assert sorted(got["audit"]) == sorted(got["billing"]) == list(range(10))

    run(scenario)


def test_a_failing_message_is_retried_then_dead_lettered(target, topic):
    app, broker = make(target)
    tries: list[int] = []
    dead: list[tuple[Any, ...]] = []

    @broker.subscriber(topic, group="billing", retries=2, backoff=quick, dead_letter=topic + ".dlq")
    async def bill(order: Order, message: Message):
        tries.append(message.attempt)
        raise RuntimeError("card declined")

    @broker.subscriber(topic + ".dlq", group="parking")
    async def park(order: Order, message: Message):
        headers = message.delivery.headers
        dead.append((order, message.key, headers["x-cello-error"], headers["x-cello-attempts"],
                     headers["x-cello-original-topic"], message.id))  # fmt: skip

    async def scenario() -> None:
        async with AsyncTestClient(app, real_brokers=True):
            sent = await broker.publish(topic, Order("pen", 1), key="c-2")
            await until(lambda: len(dead) == 1, what="the dead letter")
            await asyncio.sleep(0.5)  # nothing more comes: given up on for good
        assert tries == [1, 2, 3]
        assert dead == [(Order("pen", 1), "c-2", "RuntimeError: card declined", "3", topic, sent)]

    run(scenario)


def test_an_invalid_message_is_dead_lettered_at_once(target, topic):
    app, broker = make(target)
    tries: list[int] = []
    dead: list[dict[str, Any]] = []

    @broker.subscriber(topic, group="billing", retries=3, backoff=quick, dead_letter=topic + ".dlq")
    async def bill(order: Order):
        tries.append(1)

    @broker.subscriber(topic + ".dlq", group="parking")
    async def park(message: Message):
        dead.append({"body": await message.json(), "error": message.header("x-cello-error")})

    async def scenario() -> None:
        async with AsyncTestClient(app, real_brokers=True):
            await broker.publish(topic, {"item": "pen", "qty": "many"})
            await until(lambda: len(dead) == 1, what="the dead letter")
        assert tries == []
        assert dead[0]["body"] == {"item": "pen", "qty": "many"}
        errors = orjson.loads(dead[0]["error"])
        assert errors[0]["loc"][-1] == "qty"

    run(scenario)


def test_a_nacked_message_comes_again(target, topic):
    app, broker = make(target)
    attempts: list[int] = []

    @broker.subscriber(topic, group="payments", ack="manual")
    async def pay(order: Order, message: Message):
        attempts.append(message.attempt)
        if len(attempts) == 1:
            await message.nack()
        else:
            await message.ack()

    async def scenario() -> None:
        async with AsyncTestClient(app, real_brokers=True):
            await broker.publish(topic, Order("pen", 1))
            await until(lambda: len(attempts) == 2, what="the redelivery")
            await asyncio.sleep(0.5)  # acked: not delivered a third time
        assert attempts == [1, 2]

    run(scenario)


def test_one_keys_messages_keep_their_order_under_concurrency(target, topic):
    topic += target.ordered_suffix
    app, broker = make(target)
    seen: dict[str, list[int]] = {"a": [], "b": []}

    # NOTE: prefetch 10 keeps one SQS receive call under way: moto's server can hand one message to two receive
    # calls at once (its ReceiveMessage takes no lock), a duplicate real SQS never makes for a FIFO queue
    @broker.subscriber(topic, group="ledger", concurrency=8, prefetch=10)
    async def post(order: Order, message: Message):
        await asyncio.sleep(0.002 * (order.qty % 3))  # later messages would overtake earlier ones
        assert message.key is not None
        seen[message.key].append(order.qty)

    async def scenario() -> None:
        async with AsyncTestClient(app, real_brokers=True):
            for n in range(30):
                await broker.publish(topic, Order("pen", n), key="ab"[n % 2])
            try:
                await until(lambda: len(seen["a"]) + len(seen["b"]) >= 30, what="all messages")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; handled so far: {seen}") from None
        assert seen["a"] == list(range(0, 30, 2))
        assert seen["b"] == list(range(1, 30, 2))

    run(scenario)


def unreachable(target: BrokerTarget) -> str:
    """The target's URL with its port swapped for one nothing listens on."""
    return re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{free_port()}", target.url, count=1)


def test_a_broker_that_is_not_there_fails_readiness_not_the_app(target, topic):
    app = App()
    app.enable_health_checks()
    broker = Broker(unreachable(target), **target.options)
    app.include_broker(broker)

    @broker.subscriber(topic)
    async def never(order: Order): ...

    @app.get("/hello")
    async def hello():
        return {"ok": True}

    @app.post("/orders")
    async def order(body: Order):
        await broker.publish(topic, body)
        return {"queued": True}

    async def scenario() -> None:
        async with AsyncTestClient(app, real_brokers=True) as client:
            assert (await client.get("/hello")).status_code == 200
            ready = await client.get("/health/ready")
            assert ready.status_code == 503
            assert "broker" in ready.text
            with pytest.raises(BrokerUnavailable):
                await broker.publish(topic, Order("pen", 1))
            # a handler that publishes answers 503 problem+json, naming no broker, address or library
            answer = await client.post("/orders", json={"item": "pen", "qty": 1})
            assert answer.status_code == 503
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.headers["retry-after"]
            assert "127.0.0.1" not in answer.text and target.name not in answer.text

    run(scenario)


# -- several worker processes, stopped and killed ----------------------------------------------------------------


class Workers:
    """``tests/apps/broker_app.py`` served by granian on one broker topic; its records read back."""

    def __init__(self, live: Factory, target: BrokerTarget, topic: str, out: Path) -> None:
        self.live, self.target, self.topic, self.out = live, target, topic, out
        # NOTE: a group of its own per test: tansu can take long to elect a leader in a group everybody left
        self.group = f"workers-{uuid.uuid4().hex[:8]}"

    def start(self, workers: int = 1, delay: float = 0.0, server: str = "granian") -> Any:
        env = {"CELLO_BROKER_URL": self.target.url, "CELLO_BROKER_OPTIONS": orjson.dumps(self.target.options).decode(),
               "CELLO_BROKER_TOPIC": self.topic, "CELLO_BROKER_GROUP": self.group, "CELLO_BROKER_OUT": str(self.out),
               "CELLO_BROKER_DELAY": str(delay), **self.target.env}  # fmt: skip
        before = len(self.events("ready"))
        live = self.live("broker_app:app", server, workers=workers, env=env, stop_timeout=30)
        live.start()
        self.wait(lambda: len(self.events("ready")) >= before + workers, what=f"{workers} subscribed workers")
        return live

    def events(self, kind: str) -> list[tuple[int, int]]:
        """``(pid, job)`` of every ``kind`` record so far, in each worker's order."""
        found = []
        for log in self.out.glob("*.log"):
            for line in log.read_text().splitlines():
                event, _, n = line.partition(" ")
                if event == kind:
                    found.append((int(log.stem), int(n)))
        return found

    def jobs(self, kind: str) -> list[int]:
        return sorted(n for _, n in self.events(kind))

    def wait(self, condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {sorted(self.events('done'))}")
            time.sleep(0.05)

    def publish(self, jobs: range) -> None:
        async def send() -> None:
            broker = Broker(self.target.url, **self.target.options)
            await broker.start()
            try:
                for n in jobs:
                    await broker.publish(self.topic, {"n": n})
            finally:
                await broker.stop()

        asyncio.run(send())


@pytest.fixture
def workers(live, target, topic, tmp_path) -> Workers:
    return Workers(live, target, topic, tmp_path)


def test_a_group_shares_work_across_two_worker_processes(workers):
    workers.start(workers=2, delay=0.05)
    sent = 0
    deadline = time.monotonic() + 60
    # a group's members may need a moment to share the topic out (Kafka rebalances): send until both work
    while len({pid for pid, _ in workers.events("done")}) < 2:
        assert time.monotonic() < deadline, f"one worker did everything: {workers.events('done')}"
        workers.publish(range(sent, sent + 10))
        sent += 10
        time.sleep(0.3)
    workers.wait(lambda: set(workers.jobs("done")) == set(range(sent)), what=f"all {sent} jobs")
    assert len({pid for pid, _ in workers.events("done")}) == 2


def test_sigterm_drains_the_handlers_under_way_and_repeats_nothing(workers):
    server = workers.start(workers=1, delay=1.0)
    workers.publish(range(12))
    workers.wait(lambda: len(workers.jobs("start")) >= 4, what="four jobs under way")
    server.stop()  # SIGTERM: stop fetching, finish what is under way, ack it
    started, done = workers.jobs("start"), workers.jobs("done")
    assert started == done, "a handler under way at SIGTERM was cut off"
    assert len(done) < 12, "the drain should not have taken everything"

    workers.start(workers=1, delay=0.0)
    workers.wait(lambda: set(workers.jobs("done")) == set(range(12)), what="the rest after the restart")
    time.sleep(1.0)
    assert sorted(workers.jobs("done")) == list(range(12)), "a job acked at the drain was done again"


def test_kill_9_mid_batch_loses_nothing(workers):
    server = workers.start(workers=1, delay=0.5)
    workers.publish(range(12))
    workers.wait(lambda: len(workers.jobs("done")) >= 4, what="some jobs done")
    os.killpg(server.pgid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        server.stop()
    done_before = set(workers.jobs("done"))

    workers.start(workers=1, delay=0.0)
    workers.wait(lambda: set(workers.jobs("done")) == set(range(12)), timeout=90, what="every job after the kill")
    time.sleep(1.0)
    done = workers.jobs("done")
    # at least once: a job is done again only if it was done before the kill, its ack perhaps not yet with the
    # broker; what was under way or still waiting is done exactly once after the restart
    repeated = {n for n in done if done.count(n) > 1}
    assert repeated <= done_before, (repeated, done_before)


@pytest.mark.parametrize("engine", ["granian-asgi", "uvicorn", "hypercorn"])
def test_every_engine_starts_the_broker_and_drains_it_at_sigterm(live, tmp_path, engine):
    """The broker's lifecycle rides on the app's startup and shutdown, the same on every engine (one broker is
    enough to show it: the conformance tests above run each broker under granian's RSGI face)."""
    from _brokers import redis

    with redis() as found:
        try:
            workers = Workers(live, found, f"{PREFIX}{uuid.uuid4().hex[:10]}", tmp_path)
            server = workers.start(workers=1, delay=0.5, server=engine)
            workers.publish(range(8))
            workers.wait(lambda: len(workers.jobs("start")) >= 2, what="jobs under way")
            server.stop()
            assert workers.jobs("start") == workers.jobs("done"), "a handler under way at SIGTERM was cut off"
            workers.start(workers=1, server=engine)
            workers.wait(lambda: set(workers.jobs("done")) == set(range(8)), what="the rest after the restart")
            assert sorted(workers.jobs("done")) == list(range(8)), "a job acked at the drain was done again"
        finally:
            assert found.forget is not None
            found.forget(PREFIX)
