"""Cello, the framework in this repository.

Served by the granian CLI (``granian --interface rsgi cello_app:app``) and by
the framework's own ``app.run()`` (see cello_run.py).
"""

import msgspec

from cello import App, Depends

app = App()


@app.get("/")
async def hello(request):
    return {"message": "Hello, World!"}


@app.get("/users/{id}")
async def user(request):
    return {"id": request.params["id"]}


@app.post("/echo")
async def echo(request):
    return request.json()


# Sync handler called directly on the event loop thread.
@app.get("/sync-inline", threadpool=False)
def sync_inline(request):
    return {"message": "Hello, World!"}


# Sync handler dispatched to the thread pool (the default for sync handlers).
@app.get("/sync-pooled")
def sync_pooled(request):
    return {"message": "Hello, World!"}


# Typed route: path int + query + msgspec body + one dependency, each resolved
# from the signature (the same route is in fastapi_app.py and litestar_app.py).
class Item(msgspec.Struct):
    name: str
    price: float
    tags: list[str] = []


async def get_settings() -> dict:
    return {"currency": "EUR"}


@app.post("/items/{item_id:int}")
async def typed(item_id: int, item: Item, limit: int = 10, settings: dict = Depends(get_settings)):
    return {
        "item_id": item_id,
        "name": item.name,
        "price": item.price,
        "tags": item.tags,
        "limit": limit,
        "currency": settings["currency"],
    }


# The same request read by hand: what the typed route costs over plain request access.
@app.post("/raw-items/{item_id:int}")
async def untyped(request):
    item = request.json()
    return {
        "item_id": request.params["item_id"],
        "name": item["name"],
        "price": item["price"],
        "tags": item["tags"],
        "limit": int(request.query.get("limit", "10")),
        "currency": (await get_settings())["currency"],
    }


# Hello behind a realistic middleware stack, in the order docs/middleware.md recommends: request id, access log
# (off), security headers (the default preset), CORS and a memory rate limit. On a blueprint, so the other
# scenarios stay bare.
from cello import Blueprint  # noqa: E402
from cello.middleware import CORS, AccessLog, RateLimit, RequestId, SecurityHeaders  # noqa: E402

stack = Blueprint("/stack")
stack.use(RequestId())
stack.use(AccessLog())  # logger cello.access stays at WARNING: off
stack.use(SecurityHeaders())
stack.use(CORS(allow_origins=["https://app.example"]))
stack.use(RateLimit(requests=10**9, window=60))  # never refuses: the cost of counting is what is measured


@stack.get("/")
async def stack_hello(request):
    return {"message": "Hello, World!"}


app.register_blueprint(stack)


# Hello behind JWT authentication (HS256), and behind JWT plus a role guard: what verifying a token and checking
# a role add to a request. The token the load generator sends is in benchmarks/wrk/jwt.lua.
from cello.middleware import JwtAuth, JwtConfig  # noqa: E402
from cello.security import Role  # noqa: E402

secure = Blueprint("/secure")
secure.use(JwtAuth(JwtConfig(secret=b"benchmark-secret-of-at-least-32-bytes!!")))


@secure.get("/")
async def secure_hello(request):
    return {"message": "Hello, World!"}


@secure.get("/admin", guards=[Role("admin")])
async def secure_admin(request):
    return {"message": "Hello, World!"}


app.register_blueprint(secure)
