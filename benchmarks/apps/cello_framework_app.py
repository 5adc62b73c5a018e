"""cello-framework, the unrelated Rust-core package published on PyPI.

It installs a module that is also called ``cello``. This file is run with
``python -I`` from that package's own venv, so neither the working directory
nor this repository's src/ can be on sys.path; the check below refuses to
start if the import resolved anywhere else.
"""

import os
import sys

import cello
from cello import App

if os.path.realpath(sys.prefix) not in os.path.realpath(cello.__file__):
    sys.exit(f"refusing to start: 'cello' was imported from {cello.__file__}, outside {sys.prefix}")

app = App()


@app.get("/")
async def hello(request):
    return {"message": "Hello, World!"}


@app.get("/users/{id}")
async def user(request):
    return {"id": request.params["id"]}


@app.post("/echo")
async def echo(request):
    return request.json()


if __name__ == "__main__":
    # env="production" and logs=False turn off its request logging and the
    # development-mode extras; workers=1 keeps it to a single process.
    app.run(
        host=os.environ.get("BENCH_HOST", "127.0.0.1"),
        port=int(os.environ["BENCH_PORT"]),
        workers=1,
        env="production",
        logs=False,
    )
