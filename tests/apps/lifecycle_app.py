"""A script-style app for the live tests: ``python lifecycle_app.py PORT`` serves it through ``app.run()``.

Its startup and shutdown hooks leave marker files (``startup-<pid>``, ``shutdown-<pid>``) in the directory named
by ``CELLO_MARKS_DIR``, so a test can see that they ran inside the worker processes. ``CELLO_RUN_OPTIONS`` (JSON)
holds extra keyword arguments for ``app.run``; ``CELLO_SHUTDOWN_SLEEP`` makes the shutdown hook hang, to prove
that a server which will not stop is still torn down.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from cello import App
from cello.realtime import EventSourceResponse

app = App()


def _mark(kind: str) -> None:
    marks = os.environ.get("CELLO_MARKS_DIR")
    if marks:
        (Path(marks) / f"{kind}-{os.getpid()}").write_text(str(os.getppid()))


@app.on_startup
def started() -> None:
    app.state["started"] = True
    _mark("startup")


@app.on_shutdown
def stopped() -> None:
    _mark("shutdown")
    time.sleep(float(os.environ.get("CELLO_SHUTDOWN_SLEEP", "0")))


@app.get("/__ready")
def ready() -> str:
    return "ok"


@app.get("/info")
def info(request):
    return {
        "pid": os.getpid(),
        "started": app.state.get("started", False),
        "scheme": request.scheme,
        "http_version": request.http_version,
        "module": __name__,
    }


@app.get("/events")
async def events():
    """An event stream that never ends by itself: only the client leaving or the server stopping ends it."""

    async def ticks():
        n = 0
        while True:
            n += 1
            yield {"n": n}
            await asyncio.sleep(0.1)

    return EventSourceResponse(ticks(), ping=1)


@app.websocket("/ws")
async def echo(ws):
    await ws.accept()
    while True:
        await ws.send_text(await ws.receive_text())


if __name__ == "__main__":
    options = json.loads(os.environ.get("CELLO_RUN_OPTIONS", "{}"))
    app.run(host="127.0.0.1", port=int(sys.argv[1]), **options)
