"""An event store served live over Server-Sent Events (tests/live/test_event_stream_live.py), on the SQLite file
EVENTS_DB: POST /deposits appends, GET /events replays from Last-Event-ID then follows."""

from __future__ import annotations

import os
from typing import Annotated

import msgspec

from cello import App, Header
from cello.enterprise.database import Database
from cello.patterns import EventStore

db = Database(f"sqlite:///{os.environ['EVENTS_DB']}")
store = EventStore(db)
app = App()
store.attach(app)


@store.event
class Deposited(msgspec.Struct):
    account: str
    amount: int


@app.post("/deposits")
async def deposit(deposit: Deposited) -> dict[str, int]:
    [recorded] = await store.append(deposit.account, [deposit])
    return {"position": recorded.position}


@app.get("/events")
async def events(last_event_id: Annotated[str | None, Header()] = None):
    return store.sse(last_event_id, poll=0.1)


@app.get("/")
def index() -> dict[str, str]:
    return {"events": "/events"}
