"""The Request: what a handler sees of one HTTP request. Everything but the body is parsed on first touch.

The engine adapter reads the body (bounded) before the handler runs, so ``body``, ``text()``, ``json()`` and
``form()`` are plain calls in sync and async handlers alike. Routes declared with ``stream=True`` skip that
and iterate ``request.stream()`` instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from .datastructures import (
    URL,
    Address,
    FormData,
    Headers,
    QueryParams,
    parse_address,
    parse_cookie_header,
    parse_urlencoded,
)
from .exceptions import BadRequest, ConfigurationError, UnsupportedMediaType

if TYPE_CHECKING:
    from ..app import App
    from ..background import BackgroundTasks
    from ..routing.router import Route

EMPTY_PARAMS: dict[str, Any] = {}
_UNSET: Any = object()


class RequestBody(bytes):
    """A request's body: bytes that may also be called and awaited (``await request.body()``, the Starlette
    spelling), so code written either way reads it."""

    __slots__ = ()

    def __call__(self) -> RequestBody:
        return self

    def __await__(self) -> Any:
        return self
        yield  # pragma: no cover - makes this a generator, i.e. awaitable


class JSONObject(dict[str, Any]):
    """A JSON object from ``request.json()``: a dict that may also be awaited (``await request.json()``)."""

    __slots__ = ()

    def __await__(self) -> Any:
        return self
        yield  # pragma: no cover - makes this a generator, i.e. awaitable


class JSONArray(list[Any]):
    """A JSON array from ``request.json()``: a list that may also be awaited."""

    __slots__ = ()

    def __await__(self) -> Any:
        return self
        yield  # pragma: no cover - makes this a generator, i.e. awaitable


class State:
    """Free-form attributes for one request (``request.state.user = ...``)."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"request.state has no attribute {name!r}")


class Request:
    """Engine-neutral request; the engine's subclass reads everything else lazily from its own scope."""

    __slots__ = (
        "app",
        "route",
        "method",
        "path",
        "params",
        "_scope",
        "_headers",
        "_query",
        "_cookies",
        "_client",
        "_context",
        "_state",
        "_body",
        "_json",
        "_form",
        "_receive",
        "_background",
    )

    is_websocket = False  # a WebSocket (cello.realtime) is a Request too; middleware may tell them apart

    def __init__(
        self,
        app: App,
        scope: Any,
        method: str,
        path: str,
        params: dict[str, Any] = EMPTY_PARAMS,
        body: bytes = b"",
        receive: Callable[[], AsyncIterator[bytes]] | None = None,
    ) -> None:
        self.app = app
        self.route: Route | None = None
        self.method = method
        self.path = path
        self.params = params
        self._scope = scope
        self._body = body
        self._receive = receive
        self._headers: Headers | None = None
        self._background: BackgroundTasks | None = None
        # NOTE: every lazy view starts as None (or _UNSET where None is a real value): a slot read that raises
        # AttributeError on first use costs ~1 µs, twenty times these assignments.
        self._query: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        self._client: Any = _UNSET
        self._context: dict[str, Any] | None = None
        self._state: State | None = None
        self._json: Any = _UNSET
        self._form: FormData | None = None

    @property
    def sends_trailers(self) -> bool:
        """Whether the server can send HTTP trailers after this request's response (a ``StreamingResponse``'s
        ``trailers``): the ASGI ``http.response.trailers`` extension, which hypercorn offers when the client
        said ``te: trailers``; granian sends none."""
        return False

    # -- what each engine reports in its own shape ----------------------------------------------------------

    @property
    def query_string(self) -> str:
        return str(self._scope["query_string"])

    @property
    def http_version(self) -> str:
        return str(self._scope["http_version"])

    @property
    def _raw_scheme(self) -> str:
        return str(self._scope["scheme"])

    @property
    def _peer(self) -> str | None:
        return self._scope.get("client")  # type: ignore[no-any-return]

    @property
    def _server(self) -> str | None:
        return self._scope.get("server")  # type: ignore[no-any-return]

    @property
    def _authority(self) -> str | None:
        return self._scope.get("authority")  # type: ignore[no-any-return]

    def _header_items(self) -> Iterable[tuple[str, str]]:
        return self._scope["headers"]  # type: ignore[no-any-return]

    # -- headers and what derives from them -------------------------------------------------------------

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._header_items())
        return self._headers

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of one header, without building the whole Headers view (cheap on the hot path)."""
        value: str | None = self.headers.get(name, default)
        return value

    @property
    def query(self) -> QueryParams:
        query = self._query
        if query is None:
            query = self._query = QueryParams(parse_urlencoded(self.query_string))
        return query

    @property
    def query_params(self) -> QueryParams:
        return self.query

    @property
    def path_params(self) -> dict[str, Any]:
        return self.params

    @property
    def cookies(self) -> dict[str, str]:
        cookies = self._cookies
        if cookies is None:
            cookie = self.header("cookie")
            cookies = self._cookies = parse_cookie_header(cookie) if cookie else {}
        return cookies

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").partition(";")[0].strip().lower()

    @property
    def scheme(self) -> str:
        if self._from_trusted_proxy():
            proto = self.header("x-forwarded-proto")
            if proto in ("http", "https"):
                return proto
        return self._raw_scheme

    @property
    def client(self) -> Address | None:
        """The socket peer, or the X-Forwarded-For client when the peer is a configured trusted proxy."""
        if self._client is not _UNSET:
            return self._client  # type: ignore[no-any-return]
        peer = parse_address(self._peer)
        if peer is not None and self._from_trusted_proxy():
            forwarded = _forwarded_client(self.header("x-forwarded-for"), self.app.config.trusted_proxies)
            if forwarded is not None:
                peer = Address(forwarded, 0)
        self._client = peer
        return peer

    def _from_trusted_proxy(self) -> bool:
        trusted = self.app.config.trusted_proxies
        if not trusted:
            return False
        peer = parse_address(self._peer)
        return peer is not None and _is_trusted(peer.host, trusted)

    @property
    def url(self) -> URL:
        host = self._authority or self.header("host") or self._server or "localhost"
        return URL(self.scheme, host, self.path, self.query_string)

    @property
    def base_url(self) -> str:
        url = self.url
        return f"{url.scheme}://{url.netloc}/"

    # -- per-request storage ------------------------------------------------------------------------------

    @property
    def context(self) -> dict[str, Any]:
        """A dict middleware fills for handlers, e.g. ``request.context.get("jwt_claims")``."""
        context = self._context
        if context is None:
            context = self._context = {}
        return context

    @property
    def id(self) -> str | None:
        """The request id (``X-Request-ID``) when the request-id middleware is on."""
        if self._context is None:
            return None
        value = self._context.get("request_id")
        return str(value) if value is not None else None

    @property
    def user(self) -> Any:
        """Who is calling, as an authentication middleware found it (``cello.security.Principal``), or None."""
        return self._context.get("user") if self._context is not None else None

    @property
    def session(self) -> Any:
        """The caller's session, a dict-like ``cello.security.Session`` (``app.enable_sessions(...)``)."""
        session = self._context.get("session") if self._context is not None else None
        if session is None:
            raise ConfigurationError("sessions are not enabled for this route: app.enable_sessions(...)")
        return session

    @property
    def background(self) -> BackgroundTasks:
        """Tasks to run after the response has been sent (see ``cello.background``)."""
        if self._background is None:
            from ..background import BackgroundTasks

            self._background = BackgroundTasks()
        return self._background

    @property
    def state(self) -> State:
        state = self._state
        if state is None:
            state = self._state = State()
        return state

    # -- body ---------------------------------------------------------------------------------------------

    @property
    def body(self) -> RequestBody:
        """The body's bytes; also callable and awaitable, so Starlette's ``await request.body()`` works too."""
        body = self._body
        if body.__class__ is not RequestBody:
            body = self._body = RequestBody(body)
        return body

    def text(self) -> str:
        charset = "utf-8"
        for part in (self.header("content-type") or "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset":
                charset = value.strip().strip('"') or charset
        try:
            return self._body.decode(charset)
        except (UnicodeDecodeError, LookupError):
            raise BadRequest(f"The request body is not valid {charset} text.") from None

    def json(self) -> Any:
        """The body parsed as JSON (whatever its Content-Type). An object or an array may also be awaited, so
        Starlette's ``await request.json()`` works too."""
        if self._json is not _UNSET:
            return self._json
        if not self._body:
            raise BadRequest("The request body is empty; JSON was expected.")
        try:
            value = orjson.loads(self._body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"The request body is not valid JSON: {_json_reason(exc)}") from None
        kind = value.__class__
        self._json = JSONObject(value) if kind is dict else JSONArray(value) if kind is list else value
        return self._json

    def form(self) -> FormData:
        """The urlencoded or multipart form. A plain call, or ``await request.form()`` — both work.

        On routes declared ``stream=True`` (and routes with file parameters) the body has not been read yet, so
        there the call must be awaited: the multipart body is parsed as it arrives, files spooled to disk.
        """
        if self._form is not None:
            return self._form
        content_type = self.content_type
        if content_type == "multipart/form-data":
            from .multipart import parse_multipart

            if self._receive is not None:
                return self._streamed_form()  # type: ignore[return-value]
            return self._keep_form(parse_multipart(self._body, self.header("content-type") or "", self._limits()))
        if content_type not in ("application/x-www-form-urlencoded", ""):
            raise UnsupportedMediaType(f"request.form() reads urlencoded or multipart forms, not {content_type}.")
        if self._receive is not None:
            return self._streamed_urlencoded()  # type: ignore[return-value]
        return self._keep_form(_urlencoded_form(self._body))

    async def _streamed_form(self) -> FormData:
        from .multipart import parse_multipart_stream

        form = await parse_multipart_stream(self.stream(), self.header("content-type") or "", self._limits())
        return self._keep_form(form)

    async def _streamed_urlencoded(self) -> FormData:
        limits = self._limits()
        chunks = []
        size = 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > limits.max_size:
                from .exceptions import PayloadTooLarge

                raise PayloadTooLarge("The form is too large.")
            chunks.append(chunk)
        return self._keep_form(_urlencoded_form(b"".join(chunks)))

    def _keep_form(self, form: FormData) -> FormData:
        self._form = form
        if form.files():
            # temporary files go when the request is over, after the response has been sent
            self.background.add_cleanup(form.close)
        return form

    def _limits(self) -> Any:
        from .uploads import MultipartLimits

        route_limits = self.route.meta.get("multipart") if self.route is not None else None
        return route_limits or getattr(self.app.config, "multipart", None) or MultipartLimits()

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives (routes with ``stream=True``), or the already-read body at once."""
        if self._receive is None:
            if self._body:
                yield self._body
            return
        receive, self._receive = self._receive, None
        async for chunk in receive():
            yield chunk

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


def _urlencoded_form(body: bytes) -> FormData:
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("A urlencoded form must be ASCII on the wire.") from None
    return FormData(parse_urlencoded(text))


def _json_reason(exc: orjson.JSONDecodeError) -> str:
    # orjson's message names the position, which helps the client and reveals nothing internal
    return str(exc).split(":", 1)[0]


def _is_trusted(host: str, trusted: frozenset[Any]) -> bool:
    if "*" in trusted:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in trusted
    return any(address in net for net in trusted if not isinstance(net, str))


def _forwarded_client(header: str | None, trusted: frozenset[Any]) -> str | None:
    """The right-most X-Forwarded-For entry that is not itself a trusted proxy (left entries are forgeable)."""
    if not header:
        return None
    hops = [hop.strip() for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else None


class RSGIRequest(Request):
    """granian's RSGI scope: attributes are read from the Rust side only when touched."""

    __slots__ = ()

    @property
    def query_string(self) -> str:
        return self._scope.query_string  # type: ignore[no-any-return]

    @property
    def http_version(self) -> str:
        return self._scope.http_version  # type: ignore[no-any-return]

    @property
    def _raw_scheme(self) -> str:
        return self._scope.scheme  # type: ignore[no-any-return]

    @property
    def _peer(self) -> str | None:
        return self._scope.client  # type: ignore[no-any-return]

    @property
    def _server(self) -> str | None:
        return self._scope.server  # type: ignore[no-any-return]

    @property
    def _authority(self) -> str | None:
        return self._scope.authority  # type: ignore[no-any-return]

    def _header_items(self) -> Iterable[tuple[str, str]]:
        return self._scope.headers.items()  # type: ignore[no-any-return]

    def header(self, name: str, default: str | None = None) -> str | None:
        # one lookup in granian's header map is cheaper than building the whole Headers view
        if self._headers is not None:
            value: str | None = self._headers.get(name, default)
            return value
        return self._scope.headers.get(name.lower(), default)  # type: ignore[no-any-return]


class ASGIRequest(Request):
    """An ASGI scope dict; headers are latin-1 bytes pairs, client/server are (host, port) tuples."""

    __slots__ = ()

    @property
    def query_string(self) -> str:
        return self._scope["query_string"].decode("latin-1")  # type: ignore[no-any-return]

    @property
    def _peer(self) -> str | None:
        return _join_address(self._scope.get("client"))

    @property
    def _server(self) -> str | None:
        return _join_address(self._scope.get("server"))

    @property
    def _authority(self) -> str | None:
        return None

    def _header_items(self) -> Iterable[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._scope["headers"]]

    @property
    def sends_trailers(self) -> bool:
        return "http.response.trailers" in (self._scope.get("extensions") or ())


def _join_address(pair: Any) -> str | None:
    if not pair:
        return None
    host, port = pair[0], pair[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
