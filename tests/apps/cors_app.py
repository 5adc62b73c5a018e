"""Two apps for the browser CORS test: ``pages`` serves a page from one origin, ``api`` answers from another.

``CELLO_TEST_ALLOWED_ORIGIN`` is the one origin the api allows (with credentials).
"""

from __future__ import annotations

import os

from cello import App, HTMLResponse

pages = App(openapi=False)
api = App(openapi=False)
api.enable_cors(
    allow_origins=[os.environ.get("CELLO_TEST_ALLOWED_ORIGIN", "http://127.0.0.1:1")],
    allow_methods=["GET", "PUT"],
    allow_headers=["x-custom", "content-type"],
    allow_credentials=True,
)


@pages.get("/__ready")
@api.get("/__ready")
def ready():
    return "ok"


@pages.get("/page")
def page():
    return HTMLResponse("<!doctype html><title>cors</title><p>cross-origin calls</p>")


@api.get("/data")
def data(request):
    return {"data": 42, "cookie": request.cookies.get("session")}


@api.put("/data")
async def put_data(request):
    return {"stored": request.json(), "custom": request.headers.get("x-custom")}
