"""cello.enterprise.Redis against the real Redis, and against a small real Redis Cluster the test starts itself:
JSON values, counters, expiry, hashes, pipelines, pub/sub, locks, outages and the readiness check."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from _helpers import redis_server, require_program, require_service
from cello import App
from cello.enterprise import Redis
from cello.enterprise.redis import LockNotAcquired
from cello.stores import StoreUnavailable
from cello.testing import TestClient, free_port

pytestmark = pytest.mark.services


@pytest.fixture
async def cache():
    require_service("Redis", "127.0.0.1", 6379)
    client = Redis("redis://127.0.0.1:6379", prefix=f"cello-test-{uuid.uuid4().hex}:")
    yield client
    await client.close()


async def test_values_come_back_as_they_went_in(cache):
    row = {"id": 1, "name": "Ada", "tags": ["math"], "score": 9.5, "active": True, "boss": None}
    await cache.set("user:1", row, ttl=300)
    assert await cache.get("user:1") == row
    assert await cache.get("user:2") is None
    assert await cache.exists("user:1") and not await cache.exists("user:2")
    assert 299 < await cache.ttl("user:1") <= 300
    assert await cache.get_many("user:1", "user:2") == [row, None]
    assert await cache.delete("user:1", "user:2") == 1


async def test_more_callers_than_pooled_connections_wait_their_turn():
    # the stores' commands go through redis-py's pool, capped at max_connections
    require_service("Redis", "127.0.0.1", 6379)
    client = Redis("redis://127.0.0.1:6379", max_connections=2, prefix=f"cello-test-{uuid.uuid4().hex}:")
    try:
        assert await asyncio.gather(*(client.call("incrby", client.key("n"), 1) for _ in range(50))) != []
        assert await client.get("n") == 50
    finally:
        await client.delete("n")
        await client.close()


async def test_counters_and_expiry(cache):
    assert await cache.incr("hits") == 1
    assert await cache.incr("hits", 5) == 6
    assert await cache.ttl("hits") is None
    assert await cache.expire("hits", 0.2)
    await asyncio.sleep(0.4)
    assert await cache.get("hits") is None
    assert not await cache.expire("gone", 10)


async def test_hashes(cache):
    assert await cache.hset("user:1", {"name": "Ada", "langs": ["en", "fr"]}) == 2
    assert await cache.hget("user:1", "langs") == ["en", "fr"]
    assert await cache.hgetall("user:1") == {"name": "Ada", "langs": ["en", "fr"]}
    assert await cache.hdel("user:1", "name") == 1
    assert await cache.hget("user:1", "name") is None


async def test_pipelines_run_in_one_round_trip(cache):
    async with cache.pipeline() as pipe:
        pipe.set("a", {"x": 1}).incr("n").incr("n").expire("n", 60).get("a").hset("h", {"f": 1}).hget("h", "f")
    assert pipe.results == [True, 1, 2, True, {"x": 1}, 1, 1]


async def test_pub_sub_as_an_async_iterator(cache):
    async with cache.subscribe("news", "alerts") as messages:
        assert await cache.publish("news", {"title": "hello"}) == 1
        await cache.publish("alerts", "fire")
        received = []
        async for message in messages:
            received.append((message.channel, message.data))
            if len(received) == 2:
                break
    assert received == [("news", {"title": "hello"}), ("alerts", "fire")]


async def test_a_lock_has_one_holder_at_a_time(cache):
    order = []

    async def worker(name: str) -> None:
        async with cache.lock("job", timeout=5, blocking_timeout=5):
            order.append(f"{name} in")
            await asyncio.sleep(0.1)
            order.append(f"{name} out")

    await asyncio.gather(worker("a"), worker("b"))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    async with cache.lock("held", timeout=5):
        with pytest.raises(LockNotAcquired):
            async with cache.lock("held", blocking_timeout=0.2):
                pass


async def test_an_unreachable_redis_fails_fast():
    dead = Redis(f"redis://:secret@127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as failure:
        await dead.get("x")
    assert time.monotonic() - started < 3
    assert "secret" not in str(failure.value)
    assert await dead.ping() is False
    await dead.close()


async def test_after_repeated_failures_the_circuit_answers_at_once():
    dead = Redis(f"redis://127.0.0.1:{free_port()}", breaker_threshold=2, breaker_reset=30)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            await dead.get("x")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="circuit is open"):
        await dead.get("x")  # still a StoreUnavailable: every feature's fallback applies
    assert time.monotonic() - started < 0.1
    await dead.close()


# -- the shared connection single commands run on -----------------------------------------------------------------


async def test_concurrent_commands_share_one_connection_and_get_their_own_replies(cache):
    await asyncio.gather(*(cache.set(f"k{n}", {"n": n}) for n in range(300)))
    assert await asyncio.gather(*(cache.get(f"k{n}") for n in range(300))) == [{"n": n} for n in range(300)]
    assert await cache.get_many(*(f"k{n}" for n in range(300))) == [{"n": n} for n in range(300)]
    assert await cache.get_many() == []
    assert await cache.delete(*(f"k{n}" for n in range(300))) == 300


async def test_a_caller_that_gives_up_leaves_the_replies_in_order(cache):
    await cache.set("a", "A")
    await cache.set("b", "B")
    abandoned = asyncio.ensure_future(cache.get("a"))
    await asyncio.sleep(0)  # written, not yet answered
    abandoned.cancel()
    assert await cache.get("b") == "B"
    assert await cache.get("a") == "A"


async def test_a_command_error_is_raised_and_the_connection_stays_usable(cache):
    import redis.exceptions

    await cache.set("text", "not a number")
    with pytest.raises(redis.exceptions.ResponseError, match="not an integer"):
        await cache.incr("text")
    assert await cache.get("text") == "not a number"


def test_one_client_serves_one_event_loop_after_another():
    require_service("Redis", "127.0.0.1", 6379)
    client = Redis("redis://127.0.0.1:6379", prefix=f"cello-test-{uuid.uuid4().hex}:")
    asyncio.run(client.set("k", 1))
    assert asyncio.run(client.get("k")) == 1  # a new loop: a new connection, not the first loop's
    assert asyncio.run(client.delete("k")) == 1


async def test_password_and_database_from_the_url(tmp_path):
    with redis_server(tmp_path, "--requirepass", "s3cret") as server:
        port = server.port
        client = Redis(f"redis://:s3cret@127.0.0.1:{port}/3")
        other_db = Redis(f"redis://:s3cret@127.0.0.1:{port}/0")
        wrong = Redis(f"redis://:wrong@127.0.0.1:{port}")
        try:
            await client.set("k", "in db 3")
            assert await client.get("k") == "in db 3"
            assert await other_db.get("k") is None
            with pytest.raises(Exception, match=r"(?i)WRONGPASS|invalid"):
                await wrong.get("k")
        finally:
            for each in (client, other_db, wrong):
                await each.close()


async def test_a_redis_that_stops_answering_fails_the_waiting_commands_within_the_timeout():
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(f"redis://127.0.0.1:{port}", socket_timeout=0.3)
    try:
        started = time.monotonic()
        outcomes = await asyncio.gather(*(client.get(f"k{n}") for n in range(20)), return_exceptions=True)
        assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
        assert time.monotonic() - started < 2
    finally:
        await client.close()
        for writer in accepted:
            writer.close()
        server.close()


async def test_commands_recover_when_redis_comes_back(tmp_path):
    with redis_server(tmp_path) as server:
        client = Redis(server.url, breaker_threshold=0)
        try:
            await client.set("k", "before")
            server.stop()  # SIGKILL: the shared connection is lost
            with pytest.raises(StoreUnavailable):
                await client.get("k")
            server.restart()  # an empty Redis on the same port
            assert await client.get("k") is None
            await client.set("k", "after")
            assert await client.get("k") == "after"
        finally:
            await client.close()


@pytest.mark.parametrize("up", [True, False])
def test_attached_redis_reports_to_the_readiness_check(up):
    require_service("Redis", "127.0.0.1", 6379)
    app = App()
    app.enable_health_checks()
    Redis("redis://127.0.0.1:6379" if up else f"redis://127.0.0.1:{free_port()}").attach(app)
    with TestClient(app) as client:
        ready = client.get("/health/ready")
    assert ready.status_code == (200 if up else 503)
    assert ready.json()["checks"]["redis"]["status"] == ("pass" if up else "fail")


# -- a real Redis Cluster: three masters on loopback ports ---------------------------------------------------------


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = free_port()
        if port + 10000 <= 65535:
            try:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    server = require_program("redis-server", shutil.which("redis-server"))
    cli = require_program("redis-cli", shutil.which("redis-cli"))
    directory = tmp_path_factory.mktemp("cluster")
    ports = [cluster_port() for _ in range(3)]
    processes = []
    try:
        for port in ports:
            node = directory / str(port)
            node.mkdir()
            processes.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no", "--dir", str(node)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        for port in ports:
            deadline = time.monotonic() + 10
            while subprocess.run([cli, "-p", str(port), "ping"], capture_output=True, check=False).stdout != b"PONG\n":
                assert time.monotonic() < deadline, "a cluster node did not start"
                time.sleep(0.05)
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                        "--cluster-yes"], capture_output=True, check=True, timeout=30)  # fmt: skip
        deadline = time.monotonic() + 20
        while b"cluster_state:ok" not in subprocess.run([cli, "-p", str(ports[0]), "cluster", "info"],
                                                        capture_output=True, check=False).stdout:  # fmt: skip
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            process.kill()
            process.wait(10)


async def test_the_same_api_on_a_cluster(cluster):
    client = Redis(cluster, cluster=True, prefix="c:")
    try:
        keys = [f"user:{n}" for n in range(50)]  # spread over every node's slots
        for n, key in enumerate(keys):
            await client.set(key, {"n": n})
        assert [await client.get(key) for key in keys] == [{"n": n} for n in range(50)]
        assert await client.get_many(*keys, "missing") == [*({"n": n} for n in range(50)), None]
        assert await client.incr("hits") == 1
        await client.hset("h", {"a": [1]})
        assert await client.hgetall("h") == {"a": [1]}
        async with client.pipeline() as pipe:
            pipe.incr("hits").get("user:3")
        assert pipe.results == [2, {"n": 3}]
        async with client.lock("job"):
            pass
        async with client.subscribe("news") as messages:
            await client.publish("news", "on a cluster")
            async for message in messages:
                assert message.data == "on a cluster"
                break
        assert await client.ping()
        assert await client.delete(*keys) == 50
    finally:
        await client.close()


def test_a_redis_cluster_url_selects_cluster_mode():
    assert Redis("redis+cluster://127.0.0.1:7000").cluster
    assert not Redis("redis://127.0.0.1:6379").cluster
