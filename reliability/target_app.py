"""The app the reliability suite attacks: every kind of input a Cello handler takes, behind the recommended
middleware stack.

Typed path, query, header and cookie parameters, JSON bodies (msgspec DTOs), forms, multipart uploads, a
streaming and an event-stream response, a WebSocket echo, a JWT-guarded route, and routes that need Redis.

With ``RELIABILITY_REDIS_URL`` set, the rate limiter, the response cache and the ``/counter`` routes use that
Redis; the limiter fails open (a Redis outage must not take down routes that do not need it) and ``/counter`` sits
behind a circuit breaker (a Redis outage answers a fast 503 there). Without it everything is in memory. With
``RELIABILITY_DATABASE_URL``, ``/users/{id}`` reads a PostgreSQL (or SQLite) table through ``Database``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Annotated

import msgspec

from cello import (
    App,
    Cookie,
    EventSourceResponse,
    Form,
    Header,
    HTTPException,
    JSONResponse,
    MultipartLimits,
    Query,
    ServerSentEvent,
    StreamingResponse,
    UploadFile,
    WebSocket,
)
from cello.enterprise import Database, DatabaseUnavailable, Redis
from cello.middleware import CircuitBreaker, JwtAuth, JwtConfig, RateLimitConfig
from cello.security import Role

SECRET = "reliability-secret-that-is-long-enough-for-hs256"
REDIS_URL = os.environ.get("RELIABILITY_REDIS_URL")
DATABASE_URL = os.environ.get("RELIABILITY_DATABASE_URL")
PREFIX = os.environ.get("RELIABILITY_PREFIX", "reliability:")

store = None
redis = None
if REDIS_URL:
    from cello.stores import RedisStore

    redis = Redis(REDIS_URL, prefix=PREFIX, socket_timeout=0.5, connect_timeout=0.5)
    store = RedisStore(redis, prefix=PREFIX)

app = App(
    body_timeout=float(os.environ.get("RELIABILITY_BODY_TIMEOUT", "30")),
    max_body_size=1024 * 1024,
    multipart=MultipartLimits(max_size=1024 * 1024, max_file_size=512 * 1024, max_parts=50),
    websocket_max_size=64 * 1024,
)
app.enable_request_id()
app.enable_cors(allow_origins=["https://app.example"], allow_credentials=True)
app.enable_security_headers()
app.enable_rate_limit(RateLimitConfig(requests=1_000_000, window=60, store=store, fail_open=True))
app.enable_caching(store=store, ttl=5)
app.enable_timeout(10.0)
app.enable_health_checks()
app.use(JwtAuth(JwtConfig(secret=SECRET, optional=True)))

redis_breaker = CircuitBreaker(name="redis", failure_threshold=3, reset_timeout=1.0)

db = None
if DATABASE_URL:
    db = Database(DATABASE_URL, pool_size=5, connect_timeout=1, command_timeout=2, acquire_timeout=1,
                  breaker_threshold=3, breaker_reset=1).attach(app)  # fmt: skip

    @app.on_startup
    async def users_table() -> None:
        try:
            async with db.transaction():
                if db.dialect == "postgresql":  # NOTE: every worker runs this at once; concurrent DDL collides
                    await db.execute("SELECT pg_advisory_xact_lock(20261126)")
                await db.execute(
                    "CREATE TABLE IF NOT EXISTS reliability_users (id integer PRIMARY KEY, name text NOT NULL)"
                )
                await db.execute("INSERT INTO reliability_users VALUES (1, 'ada') ON CONFLICT (id) DO NOTHING")
        except DatabaseUnavailable:
            pass  # the routes answer 503 until the database is back


class Address(msgspec.Struct, forbid_unknown_fields=True):
    street: Annotated[str, msgspec.Meta(max_length=200)]
    city: Annotated[str, msgspec.Meta(max_length=100)]


class Person(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    age: Annotated[int, msgspec.Meta(ge=0, le=150)]
    email: str | None = None
    tags: Annotated[list[str], msgspec.Meta(max_length=20)] = []
    address: Address | None = None


@app.get("/")
def index():
    return {"hello": "world"}


@app.get("/__ready")
def ready() -> str:
    return "ok"


@app.get("/pid")
def pid():
    return {"pid": os.getpid()}


@app.get("/items/{item_id:int}")
def item(item_id: int, q: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 10):
    return {"id": item_id, "q": q, "limit": limit}


@app.get("/users/{name}/posts/{post:uuid}")
async def post(name: str, post: str, tag: Annotated[list[str], Query()] = []):
    return {"name": name, "post": str(post), "tags": tag}


@app.get("/files/{path:path}")
def files(path: str):
    return {"path": path}


@app.get("/headers")
def headers(
    user_agent: Annotated[str | None, Header()] = None,
    x_count: Annotated[int | None, Header()] = None,
    session: Annotated[str | None, Cookie()] = None,
):
    return {"user_agent": user_agent, "count": x_count, "session": session}


@app.post("/people", status_code=201)
async def create_person(person: Person) -> Person:
    return person


@app.put("/people/{person_id:int}")
def replace_person(person_id: int, person: Person):
    return {"id": person_id, "person": person}


@app.post("/echo")
async def echo_json(payload: dict[str, object]):
    return payload


@app.post("/login")
def login(username: Annotated[str, Form(max_length=50)], password: Annotated[str, Form(max_length=100)]):
    return {"user": username, "password_length": len(password)}


@app.post("/upload")
async def upload(file: UploadFile, note: Annotated[str, Form(max_length=200)] = ""):
    digest = hashlib.sha256()
    async for chunk in file.stream():
        digest.update(chunk)
    return {"name": file.filename, "sha256": digest.hexdigest(), "note": note}


@app.delete("/items/{item_id:int}", status_code=204)
def delete_item(item_id: int):
    return None


@app.get("/stream", responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def stream(chunks: Annotated[int, Query(ge=0, le=100)] = 3):
    return StreamingResponse((f"chunk {n}\n".encode() for n in range(chunks)), media_type="text/plain")


@app.get("/events")
async def events(count: Annotated[int, Query(ge=0, le=20)] = 3) -> EventSourceResponse:
    async def generate():
        for n in range(count):
            yield ServerSentEvent({"n": n}, id=str(n))

    return EventSourceResponse(generate())


@app.get("/slow")
async def slow(seconds: Annotated[float, Query(ge=0, le=30)] = 1.0):
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.get("/admin/stats", guards=[Role("admin")])
def admin_stats():
    return {"users": 3}


@app.get("/counter/{name}")
async def read_counter(name: Annotated[str, msgspec.Meta(max_length=50)]):
    if redis is None:
        raise HTTPException(404, "No Redis configured.")
    async with redis_breaker:
        return {"name": name, "value": await redis.get(f"counter:{name}") or 0}


@app.post("/counter/{name}")
async def bump_counter(name: Annotated[str, msgspec.Meta(max_length=50)]):
    if redis is None:
        raise HTTPException(404, "No Redis configured.")
    async with redis_breaker:
        return {"name": name, "value": await redis.call("incr", redis.key(f"counter:{name}"))}


@app.get("/users/{user_id:int}")
async def user(user_id: int):
    if db is None:
        raise HTTPException(404, "No database configured.")
    row = await db.fetch_one("SELECT id, name FROM reliability_users WHERE id = $1", user_id)
    if row is None:
        raise HTTPException(404, f"There is no user {user_id}.")
    return JSONResponse(row, headers={"cache-control": "no-store"})  # always fresh: never from the cache


@app.websocket("/ws/echo")
async def ws_echo(ws: WebSocket):
    async for message in ws:
        if message.is_text:
            await ws.send_text(message.text)
        else:
            await ws.send_bytes(message.bytes)
