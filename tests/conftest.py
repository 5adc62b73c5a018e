"""Shared fixtures: the service marker policy and the engine faces every HTTP test runs on.

``face_client`` is parametrized over the in-process client and real servers on loopback ports: granian (RSGI,
the default face), uvicorn and hypercorn (ASGI). Servers start on first use and stop at the end of the session.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cello.testing import LiveServer, TestClient

TESTS_DIR = Path(__file__).resolve().parent
APPS_DIR = TESTS_DIR / "apps"

# test apps are imported by name, in this process and in server subprocesses alike
sys.path.insert(0, str(APPS_DIR))
APPS_ENV = {"PYTHONPATH": os.pathsep.join([str(APPS_DIR), os.environ.get("PYTHONPATH", "")])}

FACES = ["inprocess", "granian", "uvicorn", "hypercorn"]


class Servers:
    """Lazily started live servers keyed by (face, target), shared by the whole session."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, str], LiveServer] = {}

    def get(self, face: str, target: str) -> LiveServer:
        key = (face, target)
        if key not in self._running:
            # "<server>-workers": the same server in cluster mode (two workers), for the reliability suite
            name, workers = (face.removesuffix("-workers"), 2) if face.endswith("-workers") else (face, 1)
            server = LiveServer(target, name, env=APPS_ENV, ready_path="/__ready", workers=workers)  # type: ignore[arg-type]
            self._running[key] = server.start()
        return self._running[key]

    def stop_all(self) -> None:
        for server in self._running.values():
            server.stop()
        self._running.clear()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    pool = Servers()
    try:
        yield pool
    finally:
        pool.stop_all()


def _client_for(face: str, target: str, servers: Servers) -> Iterator[httpx.Client]:
    if face == "inprocess":
        module_name, _, attr = target.partition(":")
        module = __import__(module_name)
        with TestClient(getattr(module, attr)) as client:
            yield client
        return
    server = servers.get(face, target)
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield client


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(face: str, servers: Servers) -> Iterator[httpx.Client]:
    """A client for the core test app (tests/apps/core_app.py) on each face."""
    if face != "inprocess":
        pytest.importorskip({"granian": "granian", "uvicorn": "uvicorn", "hypercorn": "hypercorn"}[face])
    yield from _client_for(face, "core_app:app", servers)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that reach a real server carry the ``live`` marker, so ``-m "not live"`` runs in-process only."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        face_param = callspec.params.get("face") if callspec is not None else None
        uses_servers = "servers" in getattr(item, "fixturenames", ())
        if face_param == "inprocess":
            continue
        if uses_servers:
            item.add_marker(pytest.mark.live)


def _app_client(target: str, doc: str) -> Any:
    """A fixture giving a client for one test app (``module:attribute`` in tests/apps) on each face."""

    @pytest.fixture
    def fixture(face: str, servers: Servers) -> Iterator[httpx.Client]:
        yield from _client_for(face, target, servers)

    fixture.__doc__ = doc
    return fixture


typed_client = _app_client("typed_app:app", "tests/apps/typed_app.py: uploads, forms, background tasks.")
mw_client = _app_client("middleware_app:app", "tests/apps/middleware_app.py: the middleware suite.")
sec_client = _app_client("security_app:app", "tests/apps/security_app.py: JWT, Basic, API keys, guards.")
session_client = _app_client("sessions_app:app", "tests/apps/sessions_app.py: sessions and CSRF.")
headers_client = _app_client("headers_app:app", "tests/apps/headers_app.py: security headers.")
ws_client = _app_client("realtime_app:app", "tests/apps/realtime_app.py: WebSocket and SSE routes.")
habits_client = _app_client("habits_app:app", "tests/apps/habits_app.py: FastAPI habits that must work in Cello.")


@pytest.fixture
def seed_snippet(tmp_path: Path) -> Iterator[Path]:
    """The seed's "Database & Redis" snippet (tests/apps/seed_database_app.py) as a module ``seed_app`` in a folder
    of its own, its code as written, but its two addresses pointing at services of the test's own: a throwaway
    PostgreSQL database holding the ``users`` table (dropped afterwards) and a redis-server on a free port — so
    the suite never writes to a user's ``mydb`` or to their Redis."""
    import asyncio
    import uuid

    from _helpers import redis_server, require_service

    pytest.importorskip("asyncpg")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    database = f"cello_seed_{uuid.uuid4().hex[:12]}"
    asyncio.run(_postgres_admin(f"CREATE DATABASE {database}"))
    try:
        with redis_server(tmp_path) as redis:
            source = (APPS_DIR / "seed_database_app.py").read_text()
            for written, ours in (("postgresql://localhost/mydb", f"postgresql://localhost/{database}"),
                                  ("redis://localhost:6379", redis.url)):  # fmt: skip
                assert written in source
                source = source.replace(written, ours)
            folder = tmp_path / "seed"
            folder.mkdir()
            (folder / "seed_app.py").write_text(source)
            asyncio.run(_create_users(f"postgresql://localhost/{database}"))
            yield folder
    finally:
        sys.modules.pop("seed_app", None)
        asyncio.run(_postgres_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL database, dropped afterwards."""
    import asyncio
    import uuid

    from _helpers import require_service

    pytest.importorskip("asyncpg")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    database = f"cello_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_postgres_admin(f"CREATE DATABASE {database}"))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{database}"
    finally:
        asyncio.run(_postgres_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))


async def _postgres_admin(statement: str) -> None:
    import asyncpg

    admin = await asyncpg.connect("postgresql://localhost/postgres")
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _create_users(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE users (id integer PRIMARY KEY, name text, email text)")
        await connection.execute("INSERT INTO users VALUES (1, 'Ada', 'ada@example.org')")
    finally:
        await connection.close()


framework_client = _app_client("framework_routes_app:app", "tests/apps/framework_routes_app.py: framework routes.")
reference_client = _app_client("reference_app:app", "tests/apps/reference_app.py: the reference API's names.")
ordered_client = _app_client("framework_routes_app:ordered", "framework_routes_app.ordered: the canonical order.")


@pytest.fixture(scope="session")
def greeter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The gRPC example's modules (examples/grpc/greeter.proto), compiled by ``cello grpc-compile``:
    ``(greeter_pb2, greeter_pb2_grpc)``."""
    pytest.importorskip("grpc_tools")
    from cello.cli import main

    folder = tmp_path_factory.mktemp("greeter")
    proto = Path(__file__).resolve().parent.parent / "examples" / "grpc" / "greeter.proto"
    assert main(["grpc-compile", str(proto), "--out", str(folder)]) == 0
    sys.path.insert(0, str(folder))
    try:
        import greeter_pb2
        import greeter_pb2_grpc
    finally:
        sys.path.remove(str(folder))
    return greeter_pb2, greeter_pb2_grpc


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each kind the data layer serves: a SQLite file, and a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        yield request.getfixturevalue("postgres_database")
