"""What FastAPI and Starlette users write out of habit, which must work in Cello too (tests/test_fastapi_habits.py):
models returned without a return annotation, ``Query(...)`` for "required", ``response_model=``,
``await request.json()`` / ``await request.body()``, ``HTTPException(status_code=...)``."""

from __future__ import annotations

import dataclasses

import msgspec
import pydantic

from cello import App, Body, Form, HTTPException, Query, Request

app = App()


class Item(pydantic.BaseModel):
    name: str
    price: float


class UserIn(pydantic.BaseModel):
    name: str
    password: str


class UserOut(pydantic.BaseModel):
    name: str


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Tag:
    label: str


@app.get("/__ready")
def ready():
    return "ok"


# -- models returned without a return annotation ------------------------------------------------------------


@app.get("/model")
def a_model():
    return Item(name="pen", price=1.5)


@app.get("/models")
async def models():
    return [Item(name="pen", price=1.5), Item(name="ink", price=3)]


@app.get("/nested")
def nested():
    return {"item": Item(name="pen", price=1.5), "point": Point(1, 2), "tag": Tag("new")}


@app.post("/created")
def created():
    return Item(name="pen", price=1.5), 201


# -- Ellipsis for "required" ---------------------------------------------------------------------------------


@app.get("/search")
def search(q: str = Query(...), limit: int = Query(10)):
    return {"q": q, "limit": limit}


@app.post("/login")
def login(username: str = Form(...)):
    return {"username": username}


@app.post("/note")
def note(text: str = Body(..., embed=True)):
    return {"text": text}


# -- response_model ------------------------------------------------------------------------------------------


@app.post("/users", response_model=UserOut, status_code=201)
def create_user(user: UserIn):
    return user  # the password must not leave


@app.get("/users/raw", response_model=UserOut)
def raw_user():
    return {"name": "ada", "password": "secret"}


@app.get("/users/many", response_model=list[UserOut])
def many_users():
    return [UserIn(name="ada", password="a"), {"name": "bob", "password": "b"}]


@app.get("/users/as-returned", response_model=None)
def as_returned() -> UserOut:
    return {"name": "ada", "extra": True}  # type: ignore[return-value]


# -- Starlette's request and exception spellings -------------------------------------------------------------


@app.post("/starlette/json")
async def starlette_json(request: Request):
    return {"received": await request.json()}


@app.post("/starlette/body")
async def starlette_body(request: Request):
    body = await request.body()
    return {"length": len(body), "same": body == request.body}


@app.post("/flask/body")
def flask_body(request: Request):
    return {"length": len(request.body()), "plain": len(request.body)}


@app.get("/missing/{key}")
def missing(key: str):
    raise HTTPException(status_code=404, detail=f"No item {key}")
