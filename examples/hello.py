"""Hello, Cello: routing, path converters, request views, responses, blueprints, hooks and errors.

Run it with ``python examples/hello.py`` (or ``cello run examples/hello.py:app``) and try:

    curl http://127.0.0.1:8000/
    curl http://127.0.0.1:8000/users/7/posts/42
    curl -X POST http://127.0.0.1:8000/echo -d '{"hello": "world"}'
    curl http://127.0.0.1:8000/api/v1/status
"""

from __future__ import annotations

import os
import time

from cello import App, Blueprint, HTTPException, StreamingResponse

app = App()


@app.get("/")
async def hello(request):
    return {"message": "Hello, World!"}


@app.get("/users/{user_id:int}/posts/{post_id:int}")
def get_post(request, user_id, post_id):
    # converted values arrive as arguments; the raw mapping is request.params
    return {"user_id": user_id, "post_id": post_id, "params": request.params}


@app.get("/search")
def search(request):
    return {"q": request.query.get("q", ""), "tags": request.query.getlist("tag")}


@app.post("/echo")
async def echo(request):
    return {"you_sent": request.json(), "content_type": request.content_type}


@app.get("/slow")
def slow(request):
    # a blocking sync handler runs in the worker's thread pool, so other requests keep flowing
    time.sleep(0.2)
    return "done"


@app.get("/count")
def count(request):
    def numbers():
        for n in range(5):
            yield f"{n}\n"

    return StreamingResponse(numbers(), media_type="text/plain")


@app.get("/teapot")
def teapot(request):
    raise HTTPException(418, "I'm a teapot, not a coffee machine.")


api = Blueprint("/api/v1")


@api.before_request
def stamp(request):
    request.context["started"] = time.perf_counter()


@api.after_request
def timing(request, response):
    elapsed = time.perf_counter() - request.context["started"]
    response.headers["server-timing"] = f"app;dur={elapsed * 1000:.3f}"


@api.get("/status")
def status(request):
    return {"ok": True, "pid": os.getpid()}


app.register_blueprint(api)


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
