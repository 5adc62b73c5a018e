"""Litestar, served by granian (ASGI interface). Default settings."""

from typing import Any

import msgspec
from litestar import Litestar, Request, get, post
from litestar.di import Provide


@get("/")
async def hello() -> dict[str, str]:
    return {"message": "Hello, World!"}


@get("/users/{id:str}")
async def user(id: str) -> dict[str, str]:
    return {"id": id}


# Litestar answers POST with 201 by default; the other apps answer 200.
@post("/echo", status_code=200)
async def echo(request: Request) -> Any:
    return await request.json()


# Typed route: path int + query + msgspec body (`data`) + one dependency.
class Item(msgspec.Struct):
    name: str
    price: float
    tags: list[str] = []


async def get_settings() -> dict[str, str]:
    return {"currency": "EUR"}


@post("/items/{item_id:int}", status_code=200, dependencies={"settings": Provide(get_settings)})
async def typed(item_id: int, data: Item, settings: dict[str, str], limit: int = 10) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "name": data.name,
        "price": data.price,
        "tags": data.tags,
        "limit": limit,
        "currency": settings["currency"],
    }


app = Litestar(route_handlers=[hello, user, echo, typed])
