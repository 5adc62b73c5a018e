"""WebSocket and SSE routes on one app, served on every face by the tests: echo, JSON, path and query parameters,
dependencies, the seed's blocking chat, authentication and guards on the handshake, closes and errors; event
streams from async and sync generators, keep-alive comments, Last-Event-ID, and generators whose client left."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated

from security_app import SECRET

from cello import App, Depends, EventSourceResponse, Header, HTTPException, ServerSentEvent, WebSocket
from cello.middleware import JwtAuth, JwtConfig
from cello.security import Role

app = App(websocket_max_size=64 * 1024)
jwt_config = JwtConfig(secret=SECRET)
clients = set()


@app.get("/__ready")
def ready():
    return "ok"


@app.get("/plain")
def plain():
    return {"http": True}


@app.websocket("/ws/echo")
async def echo(ws: WebSocket):
    async for message in ws:
        if message.is_text:
            await ws.send_text(message.text)
        else:
            await ws.send_bytes(message.bytes)


@app.websocket("/ws/json")
async def json_echo(ws):
    while True:
        value = await ws.receive_json()
        await ws.send_json({"got": value})


def greeting() -> str:
    return "hello"


@app.websocket("/ws/rooms/{room}")
async def room(ws, room: str, name: str = "anon", word: str = Depends(greeting)):
    await ws.accept()
    await ws.send_json({"room": room, "name": name, "word": word, "path": ws.path})
    await ws.close(4000, "done")


# the seed's snippet, unchanged but for the route path
@app.websocket("/ws/chat")
def chat(ws):
    clients.add(ws)
    ws.send_text("Welcome!")
    try:
        while True:
            msg = ws.recv()
            if msg is None:
                break
            for client in clients:
                if client != ws:
                    client.send_text(f"User: {msg.text}")
    finally:
        clients.discard(ws)


@app.websocket("/ws/secure", middleware=[JwtAuth(jwt_config)], guards=[Role("admin")])
async def secure(ws):
    await ws.send_json({"user": ws.user.id})


@app.websocket("/ws/refuse")
async def refuse(ws):
    raise HTTPException(403, "Not today.")


@app.websocket("/ws/crash")
async def crash(ws):
    await ws.send_text("about to fail")
    raise RuntimeError("a bug")


@app.websocket("/ws/subprotocol")
async def subprotocol(ws):
    await ws.accept(subprotocol="chat.v2" if "chat.v2" in ws.subprotocols else None)
    await ws.send_text(ws.subprotocol or "none")


@app.websocket("/ws/flood")
async def flood(ws):
    chunk = "x" * 65536
    while True:  # more than any socket buffer holds: a client that does not read makes this wait
        await ws.send_text(chunk)


@app.websocket("/ws/slow-close")
async def slow(ws):
    await ws.send_text("ready")
    await asyncio.sleep(30)


# -- Server-Sent Events ------------------------------------------------------------------------------------------

# where generators record that their `finally` ran: the test process reads it (a file, since servers are processes)
FINALLY_DIR = Path(os.environ.get("CELLO_TEST_FINALLY_DIR", tempfile.gettempdir())) / "cello-sse-finally"
FINALLY_DIR.mkdir(exist_ok=True)


@app.get("/sse/count")
async def count(last_event_id: Annotated[str | None, Header()] = None, limit: int = 3):
    start = int(last_event_id or 0)

    async def events():
        for n in range(start + 1, start + limit + 1):
            yield ServerSentEvent({"n": n}, event="tick", id=str(n))
        yield "done"

    return EventSourceResponse(events(), retry=2000)


@app.get("/sse/sync")
def sync_events():
    def events():
        yield "first"
        time.sleep(0.05)
        yield ServerSentEvent("multi\nline", comment="two lines")

    return EventSourceResponse(events())


@app.get("/sse/quiet")
async def quiet():
    async def events():
        yield "hello"
        await asyncio.sleep(0.35)
        yield "after a pause"

    return EventSourceResponse(events(), ping=0.1)


@app.get("/sse/forever/{tag}")
async def forever(tag: str):
    async def events():
        try:
            yield "started"
            while True:
                await asyncio.sleep(3600)  # waiting, not sending: only the disconnect signal can end this
        finally:
            (FINALLY_DIR / tag).write_text("closed")

    return EventSourceResponse(events(), ping=None)


# -- an app whose silent peers are closed ---------------------------------------------------------------------------

idle_app = App(websocket_idle_timeout=0.5)


@idle_app.get("/__ready")
def idle_ready():
    return "ok"


@idle_app.websocket("/ws/echo")
async def idle_echo(ws):
    async for message in ws:
        await ws.send_text(message.text)
