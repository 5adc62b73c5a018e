"""The broadcast hub on the memory store and on the running Redis: subscribers, WebSocket rooms, fan-out to
many, slow subscribers, sockets that fail, and a subscription that is in place once subscribe returns."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from _helpers import require_service
from cello.realtime import Broadcast
from cello.stores import MemoryStore


class FakeSocket:
    """Stands for a WebSocket in a room: records what the hub sends it (or fails, like a dropped peer)."""

    def __init__(self, fail: bool = False) -> None:
        self.received: list[str | bytes] = []
        self.fail = fail

    async def send_text(self, text: str) -> None:
        if self.fail:
            raise ConnectionError("gone")
        self.received.append(text)

    async def send_bytes(self, data: bytes) -> None:
        if self.fail:
            raise ConnectionError("gone")
        self.received.append(data)


@pytest.fixture(params=["memory", "redis"])
async def hub(request):
    if request.param == "memory":
        store = MemoryStore()
    else:
        require_service("Redis", "127.0.0.1", 6379)
        from cello.stores.redis import RedisStore

        store = RedisStore("redis://127.0.0.1:6379", prefix=f"cello-test-{uuid.uuid4().hex}:")
    hub = Broadcast(store)
    yield hub
    await hub.close()
    await store.close()


async def eventually(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.01)


async def test_subscribers_get_every_kind_of_message(hub):
    async with hub.subscription("news") as messages:
        await hub.publish("news", "text")
        await hub.publish("news", b"\x00bytes")
        await hub.publish("news", {"json": [1, 2]})
        received = [await anext(messages) for _ in range(3)]
    assert received == ["text", b"\x00bytes", '{"json":[1,2]}']


async def test_rooms_fan_out_to_every_member(hub):
    members = [FakeSocket() for _ in range(200)]
    for socket in members:
        await hub.join("lobby", socket)
    assert len(hub.members("lobby")) == 200
    await hub.publish("lobby", "hello everyone")
    await eventually(lambda: all(s.received == ["hello everyone"] for s in members))
    await hub.leave("lobby", members[0])
    await hub.publish("lobby", "second")
    await eventually(lambda: members[1].received == ["hello everyone", "second"])
    assert members[0].received == ["hello everyone"]


async def test_a_failing_socket_leaves_the_room(hub):
    good, bad = FakeSocket(), FakeSocket(fail=True)
    await hub.join("room", good)
    await hub.join("room", bad)
    await hub.publish("room", "one")
    await eventually(lambda: good.received == ["one"])
    await eventually(lambda: bad not in hub.members("room"))


async def test_channels_are_separate_and_released(hub):
    a, b = FakeSocket(), FakeSocket()
    await hub.join("a", a)
    await hub.join("b", b)
    await hub.publish("a", "for a")
    await eventually(lambda: a.received == ["for a"])
    assert b.received == []
    await hub.leave("a", a)
    await hub.leave("b", b)
    assert hub._channels == {}  # no store subscription is left behind


async def test_a_slow_subscriber_loses_its_oldest_messages():
    hub = Broadcast(queue_size=3)
    async with hub.subscription("fast") as messages:
        for n in range(10):
            await hub.publish("fast", str(n))
        await asyncio.sleep(0.05)
        assert [await anext(messages) for _ in range(3)] == ["7", "8", "9"]
    await hub.close()


async def test_two_hubs_on_one_store_reach_each_other(hub):
    """Two hubs sharing a store stand for two worker processes."""
    other = Broadcast(hub.store, prefix=hub.prefix)
    socket = FakeSocket()
    await other.join("shared", socket)
    await hub.publish("shared", "across")
    await eventually(lambda: socket.received == ["across"])
    await other.close()
