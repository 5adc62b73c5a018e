"""Login and logout with server-side sessions, CSRF-protected forms, a role guard and strict security headers.

Run it with ``python examples/login.py`` and open http://127.0.0.1:8000/ (users: ``ada`` / ``lovelace-1815``,
an admin, and ``alan`` / ``turing-1912``). Set ``SESSION_SECRET`` (32+ bytes) to keep sessions across restarts,
and ``REDIS_URL`` to keep them in Redis, shared by every worker and machine.

What it shows: ``request.session.regenerate()`` on login (a session id planted before login is worthless after),
``clear()`` on logout (the stored session is deleted, so a copied cookie no longer works), ``{{ csrf_input() }}``
in every form (a form posted from another site is refused with 403), guards reading the session's user, and a
Content-Security-Policy whose per-request nonce lets the page's one inline style through.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Annotated

from cello import App, Form, RedirectResponse, TemplateResponse
from cello.security import Authenticated, Role
from cello.stores import MemoryStore

HERE = Path(__file__).resolve().parent / "login"
SECRET = os.environ.get("SESSION_SECRET") or secrets.token_urlsafe(32)
REDIS_URL = os.environ.get("REDIS_URL")


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)


USERS = {
    name: {"salt": salt, "hash": hash_password(password, salt), "roles": roles}
    for name, password, roles, salt in (
        ("ada", "lovelace-1815", ["admin"], b"salt-for-ada"),
        ("alan", "turing-1912", [], b"salt-for-alan"),
    )
}

if REDIS_URL:
    from cello.stores.redis import RedisStore

    store = RedisStore(REDIS_URL)
else:
    store = MemoryStore()

app = App(templates=HERE / "templates")
app.enable_security_headers(csp_nonce=True)
app.enable_sessions(secret=SECRET, store=store, idle_timeout=30 * 60, max_age=8 * 3600)
app.enable_csrf(secret=SECRET)


@app.get("/")
def home(request):
    if request.session.get("user"):
        return RedirectResponse("/account", status=303)
    return TemplateResponse(request, "login.html")


@app.post("/login")
def login(
    request,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=200)],
):
    user = USERS.get(username)
    # compare in constant time, and spend the same work on unknown names
    supplied = hash_password(password, user["salt"] if user else b"no-such-user")
    if user is None or not hmac.compare_digest(supplied, user["hash"]):
        return TemplateResponse(request, "login.html", {"error": "Wrong user name or password."}, status=401)
    request.session.regenerate()  # a new session id at the moment of login: no fixation
    request.session["user"] = {"id": username, "roles": user["roles"]}
    return RedirectResponse("/account", status=303)


@app.get("/account", guards=[Authenticated()])
def account(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    context = {"user": request.user, "visits": request.session["visits"]}
    return TemplateResponse(request, "account.html", context)


@app.get("/admin", guards=[Role("admin")])
def admin(request):
    return {"users": sorted(USERS), "you": request.user.id}


@app.post("/logout")
def logout(request):
    request.session.clear()  # deletes the stored session and expires the cookie
    return RedirectResponse("/", status=303)


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
