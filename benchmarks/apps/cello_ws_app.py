"""Cello's WebSocket routes for benchmarks/ws.py: an echo, and a room every message is broadcast to."""

from cello import App
from cello.realtime import Broadcast

app = App(openapi=False)
hub = Broadcast()


@app.get("/")
async def hello(request):
    return {"message": "Hello, World!"}


@app.websocket("/ws/echo")
async def echo(ws):
    async for message in ws:
        await ws.send_text(message.text)


@app.websocket("/ws/room")
async def room(ws):
    await ws.accept()
    await hub.join("room", ws)
    try:
        async for message in ws:  # what one member says, every member hears
            await hub.publish("room", message.text)
    finally:
        await hub.leave("room", ws)
