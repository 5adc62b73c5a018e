"""Sessions: ``request.session``, a dict kept for one browser between requests.

    app.enable_sessions(secret=SECRET)                         # signed-cookie sessions
    app.enable_sessions(secret=SECRET, store=RedisStore(url))  # server-side, shared by every worker and machine

    @app.post("/login")
    def login(request):
        request.session.regenerate()          # a new id on login: defeats session fixation
        request.session["user"] = {"id": "ada", "roles": ["admin"]}   # guards read it (cello.security.guards)

Two backends behind one ``Session`` (a ``MutableMapping``):

- **Signed cookie** (``store=None``, the default): the data, its creation time and its last-access time are
  serialized with orjson, base64url-encoded and signed with HMAC-SHA256; the cookie *is* the session. Nothing is
  kept on the server, so such a session cannot be revoked before it expires: ``clear()`` expires the cookie in
  this browser, but a copy taken earlier stays valid until its absolute or idle expiry. (Fixation is no threat
  here: a planted cookie never gains the victim's login, since the login is written into a new cookie.)
- **Server-side** (``store=MemoryStore()`` for one process, ``store=RedisStore(...)`` for many): the cookie holds
  a random id (``secrets.token_urlsafe(32)``) and an HMAC of it, so a forged id is refused without a store
  lookup; the record lives under ``key_prefix`` with a TTL of the idle timeout (never past the absolute expiry).
  ``clear()`` and ``regenerate()`` delete the old record, so a replayed cookie finds nothing.

Expiry is decided on the server from timestamps inside the signed payload or the stored record: ``max_age``
seconds after creation (absolute) and ``idle_timeout`` seconds after the last request (idle). The browser's
cookie expiry is only a courtesy. To keep idle sessions alive without a write per request, the last-access time
is refreshed at most every ``idle_timeout / 10`` seconds (and at most once a minute), so a session may be judged
idle up to that much early. A session id that was never issued by this server is never adopted: a fresh session
always gets a new id.

The cookie and the store are written only when the session changed (``session[...] = ...``, ``del``,
``clear()``, ``regenerate()``; after changing a nested value in place set ``session.modified = True``) or when
the idle refresh is due. A request without a session cookie never touches the store. A session cookie that is
tampered with, forged, expired or unknown gives a fresh empty session, never an error, and is expired in the
browser. Values must be what orjson can write (JSON-like: dict with str keys, list, str, numbers, bool, None).

Failures, decided once for both backends: **a change the handler made to the session is never dropped
silently.** When it cannot be saved, the handler's response is replaced by a problem+json error and the browser
keeps the cookie it had: 500 when the app is at fault (a cookie session larger than ``max_cookie_size``, which a
browser would silently discard; a value orjson cannot serialize), 503 with ``Retry-After`` when the store is
unreachable (``StoreUnavailable``). Either is logged with what went wrong. Reading is softer: a store that
cannot be read gives a fresh empty session (logged), so pages that merely look at the session keep working;
writing to such a session answers 503 rather than replacing the caller's real session. Changes made by a
request whose response is a 5xx (a handler that crashed half-way) are not saved. The middleware sees every
response of the routes it wraps, 4xx included, and writes ``Set-Cookie`` on them as on any other.

Cookies are HttpOnly, SameSite=Lax and, unless ``secure`` says otherwise, Secure exactly when the request came
over https (``request.scheme``, which honours ``X-Forwarded-Proto`` from trusted proxies). Responses of requests
that read the session carry ``Vary: Cookie``. Concurrent requests of one browser that both change a server-side
session: the last to finish wins.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ..http.exceptions import ConfigurationError, HTTPException
from ..http.response import ProblemResponse, Response, add_vary
from ..middleware._types import CallNext
from ..stores.base import Store, StoreUnavailable
from .base import Signer, check_cookie_name, secret_bytes

logger = logging.getLogger("cello.security.sessions")

# NOTE: browsers refuse a cookie whose name and value together pass 4096 bytes, and they do so silently
BROWSER_COOKIE_LIMIT = 4096
_SAMESITE = ("lax", "strict", "none", None)
_MAX_REFRESH_INTERVAL = 60.0
_MAX_ID_COOKIE = 128  # an id cookie is 43 + 1 + 43 characters; anything much longer is not ours


@dataclass
class SessionConfig:
    """How sessions are kept.

    ``secret``: signs cookies (at least 32 bytes; share it between every worker and machine serving the app).
    ``store``: None for signed-cookie sessions, or a ``Store`` for server-side ones. ``cookie_name``, ``path``,
    ``domain``, ``httponly``, ``samesite``: the cookie's attributes. ``secure``: True, False, or None for
    "when the request came over https". ``max_age``: absolute expiry, seconds after the session began (14 days).
    ``idle_timeout``: idle expiry, seconds after its last request (a day; None: no idle expiry).
    ``max_cookie_size``: the largest signed-cookie session (name and value) that is sent. ``key_prefix``: the
    store keys' prefix.
    """

    secret: str | bytes = b""
    store: Store | None = None
    cookie_name: str = "session"
    max_age: float = 14 * 24 * 3600.0
    idle_timeout: float | None = 24 * 3600.0
    path: str = "/"
    domain: str | None = None
    secure: bool | None = None
    httponly: bool = True
    samesite: Literal["lax", "strict", "none"] | None = "lax"
    max_cookie_size: int = BROWSER_COOKIE_LIMIT
    key_prefix: str = "session:"


class Session(MutableMapping[str, Any]):
    """One browser's session: a mutable mapping that knows whether it was read or changed.

    ``modified``: changed during this request (set it yourself after changing a nested value in place).
    ``new``: no valid session came with the request. ``id``: the server-side id (None for cookie sessions and
    for a new session not yet saved). ``created`` / ``last_access``: epoch seconds, as last saved.
    """

    __slots__ = (
        "_data",
        "modified",
        "accessed",
        "new",
        "id",
        "created",
        "last_access",
        "_cookie",
        "_regenerate",
        "_invalidated",
        "_unavailable",
    )

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(data) if data else {}
        self.modified = False
        self.accessed = False  # read or written: the response then varies by cookie
        self.new = True
        self.id: str | None = None
        self.created = 0.0
        self.last_access = 0.0
        self._cookie: str | None = None  # the session cookie the request carried, if any
        self._regenerate = False
        self._invalidated = False
        self._unavailable = False  # the store could not be read: nothing may be written over the real session

    # -- the mapping ----------------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = self.modified = True
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        self.accessed = self.modified = True
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return iter(self._data)

    def __len__(self) -> int:
        self.accessed = True
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return self._data.get(key, default)

    # -- the session's life ---------------------------------------------------------------------------------

    def clear(self) -> None:
        """End the session (logout): its data goes, the server-side record is deleted and the cookie expired.

        Anything set afterwards during the same request starts a new session under a new id."""
        self._data.clear()
        self.accessed = self.modified = True
        self._invalidated = True

    def regenerate(self) -> None:
        """Keep the data under a new id and restart the expiry clocks; the old record is deleted. Call it when
        the caller's privileges change (login), so an id planted or seen before cannot follow them."""
        self.accessed = self.modified = True
        self._regenerate = True

    def __repr__(self) -> str:
        return f"<Session {self._data!r}>"


class Sessions:
    """The session middleware: ``Sessions(config)`` or ``Sessions(secret=..., store=..., ...)``.

    Signed-cookie sessions run as enter/leave hooks (no await anywhere); server-side ones await their store.
    """

    # the framework's own endpoints (metrics, health, OpenAPI, static files) are left alone (cello.dispatch)
    framework_routes = False

    def __init__(self, config: SessionConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ConfigurationError("pass Sessions either a SessionConfig or keyword options, not both")
        config = config if config is not None else SessionConfig(**options)
        secret = secret_bytes(config.secret, "sessions")
        if not config.max_age > 0:
            raise ConfigurationError("session max_age must be > 0 seconds")
        if config.idle_timeout is not None and not config.idle_timeout > 0:
            raise ConfigurationError("session idle_timeout must be > 0 seconds, or None")
        check_cookie_name(config.cookie_name)
        if config.samesite not in _SAMESITE:
            raise ConfigurationError("session samesite must be 'lax', 'strict', 'none' or None")
        if config.max_cookie_size < 64:
            raise ConfigurationError("session max_cookie_size must be at least 64 bytes")
        self.config = config
        self.store = config.store
        # the key is bound to this use and cookie name: a secret shared with CSRF protection or with another session
        # middleware never makes their cookies interchangeable
        self._signer = Signer(secret, b"cello.sessions:" + config.cookie_name.encode())
        # read per request: plain attributes, not the config dataclass
        self._name = config.cookie_name
        self._max_age = float(config.max_age)
        self._idle = float(config.idle_timeout) if config.idle_timeout is not None else None
        self._refresh = min(_MAX_REFRESH_INTERVAL, self._idle / 10) if self._idle is not None else None
        self._prefix = config.key_prefix
        self._secure = config.secure
        self._max_cookie = config.max_cookie_size

    @property
    def uses_hooks(self) -> bool:
        """Cookie sessions need no await: enter/leave serve (see ``cello.middleware.base``)."""
        return self.store is None

    # -- signed-cookie sessions (enter/leave) -----------------------------------------------------------------

    def enter(self, request: Any) -> Any:
        session = Session()
        raw = request.cookies.get(self._name)
        if raw is not None:
            session._cookie = raw
            record = self._unsign_cookie(raw)
            if record is not None and self._alive(record[0], record[1], time.time()):
                session.created, session.last_access, session._data = record
                session.new = False
        request.context["session"] = session
        return session

    def leave(self, request: Any, response: Response, session: Any) -> Response:
        if session.accessed:
            add_vary(response, "Cookie")
        if response.status >= 500:
            return response
        if session.modified:
            return self._save_cookie(request, response, session)
        if session._cookie is not None:
            if session.new:
                self._expire(request, response)  # tampered, forged or expired: the browser may forget it
            elif self._refresh_due(session):
                return self._save_cookie(request, response, session)
        return response

    def _save_cookie(self, request: Any, response: Response, session: Session) -> Response:
        data = session._data
        if not data:
            if session._cookie is not None:
                self._expire(request, response)
            return response
        now = _now()
        restarted = session.new or session._regenerate or session._invalidated
        created = now if restarted else session.created
        try:
            payload = _b64(orjson.dumps([created, now, data]))
        except TypeError as exc:
            return _not_saved(request, 500, "session values must be JSON-serializable (orjson): %s", exc)
        value = (payload + b"." + self._sign(payload)).decode("ascii")
        size = len(self._name) + 1 + len(value)
        if size > self._max_cookie:
            return _not_saved(
                request,
                500,
                "a cookie session of %d bytes (keys: %s) is over max_cookie_size=%d, and browsers drop such "
                "cookies silently; keep less in the session or keep sessions in a store",
                size,
                ", ".join(sorted(map(str, data))),
                self._max_cookie,
            )
        lifetime = created + self._max_age - now
        if self._idle is not None and self._idle < lifetime:
            lifetime = self._idle  # every refresh rewrites this cookie, so the browser may drop it when idle
        self._set(request, response, value, lifetime)
        return response

    def _unsign_cookie(self, raw: str) -> tuple[float, float, dict[str, Any]] | None:
        payload, dot, signature = raw.rpartition(".")
        if not dot or not raw.isascii():
            return None
        encoded = payload.encode("ascii")
        if not self._signer.verify(encoded, signature.encode("ascii")):
            return None
        try:
            blob = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
        except ValueError:
            return None
        return _record(blob)

    # -- server-side sessions ---------------------------------------------------------------------------------

    async def __call__(self, request: Any, call_next: CallNext) -> Response:
        store = self.store
        if store is None:
            session = self.enter(request)
            return self.leave(request, await call_next(request), session)
        session = Session()
        raw = request.cookies.get(self._name)
        if raw is not None:
            session._cookie = raw
            session_id = self._unsign_id(raw)
            if session_id is not None:  # a forged id never reaches the store
                try:
                    blob = await store.get(self._prefix + session_id)
                except StoreUnavailable as exc:
                    logger.warning("session store unavailable; %s %s gets an empty session: %s",
                                   request.method, request.path, exc)  # fmt: skip
                    session._unavailable = True
                    blob = None
                record = _record(blob) if blob is not None else None
                if record is not None and self._alive(record[0], record[1], time.time()):
                    session.created, session.last_access, session._data = record
                    session.id = session_id
                    session.new = False
        request.context["session"] = session
        response = await call_next(request)
        if session.accessed:
            add_vary(response, "Cookie")
        if response.status >= 500:
            return response
        if session._unavailable:
            if session.modified:
                return _not_saved(request, 503, "the session store could not be read, so the change to the "
                                  "session of %s %s was not saved", request.method, request.path)  # fmt: skip
            return response  # the real session is still in the store: leave the cookie alone
        if session.modified:
            return await self._save_record(request, response, session, store)
        if raw is not None:
            if session.new:
                self._expire(request, response)
            elif self._refresh_due(session):
                await self._touch(request, session, store)
        return response

    async def _save_record(self, request: Any, response: Response, session: Session, store: Store) -> Response:
        data = session._data
        old_id = session.id
        if not data:  # emptied or logged out: nothing to keep
            try:
                if old_id is not None:
                    await store.delete(self._prefix + old_id)
            except StoreUnavailable as exc:
                return _not_saved(request, 503, "session store unavailable; a session was not deleted: %s", exc)
            if session._cookie is not None:
                self._expire(request, response)
            return response
        replace = session._regenerate or session._invalidated
        session_id = old_id
        if session_id is None or replace:
            session_id = secrets.token_urlsafe(32)  # never an id the client offered: a new session, a new id
        fresh = session_id != old_id
        now = _now()
        created = now if fresh else session.created
        try:
            blob = orjson.dumps([created, now, data])
        except TypeError as exc:
            return _not_saved(request, 500, "session values must be JSON-serializable (orjson): %s", exc)
        try:
            await store.set(self._prefix + session_id, blob, ttl=self._ttl(created, now))
            # NOTE: the new record first, then the old one goes: a failure in between leaves the caller's
            # current session working, never none at all
            if replace and old_id is not None:
                await store.delete(self._prefix + old_id)
        except StoreUnavailable as exc:
            return _not_saved(request, 503, "session store unavailable; the session was not saved: %s", exc)
        session.id = session_id
        if fresh:
            # the id never changes while the session lives, so the cookie is only set with a new one
            value = session_id + "." + self._sign(session_id.encode("ascii")).decode("ascii")
            self._set(request, response, value, created + self._max_age - now)
        return response

    async def _touch(self, request: Any, session: Session, store: Store) -> None:
        """Push the idle expiry forward for a session that was used but not changed."""
        assert session.id is not None
        now = _now()
        try:
            blob = orjson.dumps([session.created, now, session._data])
            await store.set(self._prefix + session.id, blob, ttl=self._ttl(session.created, now))
        except StoreUnavailable as exc:
            # nothing the handler asked for is lost; the next request tries again
            logger.warning("session store unavailable; the idle expiry of the session of %s %s was not refreshed: "
                           "%s", request.method, request.path, exc)  # fmt: skip
        except TypeError as exc:  # a value changed in place into something orjson cannot write
            logger.error("session values must be JSON-serializable (orjson); the session of %s %s was not "
                         "refreshed: %s", request.method, request.path, exc)  # fmt: skip

    def _unsign_id(self, raw: str) -> str | None:
        session_id, dot, signature = raw.rpartition(".")
        if not dot or not session_id or len(raw) > _MAX_ID_COOKIE or not raw.isascii():
            return None
        if not self._signer.verify(session_id.encode("ascii"), signature.encode("ascii")):
            return None
        return session_id

    def _ttl(self, created: float, now: float) -> float:
        remaining = created + self._max_age - now
        idle = self._idle
        return idle if idle is not None and idle < remaining else remaining

    # -- shared -----------------------------------------------------------------------------------------------

    def _sign(self, data: bytes) -> bytes:
        return self._signer.sign(data)

    def _alive(self, created: float, last_access: float, now: float) -> bool:
        if now - created >= self._max_age:
            return False
        idle = self._idle
        return idle is None or now - last_access < idle

    def _refresh_due(self, session: Session) -> bool:
        refresh = self._refresh
        return refresh is not None and time.time() - session.last_access >= refresh

    def _is_secure(self, request: Any) -> bool:
        secure = self._secure
        return secure if secure is not None else request.scheme == "https"

    def _set(self, request: Any, response: Response, value: str, lifetime: float) -> None:
        config = self.config
        response.set_cookie(
            self._name,
            value,
            max_age=max(1, round(lifetime)),
            path=config.path,
            domain=config.domain,
            secure=self._is_secure(request),
            httponly=config.httponly,
            samesite=config.samesite,
        )

    def _expire(self, request: Any, response: Response) -> None:
        config = self.config
        response.delete_cookie(
            self._name,
            path=config.path,
            domain=config.domain,
            secure=self._is_secure(request),
            httponly=config.httponly,
            samesite=config.samesite,
        )


def _now() -> float:
    """Epoch seconds to the millisecond: precise enough for expiry, and short in cookies and records."""
    return round(time.time(), 3)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _record(blob: bytes) -> tuple[float, float, dict[str, Any]] | None:
    """``[created, last_access, data]`` as this module writes it, or None for anything else."""
    try:
        record = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return None
    if type(record) is list and len(record) == 3:
        created, last_access, data = record
        if type(data) is dict and isinstance(created, (int, float)) and isinstance(last_access, (int, float)):
            return float(created), float(last_access), data
    return None


def _not_saved(request: Any, status: int, message: str, *args: Any) -> Response:
    """The answer when a session change cannot be saved (see the module): logged, never silently dropped."""
    logger.error(message, *args)
    background = request._background
    if background is not None:
        background.discard_tasks()  # as for any failed request: nothing scheduled runs
    headers = {"retry-after": "1"} if status == 503 else None
    error = HTTPException(status, "The session could not be saved.", headers=headers)
    return ProblemResponse.from_exception(error, request.path)
