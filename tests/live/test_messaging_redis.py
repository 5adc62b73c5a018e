"""The Redis Streams broker adapter (``redis://``, ``rediss://``) against real Redis servers, for what the shared
suite (test_brokers.py) does not cover: its options, the stream/group/consumer layout and entry fields on Redis,
ack and reject keeping the entry for the other groups, nack counted by Redis, a vanished consumer's entries
claimed, a slow handler's entries kept, where new groups start, trimming, a prompt clean stop, settling after
close, forgetting vanished consumers, TLS, and the reconnect after Redis itself went away (a redis-server of the
test's own, killed and restarted on the same port)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from _helpers import redis_server, require_service
from cello import App, ConfigurationError
from cello.messaging import Broker, BrokerUnavailable, Message
from cello.messaging.redis_streams import RedisStreamsTransport
from cello.testing import AsyncTestClient, free_port

pytestmark = [pytest.mark.live, pytest.mark.services, pytest.mark.timeout(90)]

SHARED = "redis://127.0.0.1:6379/0"


@pytest.fixture
def shared() -> Iterator[tuple[str, redis.Redis]]:
    """A key prefix of the test's own on the machine's Redis, and a client to look at its keys (all removed
    afterwards)."""
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"cello-test-streams-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(SHARED)
    try:
        yield prefix, client
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


def make(url: str = SHARED, **options: Any) -> tuple[App, Broker]:
    app = App()
    broker = Broker(url, **options)
    app.include_broker(broker)
    return app, broker


async def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


async def until_async(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 75))


@contextlib.asynccontextmanager
async def serving(app: App) -> AsyncIterator[None]:
    async with AsyncTestClient(app, real_brokers=True):
        yield


def consumers(client: redis.Redis, stream: str, group: str) -> dict[str, dict[str, Any]]:
    return {info["name"].decode(): info for info in client.xinfo_consumers(stream, group)}


# -- options ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"claim_afterr": 1.0}, "unknown redis:// broker option"),
        ({"claim_after": 0}, "claim_after must be > 0"),
        ({"claim_after": "30"}, "claim_after must be a number"),
        ({"claim_after": float("inf")}, "claim_after must be a number"),
        ({"block": -1}, "block must be > 0"),
        ({"block": True}, "block must be a number"),
        ({"maxlen": 0}, "maxlen must be > 0"),
        ({"maxlen": 1.5}, "maxlen must be an integer"),
        ({"new_groups": "first"}, "new_groups is 'latest' or 'earliest'"),
        ({"forget_consumers_after": 1.0}, "at least twice block"),
        ({"forget_consumers_after": -5}, "forget_consumers_after must be > 0"),
        ({"prefix": 7}, "prefix must be a string"),
        ({"socket_timeout": 0}, "socket_timeout must be > 0"),
        ({"max_connections": 0}, "max_connections must be > 0"),
        ({"breaker_threshold": -1}, "breaker_threshold must be >= 0"),
    ],
)
def test_options_are_checked(options, complaint):
    with pytest.raises(ConfigurationError, match=re.escape(complaint)):
        Broker(SHARED, **options)


def test_urls_are_checked():
    with pytest.raises(ConfigurationError, match="redis:// or rediss://"):
        RedisStreamsTransport("amqp://127.0.0.1:5672")
    with pytest.raises(ConfigurationError, match="bad Redis URL"):
        Broker("redis://127.0.0.1:6379/0?socket_timeout=soon")
    assert Broker("rediss://127.0.0.1:6380/0").transport.scheme == "rediss"
    assert Broker("redis://127.0.0.1:6379/0", forget_consumers_after=None, maxlen=1000).transport.maxlen == 1000


def test_no_request_reply():
    _app, broker = make()
    assert broker.transport.supports_request is False

    async def scenario() -> None:
        with pytest.raises(ConfigurationError, match="no request/reply"):
            await broker.request("anything", {})

    run(scenario)


# -- layout and settling on Redis --------------------------------------------------------------------------------


def test_a_topic_is_a_stream_a_group_a_consumer_group(shared):
    prefix, client = shared
    app, broker = make(prefix=prefix, claim_after=5.0)
    seen: list[Message] = []

    @broker.subscriber("orders", group="billing")
    async def bill(message: Message):
        seen.append(message)

    async def scenario() -> None:
        async with serving(app):
            assert await broker.ping()
            await broker.publish("orders", {"item": "pen"}, key="c-1", headers={"X-Tenant": "acme"})
            await until(lambda: len(seen) == 1, what="the message")
            await until(lambda: not client.xpending(prefix + "orders", "billing")["pending"], what="the ack")
        message = seen[0]
        assert message.key == "c-1" and message.header("x-tenant") == "acme"
        assert await message.json() == {"item": "pen"}
        stream = prefix + "orders"
        [(entry_id, fields)] = client.xrange(stream)
        assert message.meta["stream_id"] == entry_id.decode()
        assert message.meta["stream"] == stream and message.meta["group"] == "billing"
        assert fields[b"body"] == b'{"item":"pen"}' and fields[b"key"] == b"c-1"
        assert fields[b"header:x-tenant"] == b"acme"
        assert fields[b"header:content-type"] == b"application/json"
        assert fields[b"header:x-message-id"].decode() == message.id
        assert [group["name"] for group in client.xinfo_groups(stream)] == [b"billing"]
        assert re.fullmatch(rf"{re.escape(socket.gethostname())}-{os.getpid()}-[0-9a-f]{{8}}", message.meta["consumer"])
        description = broker.transport.describe()
        assert description["protocol"] == "redis" and prefix in description["description"]

    run(scenario)


def test_ack_and_reject_leave_the_entry_to_the_other_groups(shared):
    prefix, client = shared
    app, broker = make(prefix=prefix)
    got: dict[str, list[str]] = {"audit": [], "billing": []}

    @broker.subscriber("orders", group="audit", ack="manual")
    async def audit(message: Message):
        got["audit"].append(message.meta["stream_id"])
        await message.reject()

    @broker.subscriber("orders", group="billing")
    async def bill(message: Message):
        got["billing"].append(message.meta["stream_id"])

    async def scenario() -> None:
        async with serving(app):
            await broker.publish("orders", {"n": 1})
            await until(lambda: len(got["audit"]) == len(got["billing"]) == 1, what="both groups")
            await asyncio.sleep(0.3)
        stream = prefix + "orders"
        assert got["audit"] == got["billing"]
        assert client.xlen(stream) == 1  # no XDEL: the entry is each group's until trimmed
        for group in ("audit", "billing"):
            assert client.xpending(stream, group)["pending"] == 0

    run(scenario)


def test_a_nack_is_delivered_again_at_once_and_counted_by_redis(shared):
    prefix, client = shared
    app, broker = make(prefix=prefix, claim_after=30.0)
    attempts: list[tuple[int, str, float]] = []

    @broker.subscriber("payments", group="payments", ack="manual")
    async def pay(message: Message):
        attempts.append((message.attempt, message.meta["stream_id"], time.monotonic()))
        if len(attempts) < 3:
            await message.nack()
        else:
            await message.ack()

    async def scenario() -> None:
        async with serving(app):
            started = time.monotonic()
            await broker.publish("payments", {"n": 1})
            await until(lambda: len(attempts) == 3, what="two redeliveries")
            await asyncio.sleep(0.3)
        assert [attempt for attempt, _, _ in attempts] == [1, 2, 3]
        assert len({entry for _, entry, _ in attempts}) == 1
        assert attempts[-1][2] - started < 5.0, "a nack waited for claim_after"
        assert client.xpending(prefix + "payments", "payments")["pending"] == 0

    run(scenario)


def test_entries_of_a_vanished_consumer_are_claimed(shared):
    prefix, client = shared
    stream = prefix + "jobs"
    client.xgroup_create(stream, "workers", "$", mkstream=True)
    for n in range(3):
        client.xadd(stream, {"body": f'{{"n":{n}}}', "header:content-type": "application/json"})
    # a worker that read three entries and was killed before acking them
    [[_, taken]] = client.xreadgroup("workers", "ghost", {stream: ">"}, count=3)
    assert len(taken) == 3
    app, broker = make(prefix=prefix, claim_after=0.5)
    done: list[tuple[int, int, str]] = []

    @broker.subscriber("jobs", group="workers", concurrency=2)
    async def work(job: dict, message: Message):
        done.append((job["n"], message.attempt, message.meta["consumer"]))

    async def scenario() -> None:
        async with serving(app):
            await until(lambda: len(done) == 3, what="the claimed entries")
            await asyncio.sleep(0.3)
        assert sorted(n for n, _, _ in done) == [0, 1, 2]
        assert {attempt for _, attempt, _ in done} == {2}  # Redis counted the ghost's delivery
        assert client.xpending(stream, "workers")["pending"] == 0

    run(scenario)


def test_a_slow_handlers_entries_are_not_claimed_by_other_members(shared):
    prefix, _client = shared
    handled: list[int] = []

    def member() -> tuple[App, Broker]:
        app, broker = make(prefix=prefix, claim_after=0.4, block=0.1)

        @broker.subscriber("slow", group="workers", prefetch=1)  # one at a time: the members share the four
        async def work(job: dict):
            await asyncio.sleep(1.2)  # well past claim_after
            handled.append(job["n"])

        return app, broker

    (first, publisher), (second, _) = member(), member()

    async def scenario() -> None:
        async with serving(first), serving(second):
            for n in range(4):
                await publisher.publish("slow", {"n": n})
            await until(lambda: len(handled) == 4, what="four slow jobs")
            await asyncio.sleep(1.0)  # a claimed duplicate would finish by now
        assert sorted(handled) == [0, 1, 2, 3]

    run(scenario)


def test_new_groups_start_at_the_end_or_at_the_first_entry(shared):
    prefix, _client = shared
    before = Broker(SHARED, prefix=prefix)
    latest, earliest = make(prefix=prefix), make(prefix=prefix, new_groups="earliest")
    got: dict[str, list[int]] = {"latest": [], "earliest": []}

    @latest[1].subscriber("news", group="late")
    async def late(item: dict):
        got["latest"].append(item["n"])

    @earliest[1].subscriber("news", group="early")
    async def early(item: dict):
        got["earliest"].append(item["n"])

    async def scenario() -> None:
        await before.start()
        try:
            await before.publish("news", {"n": 0})
            async with serving(latest[0]), serving(earliest[0]):
                await before.publish("news", {"n": 1})
                await until(lambda: len(got["latest"]) == 1 and len(got["earliest"]) == 2, what="both groups")
                await asyncio.sleep(0.3)
        finally:
            await before.stop()
        assert got == {"latest": [1], "earliest": [0, 1]}

    run(scenario)


def test_maxlen_trims_the_stream_approximately(shared):
    prefix, client = shared
    broker = Broker(SHARED, prefix=prefix, maxlen=50)

    async def scenario() -> None:
        await broker.start()
        try:
            await asyncio.gather(*(broker.publish("log", {"n": n}) for n in range(1000)))
        finally:
            await broker.stop()

    run(scenario)
    length = client.xlen(prefix + "log")
    assert 50 <= length < 1000, length  # "~": whole macro nodes go, so somewhat more than 50 may stay


def test_a_clean_stop_is_prompt_and_leaves_the_group(shared):
    prefix, client = shared
    app, broker = make(prefix=prefix, block=30.0)  # a read waits this long unless woken
    done: list[int] = []

    @broker.subscriber("jobs", group="workers")
    async def work(job: dict):
        done.append(job["n"])

    async def scenario() -> None:
        async with serving(app):
            await broker.publish("jobs", {"n": 1})
            await until(lambda: done == [1], what="the job")
            await asyncio.sleep(0.3)  # back in a blocking read
            assert consumers(client, prefix + "jobs", "workers")
            started = time.monotonic()
        stopped = time.monotonic() - started
        assert stopped < 2.0, f"stop took {stopped:.1f} s"
        assert consumers(client, prefix + "jobs", "workers") == {}

    run(scenario)


def test_an_unfinished_entry_stays_pending_and_another_member_takes_it(shared, caplog):
    prefix, client = shared
    stream = prefix + "jobs"
    app, broker = make(prefix=prefix, claim_after=0.5, drain_timeout=0.3)
    finished: list[str] = []

    @broker.subscriber("jobs", group="workers")
    async def slow(job: dict, message: Message):
        await asyncio.sleep(1.0)  # outlives the drain; its ack comes after the broker closed
        finished.append(message.meta["consumer"])

    after, other = make(prefix=prefix, claim_after=0.5)
    retaken: list[int] = []

    @other.subscriber("jobs", group="workers")
    async def quick(job: dict, message: Message):
        retaken.append(message.attempt)

    async def scenario() -> None:
        async with serving(app):
            await broker.publish("jobs", {"n": 1})
            await until(lambda: client.xpending(stream, "workers")["pending"] == 1, what="the job under way")
        gone = list(consumers(client, stream, "workers"))
        assert len(gone) == 1 and consumers(client, stream, "workers")[gone[0]]["pending"] == 1
        await until(lambda: len(finished) == 1, what="the cut-off handler")  # settles into nothing, no error
        await asyncio.sleep(0.2)
        assert client.xpending(stream, "workers")["pending"] == 1
        async with serving(after):
            await until(lambda: retaken == [2], what="the entry claimed by another member")
            await until(lambda: client.xpending(stream, "workers")["pending"] == 0, what="its ack")

    run(scenario)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_vanished_consumer_names_are_forgotten(shared):
    prefix, client = shared
    stream = prefix + "jobs"
    client.xgroup_create(stream, "workers", "$", mkstream=True)
    entry = client.xadd(stream, {"body": b"{}"})
    client.xreadgroup("workers", "ghost", {stream: ">"})
    client.xack(stream, "workers", entry)  # it handled everything, then vanished: its name stays in the group
    client.xgroup_createconsumer(stream, "workers", "owner")
    client.xadd(stream, {"body": b"{}"})
    client.xreadgroup("workers", "owner", {stream: ">"})  # vanished too, but with an entry pending: kept
    app, broker = make(prefix=prefix, claim_after=30.0, block=0.1, forget_consumers_after=0.5)

    @broker.subscriber("jobs", group="workers")
    async def work(message: Message): ...

    async def scenario() -> None:
        async with serving(app):
            await until(lambda: "ghost" not in consumers(client, stream, "workers"), what="the ghost forgotten")
            names = consumers(client, stream, "workers")
            assert "owner" in names and names["owner"]["pending"] == 1

    run(scenario)


# -- connections -------------------------------------------------------------------------------------------------


def test_it_reconnects_after_redis_restarts(tmp_path):
    with redis_server(tmp_path) as server:
        url = server.url + "/0"
        app, broker = make(url, claim_after=0.5, block=0.2, breaker_reset=1.0)
        got: list[int] = []

        @broker.subscriber("jobs", group="workers")
        async def work(job: dict):
            got.append(job["n"])

        async def scenario() -> None:
            async with serving(app):
                await broker.publish("jobs", {"n": 1})
                await until(lambda: got == [1], what="the first job")
                server.stop()  # killed: without persistence it comes back empty, stream and group gone
                await until_async(lambda: _not(broker.ping()), what="ping False while Redis is down")
                with pytest.raises(BrokerUnavailable):  # Redis's StoreUnavailable, said as the broker's
                    await broker.publish("jobs", {"n": 0})
                await asyncio.sleep(1.0)  # the consumer finds Redis gone and keeps trying
                server.restart()
                await until_async(broker.ping, what="ping True once Redis is back")
                await broker.publish("jobs", {"n": 2})
                await broker.publish("jobs", {"n": 3})
                await until(lambda: got == [1, 2, 3], what="the jobs after the restart")
                probe = redis.Redis.from_url(url)
                try:
                    assert [g["name"] for g in probe.xinfo_groups("cello:stream:jobs")] == [b"workers"]
                finally:
                    probe.close()

        run(scenario)


async def _not(ping: Awaitable[bool]) -> bool:
    return not await ping


def test_rediss_speaks_tls(tmp_path, certs, monkeypatch):
    tls_port = free_port()
    options = ["--tls-port", str(tls_port), "--tls-cert-file", certs.cert, "--tls-key-file", certs.key,
               "--tls-ca-cert-file", certs.ca, "--tls-auth-clients", "no"]  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", certs.ca)  # the test CA is what the default TLS context trusts
    with redis_server(tmp_path, *options):
        app, broker = make(f"rediss://127.0.0.1:{tls_port}/0", claim_after=1.0)
        got: list[Message] = []

        @broker.subscriber("secure", group="workers")
        async def work(message: Message):
            got.append(message)

        async def scenario() -> None:
            async with serving(app):
                assert await broker.ping()
                await broker.publish("secure", {"n": 1}, key="k")
                await until(lambda: len(got) == 1, what="the message over TLS")
            assert got[0].key == "k" and await got[0].json() == {"n": 1}

        run(scenario)


def test_a_user_without_dangerous_commands_consumes_and_stops_promptly(tmp_path):
    # no INFO (the version goes unchecked) and no CLIENT UNBLOCK (stop cancels the blocking read instead)
    acl = ["--user", "default", "off", "--user", "worker", "on", ">s3cret", "~*", "&*", "+@all", "-@dangerous"]
    with redis_server(tmp_path, *acl) as server:
        app, broker = make(f"redis://worker:s3cret@127.0.0.1:{server.port}/0", block=30.0)
        got: list[int] = []

        @broker.subscriber("jobs", group="workers")
        async def work(job: dict):
            got.append(job["n"])

        async def scenario() -> None:
            async with serving(app):
                await broker.publish("jobs", {"n": 1})
                await until(lambda: got == [1], what="the job")
                await asyncio.sleep(0.3)  # in a blocking read
                started = time.monotonic()
            assert time.monotonic() - started < 2.0

        run(scenario)
