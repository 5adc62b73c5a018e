"""Litestar, served by granian (ASGI interface). Default settings."""

from typing import Any

from litestar import Litestar, Request, get, post


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


app = Litestar(route_handlers=[hello, user, echo])
