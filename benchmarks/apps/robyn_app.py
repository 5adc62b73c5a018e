"""Robyn, on its own server.

Run as ``python robyn_app.py --processes 1 --workers 1 ...``; Robyn reads
those flags from the command line itself, so host and port come from the
environment.
"""

import os

from robyn import Request, Robyn

app = Robyn(__file__)


@app.get("/")
async def hello(request: Request):
    return {"message": "Hello, World!"}


@app.get("/users/:id")
async def user(request: Request):
    return {"id": request.path_params["id"]}


@app.post("/echo")
async def echo(request: Request):
    return request.json()


if __name__ == "__main__":
    app.start(host=os.environ.get("BENCH_HOST", "127.0.0.1"), port=int(os.environ["BENCH_PORT"]))
