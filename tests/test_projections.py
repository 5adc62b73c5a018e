"""Projections (cello.patterns.projections) on the real databases: inline ones in the append's transaction,
asynchronous ones caught up from their checkpoint with each event taking effect exactly once — through a failing
batch, with two projectors racing, in an app's background — a rebuild equal to the live read model, and the
``cello projections`` command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cello import App
from cello.cli import main
from cello.enterprise.database import Connection, Database
from cello.patterns import EventStore, Projection, Projector, RecordedEvent
from cello.testing import AsyncTestClient


class Deposited(msgspec.Struct):
    account: str
    amount: int


class Withdrawn(msgspec.Struct):
    account: str
    amount: int


def balances(table: str = "balances", fail_at: set[int] | None = None) -> Projection:
    """A read model of account balances, one row per event applied (its id the primary key: applying an event
    twice would fail), failing at the positions in ``fail_at`` while that set holds them."""
    projection = Projection(table)

    async def applied(recorded: RecordedEvent, conn: Connection, delta: int, account: str) -> None:
        if fail_at and recorded.position in fail_at:
            raise RuntimeError("the read model's database went away")
        await conn.execute(f"INSERT INTO {table}_applied (event_id) VALUES ($1)", recorded.event_id)
        moved = await conn.execute(f"UPDATE {table} SET balance = balance + $1 WHERE account = $2", delta, account)
        if not moved:
            await conn.execute(f"INSERT INTO {table} (account, balance) VALUES ($1, $2)", account, delta)

    @projection.on(Deposited)
    async def deposited(event: Deposited, recorded: RecordedEvent, conn: Connection) -> None:
        await applied(recorded, conn, event.amount, event.account)

    @projection.on(Withdrawn)
    async def withdrawn(event: Withdrawn, recorded: RecordedEvent, conn: Connection) -> None:
        await applied(recorded, conn, -event.amount, event.account)

    @projection.reset
    async def clear(conn: Connection) -> None:
        await conn.execute(f"DELETE FROM {table}")
        await conn.execute(f"DELETE FROM {table}_applied")

    return projection


async def create_read_model(db: Database, table: str = "balances") -> None:
    await db.execute(f"CREATE TABLE IF NOT EXISTS {table} (account TEXT PRIMARY KEY, balance INTEGER NOT NULL)")
    await db.execute(f"CREATE TABLE IF NOT EXISTS {table}_applied (event_id TEXT PRIMARY KEY)")


async def read_model(db: Database, table: str = "balances") -> dict[str, int]:
    return {row["account"]: row["balance"] for row in await db.fetch_all(f"SELECT account, balance FROM {table}")}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with Database(database_url, pool_size=8) as db:
        events = EventStore(db, events=[Deposited, Withdrawn])
        await events.setup()
        await create_read_model(db)
        yield events


async def fill(store: EventStore, accounts: int = 4, each: int = 10) -> dict[str, int]:
    expected: dict[str, int] = {}
    for n in range(each):
        for a in range(accounts):
            account = f"acct-{a}"
            event = Deposited(account, 10 * (n + 1)) if n % 3 else Withdrawn(account, n + 1)
            await store.append(account, [event])
            expected[account] = expected.get(account, 0) + (event.amount if isinstance(event, Deposited) else
                                                            -event.amount)  # fmt: skip
    return expected


async def test_an_inline_projection_moves_with_the_append(store: EventStore) -> None:
    store.project(balances())
    await store.append("acct-1", [Deposited("acct-1", 100), Withdrawn("acct-1", 30)])
    assert await read_model(store.db) == {"acct-1": 70}

    async def failing_request() -> None:
        async with store.db.transaction(immediate=True):
            await store.append("acct-1", [Deposited("acct-1", 1000)])
            raise RuntimeError("the rest of the request failed")

    with pytest.raises(RuntimeError):
        await failing_request()
    assert await read_model(store.db) == {"acct-1": 70}  # rolled back with the events


async def test_catching_up_applies_every_event_once_through_a_failure(store: EventStore) -> None:
    expected = await fill(store)
    fault = {17}
    projector = Projector(store, balances(fail_at=fault), batch=5)
    with pytest.raises(RuntimeError):
        await projector.catch_up()
    assert await projector.position("balances") == 15  # three batches committed, the fourth rolled back whole
    fault.clear()
    assert await projector.catch_up() == 25
    assert await read_model(store.db) == expected
    assert await projector.position("balances") == (await store.read_all(limit=1000))[-1].position
    assert await projector.catch_up() == 0  # nothing new


async def test_two_projectors_on_one_projection_take_turns(store: EventStore) -> None:
    """Two workers' projectors at once: each event is applied once (a second time would break the primary key)."""
    expected = await fill(store, accounts=6, each=10)
    first, second = Projector(store, balances(), batch=3), Projector(store, balances(), batch=3)
    applied = await asyncio.gather(first.catch_up(), second.catch_up())
    assert sum(applied) == 60 and await read_model(store.db) == expected


async def test_a_rebuild_equals_the_live_read_model(store: EventStore) -> None:
    projector = Projector(store, balances())
    await fill(store)
    await projector.catch_up()
    live = await read_model(store.db)
    await store.db.execute("UPDATE balances SET balance = -1")  # a read model gone wrong
    assert await projector.rebuild("balances") == 40
    assert await read_model(store.db) == live


async def test_an_attached_projector_follows_appends_in_the_background(store: EventStore) -> None:
    app = App()
    Projector(store, balances(), interval=0.05).attach(app)
    async with AsyncTestClient(app):
        await store.append("acct-9", [Deposited("acct-9", 5)])
        for _ in range(200):
            if await read_model(store.db) == {"acct-9": 5}:
                break
            await asyncio.sleep(0.02)
        assert await read_model(store.db) == {"acct-9": 5}


def test_the_projections_command_lists_and_rebuilds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``cello projections list|rebuild module:app`` on an app module with a SQLite file."""
    database = tmp_path / "bank.db"
    (tmp_path / "bank_app.py").write_text(
        "from cello import App\n"
        "from cello.enterprise.database import Database\n"
        "from cello.patterns import EventStore, Projector\n"
        "from test_projections import Deposited, balances\n"
        f"db = Database('sqlite:///{database}')\n"
        "store = EventStore(db, events=[Deposited])\n"
        "app = App()\n"
        "Projector(store, balances()).attach(app)\n"
    )

    async def prepare() -> None:
        async with Database(f"sqlite:///{database}") as db:
            store = EventStore(db, events=[Deposited])
            await store.setup()
            await create_read_model(db)
            await store.append("acct-1", [Deposited("acct-1", 7), Deposited("acct-1", 8)])
            await db.execute("INSERT INTO balances (account, balance) VALUES ('acct-1', 999)")

    asyncio.run(prepare())
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["projections", "list", "bank_app:app"]) == 0
        assert capsys.readouterr().out == "balances\t0\n"
        assert main(["projections", "rebuild", "bank_app:app", "balances"]) == 0
        assert capsys.readouterr().out == "balances: rebuilt from 2 events\n"
    finally:
        sys.path.remove(str(tmp_path))

    async def rebuilt() -> dict[str, Any]:
        async with Database(f"sqlite:///{database}") as db:
            return await read_model(db)

    assert asyncio.run(rebuilt()) == {"acct-1": 15}


def test_a_projector_killed_mid_batch_resumes_with_every_event_once(tmp_path: Path) -> None:
    """A worker is killed (SIGKILL) inside a batch: the batch's writes and checkpoint never committed, and the next
    worker applies every event exactly once (the read model's primary key would refuse a second time)."""
    import os
    import signal
    import subprocess
    import time

    database = tmp_path / "projection.db"

    async def prepare() -> None:
        async with Database(f"sqlite:///{database}") as db:
            store = EventStore(db)
            await store.setup()
            await db.execute("CREATE TABLE totals (event_id TEXT PRIMARY KEY, amount INTEGER NOT NULL)")
            await db.execute("CREATE TABLE progress (version INTEGER NOT NULL)")
            for n in range(1, 31):
                await store.append("account", [Deposited("account", n)])

    asyncio.run(prepare())
    apps = Path(__file__).resolve().parent / "apps"
    env = {**os.environ, "PROJECTION_DB": str(database),
           "PYTHONPATH": os.pathsep.join([str(apps), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    first = subprocess.Popen([sys.executable, str(apps / "projection_worker.py")], env={**env, "HANG": "15"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def count(query: str) -> int:
        import sqlite3

        connection = sqlite3.connect(database, timeout=0.1)
        try:
            return int(connection.execute(query).fetchone()[0])
        except sqlite3.OperationalError:  # the worker holds the write lock: nothing new to read yet
            return -1
        finally:
            connection.close()

    try:
        deadline = time.monotonic() + 30
        # the first batch (events 1-10) committed; the worker hangs inside the second, at event 15
        while (
            count("SELECT count(*) FROM totals") != 10 or count("SELECT position FROM cello_events_checkpoints") != 10
        ):
            assert first.poll() is None and time.monotonic() < deadline, "the first worker did not get there"
            time.sleep(0.05)
        time.sleep(0.3)  # well inside the second batch now
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert count("SELECT count(*) FROM progress") == 0  # the killed batch left nothing behind
    second = subprocess.run([sys.executable, str(apps / "projection_worker.py")], env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "20"  # the 20 events after the committed checkpoint, each once
    assert count("SELECT count(*) FROM totals") == 30 and count("SELECT sum(amount) FROM totals") == sum(range(31))
