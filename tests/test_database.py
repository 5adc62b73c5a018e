"""The database layer against the real PostgreSQL and the embedded SQLite: one API, one set of tests."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import os
import signal
import time
import uuid

import pytest

from _helpers import require_service
from cello import App, Depends
from cello.enterprise import Connection, Database, DatabaseUnavailable, InvalidQueryArgument
from cello.middleware import CircuitOpenError
from cello.testing import TestClient

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/app.db"
    pytest.importorskip("asyncpg")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    request.applymarker(pytest.mark.services)
    return POSTGRES_URL


@pytest.fixture
async def db(url):
    table = f"items_{uuid.uuid4().hex[:10]}"
    async with Database(url, pool_size=4) as database:
        await database.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, name text NOT NULL, price numeric)")
        database.table = table  # type: ignore[attr-defined]
        try:
            yield database
        finally:
            await database.execute(f"DROP TABLE {table}")


async def test_rows_are_dicts(db):
    t = db.table
    price = decimal.Decimal("2.5")
    assert await db.execute(f"INSERT INTO {t} (id, name, price) VALUES ($1, $2, $3)", 1, "pen", price) == 1
    await db.execute_many(f"INSERT INTO {t} (id, name) VALUES ($1, $2)", [(2, "ink"), (3, "nib")])
    row = await db.fetch_one(f"SELECT id, name FROM {t} WHERE id = $1", 1)
    assert row == {"id": 1, "name": "pen"}
    assert isinstance(row, dict) and row.name == "pen" and row["id"] == 1  # columns read as attributes too
    assert not hasattr(row, "price")
    with pytest.raises(AttributeError):
        _ = row.price
    jinja2 = pytest.importorskip("jinja2")
    assert jinja2.Environment(autoescape=True).from_string("{{ row.id }}: {{ row.name }}").render(row=row) == "1: pen"
    assert await db.fetch_one(f"SELECT * FROM {t} WHERE id = $1", 99) is None
    assert await db.fetch_all(f"SELECT id FROM {t} ORDER BY id") == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert await db.fetch_val(f"SELECT count(*) FROM {t}") == 3
    assert await db.fetch_val(f"SELECT id, name FROM {t} WHERE id = 2", column=1) == "ink"
    assert await db.execute(f"UPDATE {t} SET name = $1 WHERE id > $2", "x", 1) == 2


async def test_fetch_many_runs_a_query_per_argument_set_in_order(db):
    t = db.table
    await db.execute_many(f"INSERT INTO {t} (id, name) VALUES ($1, $2)", [(n, f"n{n}") for n in range(1, 6)])
    lookup = f"SELECT id, name FROM {t} WHERE id = $1"
    assert await db.fetch_many(lookup, [(4,), (2,), (99,), (4,)]) == [
        {"id": 4, "name": "n4"},
        {"id": 2, "name": "n2"},
        {"id": 4, "name": "n4"},
    ]
    assert await db.fetch_many(lookup, []) == []
    async with db.connection() as conn:  # on a held connection, and from a generator
        rows = await conn.fetch_many(f"SELECT id FROM {t} WHERE id > $1 ORDER BY id", ((n,) for n in (3, 4)))
    assert rows == [{"id": 4}, {"id": 5}, {"id": 5}]


async def test_a_batch_is_one_unit(db):
    # a run that fails undoes the runs before it, for execute_many and fetch_many alike, on both backends
    t = db.table
    insert = f"INSERT INTO {t} (id, name) VALUES ($1, $2)"
    with pytest.raises(Exception, match=r"(?i)unique|constraint"):
        await db.execute_many(insert, [(1, "a"), (2, "b"), (1, "again")])
    with pytest.raises(Exception, match=r"(?i)unique|constraint"):
        await db.fetch_many(insert + " RETURNING id", [(3, "c"), (3, "again")])
    assert await db.fetch_val(f"SELECT count(*) FROM {t}") == 0
    async with db.transaction():  # inside a transaction, a failed batch leaves the statements before it alone
        await db.execute(insert, 7, "kept")
        with pytest.raises(Exception, match=r"(?i)unique|constraint"):
            await db.execute_many(insert, [(8, "x"), (8, "again")])
        if db.dialect == "sqlite":  # PostgreSQL's whole transaction is aborted by the error; SQLite's is not
            assert await db.fetch_many(f"SELECT id FROM {t} WHERE id = $1", [(7,), (8,)]) == [{"id": 7}]


async def test_iterate_streams_rows_in_batches(db):
    await db.execute_many(f"INSERT INTO {db.table} (id, name) VALUES ($1, $2)", [(n, f"n{n}") for n in range(250)])
    seen = [row["id"] async for row in db.iterate(f"SELECT id FROM {db.table} ORDER BY id", batch=32)]
    assert seen == list(range(250))


async def test_a_path_parameter_string_finds_an_integer_key(db):
    await db.execute(f"INSERT INTO {db.table} (id, name) VALUES ($1, $2)", 7, "seven")
    assert (await db.fetch_one(f"SELECT name FROM {db.table} WHERE id = $1", "7")) == {"name": "seven"}


async def test_a_value_the_database_refuses_is_an_invalid_argument_naming_its_position(db, caplog):
    t = db.table
    await db.execute(f"INSERT INTO {t} (id, name) VALUES ($1, $2)", 1, "one")
    lookup = f"SELECT name FROM {t} WHERE name = $1 AND id = $2"
    for refused in (10**30, {"a": 1}):  # past any integer column; a value no driver binds
        with pytest.raises(InvalidQueryArgument) as caught:
            await db.fetch_one(lookup, "one", refused)
        assert (caught.value.status, caught.value.position, caught.value.extra) == (422, 2, {"argument": 2})
        assert "SELECT" not in caught.value.detail and str(refused) not in caught.value.detail
    assert caplog.records[-1].levelname == "WARNING" and caplog.records[-1].name == "cello.database"
    with pytest.raises(InvalidQueryArgument, match=r"\$1"):
        await db.fetch_many(f"SELECT name FROM {t} WHERE id = $1", [(1,), (10**30,)])
    with pytest.raises(InvalidQueryArgument):
        async for _ in db.iterate(f"SELECT name FROM {t} WHERE id = $1", 10**30):
            pass

    async def insert_two_in_a_transaction() -> None:
        async with db.transaction():
            await db.execute(f"INSERT INTO {t} (id, name) VALUES ($1, $2)", 2, "two")
            await db.execute(f"INSERT INTO {t} (id, name) VALUES ($1, $2)", 10**30, "huge")

    with pytest.raises(InvalidQueryArgument):  # inside a transaction: rolled back, and the connection goes on
        await insert_two_in_a_transaction()
    assert await db.fetch_all(f"SELECT id FROM {t}") == [{"id": 1}]
    with pytest.raises(Exception, match=r"(?i)syntax") as caught:  # the statement's own fault stays as it was
        await db.fetch_one(f"SELEC name FROM {t} WHERE id = $1", 1)
    assert not isinstance(caught.value, InvalidQueryArgument)


async def test_transactions_commit_roll_back_and_nest(db):
    t = db.table
    insert = f"INSERT INTO {t} (id, name) VALUES ($1, $2)"

    async def insert_then_fail(row_id: int, error: Exception) -> None:
        async with db.transaction():
            await db.execute(insert, row_id, "x")
            raise error

    with pytest.raises(KeyError):
        await insert_then_fail(1, KeyError("rolled back"))
    assert await db.fetch_val(f"SELECT count(*) FROM {t}") == 0
    async with db.transaction() as conn:
        await db.execute(insert, 1, "a")
        async with db.transaction():  # a savepoint
            await conn.execute(insert, 2, "b")
        with pytest.raises(ValueError):
            await insert_then_fail(3, ValueError("only the savepoint is rolled back"))
    assert [r["id"] for r in await db.fetch_all(f"SELECT id FROM {t} ORDER BY id")] == [1, 2]


async def test_a_failed_statement_rolls_back_its_transaction(db):
    insert = f"INSERT INTO {db.table} (id, name) VALUES ($1, $2)"

    async def insert_twice() -> None:
        async with db.transaction():
            await db.execute(insert, 1, "a")
            await db.execute(insert, 1, "duplicate")

    with pytest.raises(Exception, match=r"(?i)unique|constraint"):
        await insert_twice()
    assert await db.fetch_val(f"SELECT count(*) FROM {db.table}") == 0


async def test_a_transaction_belongs_to_its_task(db):
    # a concurrent task does not see (or join) another task's uncommitted transaction
    t = db.table
    started, release = asyncio.Event(), asyncio.Event()

    async def writer():
        async with db.transaction():
            await db.execute(f"INSERT INTO {t} (id, name) VALUES (1, 'w')")
            started.set()
            await release.wait()
            raise RuntimeError("roll back")

    task = asyncio.ensure_future(writer())
    await started.wait()
    if db.dialect == "postgresql":  # SQLite's writer holds the file lock: readers see the last commit
        assert await db.fetch_val(f"SELECT count(*) FROM {t}") == 0
    release.set()
    with pytest.raises(RuntimeError):
        await task
    assert await db.fetch_val(f"SELECT count(*) FROM {t}") == 0


async def test_a_task_cancelled_while_its_transaction_waits_for_the_lock_leaves_none_open(tmp_path):
    # SQLite: BEGIN IMMEDIATE waits in the connection's thread for the write lock; a task cancelled meanwhile must
    # not leave that connection inside a transaction, holding the lock for every later writer
    async with Database(f"sqlite:///{tmp_path}/lock.db", pool_size=4, command_timeout=2) as db:
        await db.execute("CREATE TABLE items (id integer PRIMARY KEY)")
        holding, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with db.transaction(immediate=True):
                await db.execute("INSERT INTO items VALUES (1)")
                holding.set()
                await release.wait()

        async def waiter() -> None:
            async with db.transaction(immediate=True):
                await db.execute("INSERT INTO items VALUES (2)")

        held = asyncio.ensure_future(holder())
        await holding.wait()
        waiting = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.2)  # its BEGIN IMMEDIATE waits for the holder's lock
        waiting.cancel()
        release.set()
        await held
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for n in range(3, 8):  # more writes than connections: each of the pool's writes again, at once
            await db.execute("INSERT INTO items VALUES ($1)", n)
        assert [row["id"] for row in await db.fetch_all("SELECT id FROM items ORDER BY id")] == [1, 3, 4, 5, 6, 7]


async def test_values_round_trip(url):
    async with Database(url) as db:
        kind = "uuid" if db.dialect == "postgresql" else "text"
        table = f"kinds_{uuid.uuid4().hex[:10]}"
        await db.execute(f"CREATE TABLE {table} (u {kind}, d date, n numeric, t text)")
        try:
            key, day = uuid.uuid4(), datetime.date(2026, 11, 26)
            await db.execute(f"INSERT INTO {table} VALUES ($1, $2, $3, $4)", key, day, decimal.Decimal("1.25"), "é")
            row = await db.fetch_one(f"SELECT * FROM {table}")
            assert str(row["u"]) == str(key) and str(row["d"]) == "2026-11-26" and row["t"] == "é"
            assert decimal.Decimal(str(row["n"])) == decimal.Decimal("1.25")
        finally:
            await db.execute(f"DROP TABLE {table}")


def test_rows_are_returned_from_handlers_as_json(url):
    db = Database(url)
    app = App()
    db.attach(app)

    @app.get("/now")
    async def now():
        if db.dialect == "postgresql":
            return await db.fetch_one("SELECT 1 AS n, DATE '2026-11-26' AS d, 2.50::numeric AS price, "
                                      "'3f2504e0-4f89-11d3-9a0c-0305e82c3301'::uuid AS u")  # fmt: skip
        return await db.fetch_one("SELECT 1 AS n, '2026-11-26' AS d, '2.50' AS price, "
                                  "'3f2504e0-4f89-11d3-9a0c-0305e82c3301' AS u")  # fmt: skip

    with TestClient(app) as client:
        assert client.get("/now").json() == {"n": 1, "d": "2026-11-26", "price": "2.50",
                                             "u": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}  # fmt: skip


def test_attached_to_an_app_with_injected_transactions(url):
    db = Database(url)
    app = App()
    app.enable_health_checks()
    table = f"notes_{uuid.uuid4().hex[:10]}"

    @app.on_startup
    async def schema():
        await db.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, body text)")

    @app.on_shutdown
    async def drop():
        await db.execute(f"DROP TABLE {table}")

    db.attach(app)  # after the hooks that use it: shutdown hooks run in the order they were added

    @app.post("/notes/{note_id:int}")
    async def add(note_id: int, body: str, fail: bool = False, conn: Connection = Depends(db.request_transaction)):
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", note_id, body)
        if fail:
            raise ValueError("the whole request is rolled back")
        return {"id": note_id}

    @app.get("/notes")
    async def notes(conn: Connection = Depends(db.request_connection)):
        return await conn.fetch_all(f"SELECT * FROM {table} ORDER BY id")

    with TestClient(app) as client:
        assert client.post("/notes/1", params={"body": "kept"}).status_code == 200
        assert client.post("/notes/2", params={"body": "lost", "fail": True}).status_code == 500
        assert client.get("/notes").json() == [{"id": 1, "body": "kept"}]
        ready = client.get("/health/ready").json()
        assert ready["checks"]["database"]["status"] == "pass"
    assert not db._pool.opened if db.dialect == "postgresql" else db._pool.idle is None  # closed at shutdown


async def test_an_exhausted_pool_answers_unavailable_within_the_acquire_timeout(url):
    async with Database(url, pool_size=1, acquire_timeout=0.3, breaker_threshold=0) as db:
        async with db.connection():
            holder = asyncio.ensure_future(asyncio.sleep(0))
            await holder

            async def other_task():
                return await db.fetch_val("SELECT 1")

            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable) as refused:
                await asyncio.ensure_future(other_task())
            assert time.monotonic() - started < 3
        assert refused.value.status == 503 and refused.value.headers == [("retry-after", "1")]
        assert await db.fetch_val("SELECT 1") == 1  # free again


@pytest.fixture
def postgres():
    pytest.importorskip("asyncpg")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.mark.services
async def test_a_statement_past_the_command_timeout_is_cancelled(postgres):
    async with Database(postgres, pool_size=2, command_timeout=0.5, breaker_threshold=0) as db:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            await db.fetch_val("SELECT pg_sleep(5)")

        async def on_a_held_connection() -> None:
            async with db.connection() as conn:
                assert await conn.fetch_val("SELECT 1") == 1
                await conn.fetch_val("SELECT pg_sleep(5)")

        with pytest.raises(DatabaseUnavailable, match="past the command timeout"):
            await on_a_held_connection()
        assert time.monotonic() - started < 3
        assert await db.fetch_val("SELECT 1") == 1


@pytest.mark.services
async def test_a_database_that_stops_answering_is_given_up_on_after_the_command_timeout(postgres):
    # the server process is frozen (SIGSTOP): no statement_timeout can answer; the pool's watchdog does
    async with Database(postgres, pool_size=1, command_timeout=0.5, breaker_threshold=0) as db:
        frozen: list[int] = []

        async def on_a_held_connection() -> None:
            async with db.connection() as conn:  # a new connection (no restart), then frozen in turn
                freeze(await conn.fetch_val("SELECT pg_backend_pid()"))
                await conn.fetch_val("SELECT 1")

        def freeze(pid: int) -> None:
            try:
                os.kill(pid, signal.SIGSTOP)
            except PermissionError:
                pytest.skip("freezing a PostgreSQL server process needs the right to signal it")
            frozen.append(pid)

        try:
            freeze(await db.fetch_val("SELECT pg_backend_pid()"))
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match=r"did not answer within 0\.5 s"):
                await db.fetch_val("SELECT 1")
            with pytest.raises(DatabaseUnavailable, match=r"did not answer within 0\.5 s"):
                await on_a_held_connection()
            assert time.monotonic() - started < 6
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        assert await db.fetch_val("SELECT pg_backend_pid()") not in frozen


async def test_an_unreachable_postgres_is_unavailable_then_the_breaker_opens():
    pytest.importorskip("asyncpg")
    db = Database("postgresql://postgres@127.0.0.1:1/none", connect_timeout=1, breaker_threshold=2, breaker_reset=30)
    for _ in range(2):
        with pytest.raises(DatabaseUnavailable):
            await db.fetch_val("SELECT 1")
    started = time.monotonic()
    with pytest.raises(CircuitOpenError):
        await db.fetch_val("SELECT 1")
    assert time.monotonic() - started < 0.5  # refused at once
    assert await db.ping() is False


def test_an_unreachable_database_is_a_503_problem_naming_nothing():
    pytest.importorskip("asyncpg")
    db = Database("postgresql://secret-user:hunter2@127.0.0.1:1/none", connect_timeout=1)
    app = App()

    @app.get("/users/{user_id}")
    async def user(user_id: str):
        return await db.fetch_one("SELECT * FROM users WHERE id = $1", user_id)

    with TestClient(app) as client:
        response = client.get("/users/1")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text and "secret-user" not in response.text and "5432" not in response.text


def test_a_database_down_at_startup_does_not_stop_the_app():
    pytest.importorskip("asyncpg")
    db = Database("postgresql://postgres@127.0.0.1:1/none", connect_timeout=1)
    app = App()
    app.enable_health_checks()
    db.attach(app)

    @app.get("/")
    def index():
        return {"up": True}

    with TestClient(app) as client:
        assert client.get("/").json() == {"up": True}
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["status"] == "fail"


def test_unsupported_urls_and_sizes_are_refused_at_once():
    from cello import ConfigurationError

    with pytest.raises(ConfigurationError):
        Database("mysql://localhost/db")
    with pytest.raises(ConfigurationError):
        Database("sqlite:///:memory:", pool_size=0)


async def test_sqlite_in_memory_is_one_shared_database():
    async with Database("sqlite:///:memory:") as db:
        await db.execute("CREATE TABLE t (x integer)")
        await asyncio.gather(*(db.execute("INSERT INTO t VALUES ($1)", n) for n in range(20)))
        assert await db.fetch_val("SELECT count(*) FROM t") == 20


async def test_session_settings_on_a_held_connection_do_not_leak(url):
    if not url.startswith("postgresql"):
        pytest.skip("session settings are PostgreSQL's")
    async with Database(url, pool_size=1) as db:
        async with db.connection() as conn:
            await conn.execute("SET application_name = 'leaked'")
            assert await conn.fetch_val("SHOW application_name") == "leaked"
        assert await db.fetch_val("SHOW application_name") != "leaked"  # reset when it went back
