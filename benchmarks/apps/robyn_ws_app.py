"""Robyn's WebSocket echo for benchmarks/ws.py (its room broadcast API differs too much to compare fairly)."""

import os

from robyn import Request, Robyn

app = Robyn(__file__)


@app.get("/")
async def hello(request: Request):
    return {"message": "Hello, World!"}


@app.websocket("/ws/echo")
async def echo(websocket):
    while True:
        await websocket.send_text(await websocket.receive_text())


if __name__ == "__main__":
    app.start(host=os.environ.get("BENCH_HOST", "127.0.0.1"), port=int(os.environ["BENCH_PORT"]))
