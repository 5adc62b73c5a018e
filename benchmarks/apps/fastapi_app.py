"""FastAPI, served by uvicorn with uvloop and httptools. Default settings."""

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

app = FastAPI()


@app.get("/")
async def hello():
    return {"message": "Hello, World!"}


@app.get("/users/{id}")
async def user(id: str):
    return {"id": id}


@app.post("/echo")
async def echo(request: Request):
    return await request.json()


# Typed route: path int + query + pydantic body + one dependency (Annotated, the style FastAPI documents).
class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


async def get_settings() -> dict:
    return {"currency": "EUR"}


@app.post("/items/{item_id}")
async def typed(item_id: int, item: Item, settings: Annotated[dict, Depends(get_settings)], limit: int = 10):
    return {
        "item_id": item_id,
        "name": item.name,
        "price": item.price,
        "tags": item.tags,
        "limit": limit,
        "currency": settings["currency"],
    }
