"""BlackSheep, served by granian (ASGI interface). Default settings."""

from blacksheep import Application, Request, get, json, post

app = Application()


@get("/")
async def hello():
    return json({"message": "Hello, World!"})


@get("/users/{id}")
async def user(id: str):
    return json({"id": id})


@post("/echo")
async def echo(request: Request):
    return json(await request.json())
