"""FastAPI's WebSocket routes for benchmarks/ws.py, written as its documentation teaches: an echo, and a room
kept in a set that every message is sent to."""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
members: set[WebSocket] = set()


@app.get("/")
async def hello():
    return {"message": "Hello, World!"}


@app.websocket("/ws/echo")
async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


@app.websocket("/ws/room")
async def room(websocket: WebSocket):
    await websocket.accept()
    members.add(websocket)
    try:
        while True:
            text = await websocket.receive_text()
            for member in list(members):
                try:
                    await member.send_text(text)
                except Exception:
                    members.discard(member)
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(websocket)
