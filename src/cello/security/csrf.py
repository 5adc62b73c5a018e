"""CSRF protection: a signed double-submit token, and a refusal of cross-site requests by their origin.

    app.enable_csrf(secret=SECRET)                       # or app.use / bp.use(CSRF(...)), middleware=[CSRF(...)]
    <form method="post">{{ csrf_input() }} ...</form>    # in a template
    fetch(url, {method: "POST", headers: {"X-CSRF-Token": readCookie("csrftoken")}})

A browser attaches cookies (a session, a JWT in a cookie) to requests another site makes it send; what that
site cannot do is read this site's cookies or set its request headers. So every request gets a token:
``nonce.signature`` (an HMAC-SHA256 of a random nonce under the secret), kept in a cookie that is *not* HttpOnly
(scripts read it to send the header) and left in ``request.context["csrf_token"]`` (with the form field's name
in ``request.context["csrf_field"]``) for templates: ``{{ csrf_input() }}`` renders the hidden field. A request
with an unsafe method (anything but ``safe_methods``) must send the cookie's token back in the ``header_name``
header or the ``form_field`` of a urlencoded or multipart form, byte for byte (``hmac.compare_digest``), and the
cookie's signature must verify: a cookie planted by a sibling subdomain, or any value an attacker chose, is
refused even when the header matches it. A missing or invalid cookie is replaced by a fresh one on the response,
also on the refusal, so a client can recover by retrying.

Unsafe requests are also refused when they come from another origin: an ``Origin`` header that is neither the
request's own origin (scheme and host as the server sees them) nor one of ``trusted_origins``, or, without
``Origin``, ``Sec-Fetch-Site: cross-site``. This also covers a token-carrying cookie planted by a sibling
subdomain, whose forms post with that subdomain's origin. Behind a proxy that rewrites ``Host`` list the public
origin in ``trusted_origins`` (or configure ``trusted_proxies`` so the scheme is known).

Refusals are 403 problem+json saying which check failed ("CSRF token missing", "CSRF token invalid", "Cross-origin
request refused") and nothing more. Exempt: safe methods, routes declared ``csrf_exempt=True`` (webhooks called
by other servers), ``exempt_paths`` (exact, or ``prefix*``), and the framework's own 404/405 answers. The
protection is independent of sessions and of how users authenticate; the token is not bound to a session.

Cost: a safe request pays a cookie lookup and one HMAC (plus a token and a ``Set-Cookie`` when it had none).
With ``form_field=None`` (header-only: APIs and single-page apps) the middleware runs as enter/leave hooks; with
a form field it awaits, because a streamed body (``stream=True`` routes, uploads) can only be read awaiting.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..http.exceptions import ConfigurationError, HTTPException
from ..http.response import ProblemResponse, Response
from ..middleware._types import CallNext
from .base import PathFilter, Signer, check_cookie_name, forbidden, secret_bytes

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
MISSING = "CSRF token missing."
INVALID = "CSRF token invalid."
CROSS_ORIGIN = "Cross-origin request refused: its origin is not trusted."
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}
_MAX_TOKEN = 256  # ours are 32 + 1 + 43 characters; longer values are refused before any hashing


@dataclass
class CSRFConfig:
    """``secret``: signs tokens (at least 32 bytes; the same on every worker and machine).
    ``cookie_name`` / ``header_name`` / ``form_field``: where the token travels (``form_field=None``: header
    only). ``safe_methods``: never checked. ``exempt_paths``: exact paths or ``prefix*``, never checked.
    ``trusted_origins``: other origins allowed to send unsafe requests (``"https://app.example.com"``).
    ``cookie_secure``: True, False, or None for "when the request came over https". ``cookie_samesite`` /
    ``cookie_path``: the cookie's attributes.
    """

    secret: str | bytes = b""
    cookie_name: str = "csrftoken"
    header_name: str = "x-csrf-token"
    form_field: str | None = "csrf_token"
    safe_methods: Sequence[str] = ("GET", "HEAD", "OPTIONS", "TRACE")
    exempt_paths: Sequence[str] = ()
    trusted_origins: Sequence[str] = ()
    cookie_secure: bool | None = None
    cookie_samesite: Literal["lax", "strict", "none"] | None = "lax"
    cookie_path: str = "/"


class CSRF:
    """The CSRF middleware: ``CSRF(config)`` or ``CSRF(secret=..., trusted_origins=[...], ...)``."""

    # the framework's own endpoints (metrics, health, OpenAPI, static files) are left alone (cello.dispatch)
    framework_routes = False

    def __init__(self, config: CSRFConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ConfigurationError("pass CSRF either a CSRFConfig or keyword options, not both")
        config = config if config is not None else CSRFConfig(**options)
        secret = secret_bytes(config.secret, "CSRF protection")
        check_cookie_name(config.cookie_name)
        if config.cookie_samesite not in ("lax", "strict", "none", None):
            raise ConfigurationError("CSRF cookie_samesite must be 'lax', 'strict', 'none' or None")
        if isinstance(config.safe_methods, str) or isinstance(config.trusted_origins, str):
            raise ConfigurationError("safe_methods and trusted_origins are lists of strings, not one string")
        self.config = config
        self._signer = Signer(secret, b"cello.csrf")
        self._cookie = config.cookie_name
        self._header = config.header_name.lower()
        self._field = config.form_field or None
        self._safe = frozenset(m.upper() for m in config.safe_methods)
        self._exempt = PathFilter(config.exempt_paths)
        self._trusted = frozenset(_trusted_origin(o) for o in config.trusted_origins)

    @property
    def uses_hooks(self) -> bool:
        """Header-only checking needs no await: enter/leave serve (see ``cello.middleware.base``)."""
        return self._field is None

    # -- the two shapes of the middleware ----------------------------------------------------------------------

    def enter(self, request: Any) -> Any:
        issue = self._prepare(request)
        if request.method in self._safe or self._exempted(request):
            return issue
        refusal = self._precheck(request, issue) or self._compare(request, request.header(self._header))
        return issue if refusal is None else self._refuse(request, refusal, issue)

    def leave(self, request: Any, response: Response, issue: Any) -> Response:
        if issue is not None:
            self._set_cookie(request, response, issue)
        return response

    async def __call__(self, request: Any, call_next: CallNext) -> Response:
        issue = self._prepare(request)
        if request.method not in self._safe and not self._exempted(request):
            refusal = self._precheck(request, issue)
            if refusal is None:
                submitted = request.header(self._header)
                if submitted is None and self._field is not None and request.content_type in FORM_TYPES:
                    try:
                        # buffered bodies parse at once; streamed ones (uploads) are read here, and the handler
                        # gets the same parsed form from request.form()
                        form = await request.form()
                    except HTTPException as exc:
                        return self.leave(request, ProblemResponse.from_exception(exc, request.path), issue)
                    value = form.get(self._field)
                    submitted = value if isinstance(value, str) else None
                refusal = self._compare(request, submitted)
            if refusal is not None:
                return self._refuse(request, refusal, issue)
        return self.leave(request, await call_next(request), issue)

    # -- steps --------------------------------------------------------------------------------------------------

    def _prepare(self, request: Any) -> str | None:
        """Put the current token in the context; returns a new one to set as the cookie, or None."""
        cookie = request.cookies.get(self._cookie)
        issue = None
        if cookie is None or not self.verify(cookie):
            cookie = issue = self.new_token()
        context = request.context
        context["csrf_token"] = cookie
        context["csrf_field"] = self._field
        return issue

    def _exempted(self, request: Any) -> bool:
        route = request.route
        if route is not None:
            meta = route.meta
            if meta and (meta.get("csrf_exempt") or meta.get("internal")):
                return True
        return self._exempt(request.path)

    def _precheck(self, request: Any, issue: str | None) -> str | None:
        """The origin and the cookie; the reason for a refusal, or None."""
        if self._cross_origin(request):
            return CROSS_ORIGIN
        if issue is not None:  # the request's cookie was absent or not signed by us
            return MISSING if self._cookie not in request.cookies else INVALID
        return None

    def _compare(self, request: Any, submitted: str | None) -> str | None:
        if not submitted:
            return MISSING
        cookie: str = request.cookies[self._cookie]
        if not submitted.isascii() or not hmac.compare_digest(submitted.encode("ascii"), cookie.encode("ascii")):
            return INVALID
        return None

    def _refuse(self, request: Any, reason: str, issue: str | None) -> Response:
        return self.leave(request, forbidden(request, reason), issue)

    def _cross_origin(self, request: Any) -> bool:
        origin: str | None = request.header("origin")
        if origin is None:
            # NOTE: browsers that send Sec-Fetch-Site send Origin on unsafe requests too; this covers the rest
            return bool(request.header("sec-fetch-site") == "cross-site")
        origin = _normalized(origin)
        if origin in self._trusted:
            return False
        url = request.url
        return origin != _normalized(url.scheme + "://" + url.netloc)

    def _set_cookie(self, request: Any, response: Response, token: str) -> None:
        config = self.config
        secure = config.cookie_secure
        response.set_cookie(
            self._cookie,
            token,
            path=config.cookie_path,
            secure=secure if secure is not None else request.scheme == "https",
            httponly=False,  # NOTE: on purpose: scripts read the cookie to send it back in the header
            samesite=config.cookie_samesite,
        )

    # -- tokens -------------------------------------------------------------------------------------------------

    def new_token(self) -> str:
        """A fresh signed token (``nonce.signature``)."""
        nonce = secrets.token_urlsafe(24)
        return nonce + "." + self._sign(nonce)

    def verify(self, token: str) -> bool:
        """Whether ``token`` was signed with this middleware's secret."""
        nonce, dot, signature = token.rpartition(".")
        if not dot or not nonce or len(token) > _MAX_TOKEN or not token.isascii():
            return False
        return self._signer.verify(nonce.encode("ascii"), signature.encode("ascii"))

    def _sign(self, nonce: str) -> str:
        return self._signer.sign(nonce.encode("ascii")).decode("ascii")


def _normalized(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without the scheme's default port (as browsers send it)."""
    origin = origin.strip().lower()
    scheme, sep, host = origin.partition("://")
    if not sep:
        return origin  # "null" (sandboxed frames, some redirects) and anything unparsable stay as they are
    host = host.rstrip("/")
    default = _DEFAULT_PORTS.get(scheme)
    if default is not None and host.endswith(default):
        host = host[: -len(default)]
    return scheme + "://" + host


def _trusted_origin(origin: str) -> str:
    normalized = _normalized(origin)
    if normalized != "null" and ("://" not in normalized or "/" in normalized.partition("://")[2]):
        raise ConfigurationError(f"a trusted origin is scheme://host[:port] ('https://app.example'), not {origin!r}")
    return normalized
