"""The app the HTTP tests drive on every face: one route per behaviour under test."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

from cello import (
    App,
    Blueprint,
    FileResponse,
    HTMLResponse,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

app = App()
events: list[str] = []

DATA_DIR = Path(tempfile.mkdtemp(prefix="cello-core-app-"))
BLOB = bytes(range(256)) * 64  # 16 KiB, every byte value
(DATA_DIR / "blob.bin").write_bytes(BLOB)
(DATA_DIR / "hello.txt").write_text("hello file\n")


@app.on_startup
def started() -> None:
    app.state["started_pid"] = os.getpid()
    events.append("startup")


@app.get("/__ready")
def ready() -> str:
    return "ok"


@app.get("/")
async def hello(request):
    return {"message": "Hello, World!"}


@app.get("/state")
def state(request):
    return {"started": "started_pid" in request.app.state, "pid": os.getpid()}


# -- params -----------------------------------------------------------------------------------------------


@app.get("/cat/{name}")
def category(name: str):
    return {"name": name}


@app.get("/users/{user_id}/posts/{post_id}")
def user_post(request):
    return {"user_id": request.params["user_id"], "post_id": request.params["post_id"]}


@app.get("/items/{item_id:int}")
def item(request, item_id):
    return {"item_id": item_id, "type": type(item_id).__name__}


@app.get("/items/{slug}")
def item_slug(request, slug):
    return {"slug": slug}


@app.get("/price/{x:float}")
def price(request, x):
    return {"x": x}


@app.get("/things/{u:uuid}")
def thing(request, u):
    return {"u": str(u), "version": u.version}


@app.get("/files/{rest:path}")
def files(request, rest):
    return {"rest": rest}


# -- request views ----------------------------------------------------------------------------------------


@app.get("/echo/request")
def echo_request(request):
    client = request.client
    return {
        "method": request.method,
        "path": request.path,
        "url": str(request.url),
        "scheme": request.scheme,
        "http_version": request.http_version,
        "client_host": client.host if client else None,
        "query": request.query.multi_items(),
        "tags": request.query.getlist("tag"),
        "x_multi": request.headers.getlist("X-Multi"),
        "x_single": request.headers.get("x-SINGLE"),
        "cookies": request.cookies,
    }


@app.route("/echo/body", methods=["POST", "PUT", "PATCH", "DELETE"])
def echo_body(request):
    return Response(request.body, media_type="application/octet-stream", headers={"x-length": str(len(request.body))})


@app.post("/echo/json")
async def echo_json(request):
    return {"received": request.json()}


@app.post("/echo/text")
def echo_text(request):
    return request.text()


@app.post("/echo/form")
def echo_form(request):
    return {"fields": request.form().multi_items()}


@app.post("/echo/stream", stream=True)
async def echo_stream(request):
    chunks = 0
    total = 0
    async for chunk in request.stream():
        chunks += 1
        total += len(chunk)
    return {"chunks": chunks, "bytes": total}


@app.post("/small", body_limit=10)
def small(request):
    return {"len": len(request.body)}


@app.get("/context")
def context(request):
    return {"context": request.context, "set_by_hook": request.context.get("hook")}


@app.before_request
def mark_context(request):
    request.context["hook"] = "before"
    request.state.seen = True


# -- responses --------------------------------------------------------------------------------------------


@app.get("/r/text")
def r_text():
    return "plain text é"


@app.get("/r/bytes")
def r_bytes():
    return BLOB


@app.get("/r/none")
def r_none():
    return None


@app.post("/r/created")
def r_created():
    return {"id": 1}, 201


@app.get("/r/tuple3")
def r_tuple3():
    return "teapot", 418, {"X-Tea": "earl grey"}


@app.get("/r/html")
def r_html():
    return HTMLResponse("<h1>hi</h1>")


@app.get("/r/plain")
def r_plain():
    return PlainTextResponse("plain", status=202)


@app.get("/r/json")
def r_json():
    return JSONResponse([1, 2, 3], status=207, headers={"x-custom": "yes"})


@app.get("/r/redirect")
def r_redirect():
    return RedirectResponse("/r/text")


@app.get("/r/cookies")
def r_cookies():
    response = Response("cookies")
    response.set_cookie("session", "abc", max_age=60, secure=True)
    response.set_cookie("pref", "dark", httponly=False, samesite="strict")
    response.delete_cookie("old")
    return response


@app.get("/r/file")
def r_file():
    return FileResponse(DATA_DIR / "blob.bin")


@app.get("/r/download")
def r_download():
    return FileResponse(DATA_DIR / "hello.txt", filename="résumé.txt")


@app.get("/r/stream")
def r_stream_sync():
    def produce():
        for i in range(5):
            yield f"chunk {i}\n"

    return StreamingResponse(produce(), media_type="text/plain")


@app.get("/r/astream")
async def r_stream_async():
    async def produce():
        for i in range(5):
            await asyncio.sleep(0)
            yield f"achunk {i}\n".encode()

    return StreamingResponse(produce(), media_type="text/plain")


closed_streams = {"async": 0, "sync": 0}


@app.get("/r/endless")
async def r_endless():
    async def produce():
        try:
            while True:
                yield b"x" * 1024
                await asyncio.sleep(0.01)
        finally:
            closed_streams["async"] += 1

    return StreamingResponse(produce())


@app.get("/r/endless-sync")
def r_endless_sync():
    def produce():
        try:
            while True:
                yield b"y" * 1024
                time.sleep(0.01)
        finally:
            closed_streams["sync"] += 1

    return StreamingResponse(produce())


@app.get("/r/failing-stream")
async def r_failing_stream():
    async def produce():
        yield b"first\n"
        await asyncio.sleep(0.05)
        raise RuntimeError("the producer failed")

    return StreamingResponse(produce(), media_type="text/plain")


@app.get("/r/failing-stream-sync")
def r_failing_stream_sync():
    def produce():
        yield b"first\n"
        raise RuntimeError("the producer failed")

    return StreamingResponse(produce(), media_type="text/plain")


@app.get("/r/closed-streams")
def r_closed_streams():
    return closed_streams


@app.get("/r/slow-stream")
async def r_slow_stream():
    """First chunk at once, the second only after a delay: proves chunks are sent as produced."""

    async def produce():
        yield b"first\n"
        await asyncio.sleep(1.5)
        yield b"second\n"

    return StreamingResponse(produce(), media_type="text/plain")


# -- sync handlers and concurrency ------------------------------------------------------------------------


@app.get("/sleep")
def sleep_sync():
    time.sleep(0.5)
    return {"thread": threading.current_thread().name}


@app.get("/inline", threadpool=False)
def inline():
    return {"thread": threading.current_thread().name}


@app.get("/async-thread")
async def async_thread():
    return {"thread": threading.current_thread().name}


# -- errors -----------------------------------------------------------------------------------------------


class TeapotError(Exception):
    pass


@app.exception_handler(TeapotError)
def teapot(request, exc):
    return {"handled": str(exc)}, 418


@app.exception_handler(409)
def conflict(request, exc):
    return JSONResponse({"conflict": exc.detail}, status=409)


@app.get("/e/boom")
def e_boom():
    raise RuntimeError("secret internal detail")


@app.get("/e/http")
def e_http():
    raise HTTPException(402, "Pay up.", headers={"x-reason": "money"})


@app.get("/e/teapot")
def e_teapot():
    raise TeapotError("short and stout")


@app.get("/e/conflict")
def e_conflict():
    raise HTTPException(409, "Already exists.")


@app.get("/e/bad-header")
def e_bad_header():
    return Response("x", headers={"x-bad": "line\r\nbreak"})


# -- blueprints and mounts --------------------------------------------------------------------------------

api = Blueprint("/api")
v1 = Blueprint("/v1")


@api.before_request
def api_mark(request):
    request.context.setdefault("trail", []).append("api")


@v1.before_request
def v1_mark(request):
    request.context.setdefault("trail", []).append("v1")


@v1.after_request
def v1_after(request, response):
    response.headers["x-blueprint"] = "v1"


@v1.get("/ping")
def v1_ping(request):
    return {"pong": True, "trail": request.context["trail"]}


@api.get("/")
def api_root():
    return {"api": True}


api.register_blueprint(v1)
app.register_blueprint(api)

sub = App()


@sub.get("/hello")
def sub_hello(request):
    return {"sub": True, "path": request.path}


app.mount("/sub", sub)


async def raw_asgi(scope, receive, send):
    body = f"asgi {scope['root_path']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


app.mount("/asgi", raw_asgi)
