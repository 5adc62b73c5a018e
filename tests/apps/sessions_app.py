"""Sessions and CSRF protection on one app, served on every face by the tests.

The same session routes are mounted under several prefixes, each with its own session configuration:
``/cookie`` (the app-wide signed-cookie sessions), ``/server`` (server-side, in a memory store that counts its
reads), ``/absolute/...`` and ``/idle/...`` (tiny expiries, both backends) and, when
``CELLO_TEST_SESSION_REDIS_URL`` is set, ``/redis`` (server-side in Redis under ``CELLO_TEST_PREFIX``, for the
test with two server processes). CSRF protection covers the ``/forms`` blueprint (forms, uploads, exemptions,
trusted origins) and, header-only, two routes under ``/api``.
"""

from __future__ import annotations

import os
from typing import Any

import jinja2

from cello import App, Blueprint, Form, HTTPException, TemplateResponse, Templates, UploadFile
from cello.security.csrf import CSRF
from cello.security.guards import Authenticated
from cello.security.sessions import Sessions
from cello.stores import MemoryStore

SECRET = "sessions-and-csrf-test-secret-0123456789"
TRUSTED_ORIGIN = "https://trusted.example"

app = App()
app.enable_sessions(secret=SECRET)  # every route: signed-cookie sessions in the "session" cookie


@app.get("/__ready")
def ready():
    return "ok"


class CountingStore(MemoryStore):
    """A memory store that counts lookups, so tests can see which requests reached the store."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, key: str) -> bytes | None:
        self.reads += 1
        return await super().get(key)


STORE = CountingStore()


@app.get("/store-reads")
def store_reads():
    return {"reads": STORE.reads}


def session_routes(prefix: str, middleware: Sessions | None = None) -> Blueprint:
    """The session routes under ``prefix``; ``middleware`` (when given) replaces the app-wide sessions there."""
    bp = Blueprint(prefix)
    if middleware is not None:
        bp.use(middleware)
    label = prefix.strip("/").replace("/", "-")

    @bp.get("/session", name=f"{label}-show")
    def show(request):
        session = request.session
        return {"data": dict(session), "new": session.new, "id": session.id, "pid": os.getpid()}

    @bp.post("/session", name=f"{label}-update")
    def update(request):
        request.session.update(request.json())
        return {"data": dict(request.session)}

    @bp.post("/login", name=f"{label}-login")
    def login(request):
        session = request.session
        session.regenerate()
        session["user"] = {"id": "ada", "roles": ["admin"]}
        return {"data": dict(session)}

    @bp.post("/logout", name=f"{label}-logout")
    def logout(request):
        request.session.clear()
        return {"ok": True}

    @bp.get("/me", name=f"{label}-me", guards=[Authenticated()])
    def me(request):
        return {"user": request.user.id}

    @bp.post("/conflict", name=f"{label}-conflict")
    def conflict(request):
        request.session["attempts"] = request.session.get("attempts", 0) + 1
        raise HTTPException(409, "Try again.")

    @bp.post("/crash", name=f"{label}-crash")
    def crash(request):
        request.session["half-done"] = True
        raise RuntimeError("the handler broke after changing the session")

    app.register_blueprint(bp)
    return bp


def variant(path: str, cookie_name: str, store: Any = None, **options: Any) -> Sessions:
    return Sessions(secret=SECRET, store=store, cookie_name=cookie_name, path=path, **options)


session_routes("/cookie")
session_routes("/server", variant("/server", "sid", STORE))
session_routes("/absolute/cookie", variant("/absolute/cookie", "abs_c", max_age=1, idle_timeout=None))
session_routes("/absolute/server", variant("/absolute/server", "abs_s", STORE, max_age=1, idle_timeout=None))
session_routes("/idle/cookie", variant("/idle/cookie", "idle_c", idle_timeout=1.2))
session_routes("/idle/server", variant("/idle/server", "idle_s", STORE, idle_timeout=1.2))

REDIS_URL = os.environ.get("CELLO_TEST_SESSION_REDIS_URL")
if REDIS_URL:
    from cello.enterprise import Redis
    from cello.stores import RedisStore

    redis_store = RedisStore(Redis(REDIS_URL, socket_timeout=0.5, connect_timeout=0.5),
                             prefix=os.environ.get("CELLO_TEST_PREFIX", "cello-test-sessions:"))  # fmt: skip
    session_routes("/redis", variant("/redis", "rsid", redis_store, max_age=60, idle_timeout=30))

    @app.on_shutdown
    async def close_store():
        await redis_store.close()


# -- CSRF ---------------------------------------------------------------------------------------------------

app.templates = Templates([])
app.templates.env.loader = jinja2.DictLoader({
    "form.html": '<form method="post" action="/forms/submit">{{ csrf_input() }}<input name="name"></form>',
})  # fmt: skip

forms = Blueprint("/forms")
forms.use(CSRF(secret=SECRET, trusted_origins=[TRUSTED_ORIGIN], exempt_paths=["/forms/open/*"]))


@forms.get("/page")
def page(request):
    return TemplateResponse(request, "form.html")


@forms.get("/token")
def token(request):
    return {"token": request.context["csrf_token"], "field": request.context["csrf_field"]}


@forms.post("/submit")
async def submit(request):
    name = None
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        name = (await request.form()).get("name")
    return {"ok": True, "name": name}


@forms.post("/upload")
async def upload(file: UploadFile, name: str = Form("")):
    return {"size": len(await file.read()), "name": name}


@forms.post("/webhook", csrf_exempt=True)
def webhook():
    return {"ok": True}


@forms.post("/open/hook")
def open_hook():
    return {"ok": True}


app.register_blueprint(forms)

# header-only protection, attached to single routes (runs as enter/leave hooks)
api_csrf = CSRF(secret=SECRET, form_field=None, cookie_name="api_csrf", header_name="x-api-csrf")


@app.get("/api/token", middleware=[api_csrf])
def api_token(request):
    return {"token": request.context["csrf_token"]}


@app.post("/api/transfer", middleware=[api_csrf])
def transfer():
    return {"ok": True}
