"""A chat with rooms: WebSockets joined to rooms of a broadcast hub that reaches every worker and machine.

Run it with ``python examples/chat.py`` and open http://127.0.0.1:8000/ in two browser windows. With
``REDIS_URL=redis://127.0.0.1:6379 WORKERS=2 python examples/chat.py`` the rooms span both worker processes (and
any other server started with the same Redis): a message reaches everyone in the room, whichever process their
connection landed on.
"""

from __future__ import annotations

import os
from pathlib import Path

from cello import App, HTMLResponse, Response, WebSocket
from cello.realtime import Broadcast

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    from cello.stores.redis import RedisStore

    hub = Broadcast(RedisStore(REDIS_URL, prefix="chat-example:"))
else:
    hub = Broadcast()  # memory: one process

app = App(on_shutdown=[hub.close], websocket_max_size=16 * 1024)
PAGE = (Path(__file__).resolve().parent / "chat" / "index.html").read_text()


@app.get("/")
def index():
    return HTMLResponse(PAGE)


@app.get("/app.js")
def script():
    return Response((Path(__file__).resolve().parent / "chat" / "app.js").read_bytes(), media_type="text/javascript")


@app.websocket("/ws/{room}")
async def chat(ws: WebSocket, room: str, name: str = "guest"):
    name = name[:32] or "guest"
    await ws.accept()
    await ws.send_text(f"* welcome to {room}, {name} (worker {os.getpid()})")
    await hub.join(room, ws)
    try:
        await hub.publish(room, f"* {name} joined")
        async for message in ws:
            await hub.publish(room, f"{name}: {message.text[:2000]}")
    finally:
        await hub.leave(room, ws)
        await hub.publish(room, f"* {name} left")


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")),
            workers=int(os.environ.get("WORKERS", "1")))  # fmt: skip
