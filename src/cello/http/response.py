"""The Response family and the conversion of whatever a handler returns into one.

A response carries its body in one of three shapes the engines have native calls for: bytes, a file on disk,
or a stream of chunks. ``kind`` tells the engine adapter which call to use.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping, MutableMapping
from datetime import datetime
from email.utils import format_datetime, formatdate, parsedate_to_datetime
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import msgspec
import orjson

from .exceptions import HTTPException

if TYPE_CHECKING:
    from ..background import BackgroundTasks

BYTES, FILE, STREAM = 0, 1, 2

JSON_TYPE = "application/json"
HeaderList = list[tuple[str, str]]
HeadersArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


def _json_default(obj: Any) -> Any:
    # msgspec Structs, pydantic models, sets, Decimals and anything with a __json__ are what users hand back most
    # often beyond what orjson knows natively; imported lazily so the core import stays small.
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    to_builtins = getattr(obj, "__json__", None)
    if to_builtins is not None:
        return to_builtins()
    serializer = getattr(obj, "__pydantic_serializer__", None)
    if serializer is not None:  # a pydantic model, returned as FastAPI lets one be
        return serializer.to_python(obj, mode="json")
    import decimal

    if isinstance(obj, decimal.Decimal):
        return str(obj)
    import msgspec

    try:
        return msgspec.to_builtins(obj)
    except TypeError:
        raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}") from None


def _problem_default(obj: Any) -> Any:
    try:
        return _json_default(obj)
    except TypeError:
        return repr(obj)


def dump_json(content: Any) -> bytes:
    try:
        # NOTE: plain orjson first: passing `default` and `option` makes every call markedly slower, and most
        # documents hold only types orjson knows
        return orjson.dumps(content)
    except TypeError:
        try:
            return orjson.dumps(content, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:
            if "64-bit" not in str(exc):
                raise
            # an integer beyond 64 bits (a Python int may be any size): msgspec writes it exactly
            return msgspec.json.encode(content, enc_hook=_json_default)


class MutableHeaders(MutableMapping[str, str]):
    """A case-insensitive view over a response's header list; ``append`` adds a repeated header."""

    __slots__ = ("_list",)

    def __init__(self, raw: HeaderList) -> None:
        self._list = raw

    def __getitem__(self, key: str) -> str:
        key = key.lower()
        for k, v in self._list:
            if k == key:
                return v
        raise KeyError(key)

    def __setitem__(self, key: str, value: str) -> None:
        key, value = _checked(key, value)
        self._list[:] = [(k, v) for k, v in self._list if k != key]
        self._list.append((key, value))

    def __delitem__(self, key: str) -> None:
        key = key.lower()
        before = len(self._list)
        self._list[:] = [(k, v) for k, v in self._list if k != key]
        if len(self._list) == before:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._list))

    def __len__(self) -> int:
        return len({k for k, _ in self._list})

    def append(self, key: str, value: str) -> None:
        self._list.append(_checked(key, value))

    def getlist(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._list if k == key]

    def __repr__(self) -> str:
        return f"MutableHeaders({self._list!r})"


def _header_list(headers: HeadersArg) -> HeaderList:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [_checked(k, str(v)) for k, v in items]


_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")


def _checked(name: str, value: str) -> tuple[str, str]:
    """Refuse CR, LF and NUL: a header value echoing client input must never split the response."""
    for char in _FORBIDDEN_IN_HEADERS:
        if char in value or char in name:
            raise ValueError(f"invalid character {char!r} in response header {name!r}")
    return name.lower(), value


class Response:
    """A complete response held in memory. ``content`` may be bytes, str, or None."""

    __slots__ = ("status", "raw_headers", "body", "background")
    kind = BYTES
    media_type: str | None = None
    charset = "utf-8"

    def __init__(
        self,
        content: Any = None,
        status: int = 200,
        headers: HeadersArg = None,
        media_type: str | None = None,
        background: BackgroundTasks | None = None,
    ) -> None:
        self.status = status
        self.body = self.render(content)
        self.raw_headers = _header_list(headers)
        # tasks to run after this response has been sent (see cello.background)
        self.background = background
        media_type = media_type or self.media_type
        if media_type is not None and not self.has_header("content-type"):
            if media_type.startswith("text/") and "charset" not in media_type:
                media_type += "; charset=" + self.charset
            self.raw_headers.append(("content-type", media_type))

    def render(self, content: Any) -> bytes:
        if content is None:
            return b""
        if isinstance(content, bytes):
            return content
        if isinstance(content, (bytearray, memoryview)):
            return bytes(content)
        if isinstance(content, str):
            return content.encode(self.charset)
        raise TypeError(f"{type(self).__name__} cannot send a {type(content).__name__}; use JSONResponse")

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def headers(self) -> MutableHeaders:
        return MutableHeaders(self.raw_headers)

    def has_header(self, name: str) -> bool:
        return any(k == name for k, _ in self.raw_headers)

    def set_cookie(
        self,
        key: str,
        value: str = "",
        *,
        max_age: int | None = None,
        expires: datetime | str | int | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = True,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Add a Set-Cookie header. HttpOnly and SameSite=Lax are on unless turned off on purpose."""
        cookie: SimpleCookie = SimpleCookie()
        cookie[key] = value
        morsel = cookie[key]
        if max_age is not None:
            morsel["max-age"] = max_age
        if expires is not None:
            if isinstance(expires, datetime):
                morsel["expires"] = format_datetime(expires, usegmt=True)
            elif isinstance(expires, int):
                morsel["expires"] = formatdate(expires, usegmt=True)
            else:
                morsel["expires"] = expires
        if path is not None:
            morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure or samesite == "none":  # browsers drop SameSite=None cookies that are not Secure
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        if samesite is not None:
            morsel["samesite"] = samesite.capitalize()
        text = morsel.OutputString()
        if partitioned:
            text += "; Partitioned"
        self.raw_headers.append(_checked("set-cookie", text))

    def delete_cookie(
        self,
        key: str,
        *,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = True,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        self.set_cookie(
            key,
            "",
            max_age=0,
            expires=0,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
        )

    # -- the reference API's constructors (``return Response.json({...}, status=201)``) ---------------------------

    @staticmethod
    def json(content: Any, status: int = 200, headers: HeadersArg = None) -> JSONResponse:
        return JSONResponse(content, status, headers)

    @staticmethod
    def html(content: str, status: int = 200, headers: HeadersArg = None) -> HTMLResponse:
        return HTMLResponse(content, status, headers)

    @staticmethod
    def text(content: str, status: int = 200, headers: HeadersArg = None) -> PlainTextResponse:
        return PlainTextResponse(content, status, headers)

    @staticmethod
    def redirect(url: str, status: int = 302, headers: HeadersArg = None) -> RedirectResponse:
        return RedirectResponse(url, status, headers)

    @staticmethod
    def no_content(headers: HeadersArg = None) -> Response:
        return Response(None, 204, headers)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status}>"


class JSONResponse(Response):
    __slots__ = ()
    media_type = JSON_TYPE

    def render(self, content: Any) -> bytes:
        return dump_json(content)


class HTMLResponse(Response):
    __slots__ = ()
    media_type = "text/html"


class PlainTextResponse(Response):
    __slots__ = ()
    media_type = "text/plain"


class ProblemResponse(Response):
    """An RFC 9457 problem+json response."""

    __slots__ = ()
    media_type = "application/problem+json"

    def render(self, content: Any) -> bytes:
        # validation errors echo client input, which may be of any type: never fail while reporting a failure
        return orjson.dumps(content, default=_problem_default)

    @classmethod
    def from_exception(cls, exc: HTTPException, instance: str | None = None) -> ProblemResponse:
        return cls(exc.problem(instance), exc.status, exc.headers)


class RedirectResponse(Response):
    __slots__ = ()

    def __init__(self, url: str, status: int = 307, headers: HeadersArg = None) -> None:
        super().__init__(None, status, headers)
        # NOTE: quote only what cannot legally appear in a Location header; keep an already-encoded URL as is.
        self.raw_headers.append(("location", quote(str(url), safe=":/%#?=@[]!$&'()*+,;")))


class StreamingResponse(Response):
    """A body sent chunk by chunk as the iterator produces it; sync iterators run in the thread pool.

    ``trailers``: a function called once the body has been sent, returning header lines sent after it as HTTP
    trailers — only where the server can (``request.sends_trailers``); elsewhere it is not called."""

    __slots__ = ("iterator", "trailers")
    kind = STREAM

    def __init__(
        self,
        content: Iterable[str | bytes] | AsyncIterable[str | bytes],
        status: int = 200,
        headers: HeadersArg = None,
        media_type: str | None = None,
        trailers: Callable[[], list[tuple[str, str]]] | None = None,
    ) -> None:
        super().__init__(None, status, headers, media_type)
        self.iterator = content
        self.trailers = trailers


class FileResponse(Response):
    """A file sent through the engine's zero-copy file call, with Range, conditional GET and downloads.

    ``stat`` is taken when the response is built, so a missing file is a clear error in the handler.
    """

    __slots__ = ("path", "size", "etag", "last_modified")
    kind = FILE

    def __init__(
        self,
        path: str | os.PathLike[str],
        status: int = 200,
        headers: HeadersArg = None,
        media_type: str | None = None,
        filename: str | None = None,
        content_disposition_type: Literal["attachment", "inline"] = "attachment",
        stat_result: os.stat_result | None = None,
    ) -> None:
        self.path = os.fspath(path)
        if media_type is None:
            media_type = mimetypes.guess_type(filename or self.path)[0] or "application/octet-stream"
        super().__init__(None, status, headers, media_type)
        st = stat_result or os.stat(self.path)
        self.size = st.st_size
        self.last_modified = formatdate(st.st_mtime, usegmt=True)
        self.etag = f'"{int(st.st_mtime_ns):x}-{st.st_size:x}"'
        self.raw_headers.append(("last-modified", self.last_modified))
        self.raw_headers.append(("etag", self.etag))
        self.raw_headers.append(("accept-ranges", "bytes"))
        if filename is not None:
            ascii_name = filename.encode("ascii", "ignore").decode().replace('"', "") or "download"
            value = f'{content_disposition_type}; filename="{ascii_name}"'
            if ascii_name != filename:
                value += f"; filename*=UTF-8''{quote(filename)}"
            self.raw_headers.append(("content-disposition", value))

    def evaluate(self, method: str, headers: Any) -> tuple[int, tuple[int, int] | None]:
        """Decide status and byte range from the request's conditional and Range headers.

        Returns ``(status, (start, end_exclusive) | None)``; 304 and 416 carry no body.
        """
        if self.status != 200:
            return self.status, None
        if_none_match = headers.get("if-none-match")
        if if_none_match is not None:
            if _etag_matches(if_none_match, self.etag):
                return 304, None
        else:
            since = headers.get("if-modified-since")
            if since is not None and not _modified_since(since, self.last_modified):
                return 304, None
        range_header = headers.get("range")
        if range_header is None or method not in ("GET", "HEAD"):
            return 200, None
        if_range = headers.get("if-range")
        if if_range is not None and if_range != self.etag and if_range != self.last_modified:
            return 200, None
        span = _parse_range(range_header, self.size)
        if span is None:
            return 200, None  # a syntax we don't serve (e.g. several ranges): the whole file is a valid answer
        if span == (-1, -1):
            return 416, None
        return 206, span


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    weak_free = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == weak_free for tag in header.split(","))


def _modified_since(since: str, last_modified: str) -> bool:
    try:
        return parsedate_to_datetime(last_modified) > parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return True


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range → (start, end_exclusive); (-1, -1) means unsatisfiable; None means ignore."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return (-1, -1)
            return (max(0, size - suffix), size)
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or start < 0 or end <= start:
        return (-1, -1)
    return (start, min(end, size))


EMPTY_204 = Response(None, 204)


def to_response(result: Any) -> Response:
    """Turn a handler's return value into a Response (dict/list → JSON, str → text, None → 204, tuples)."""
    if isinstance(result, Response):
        return result
    if isinstance(result, (dict, list)):
        # NOTE: built without __init__ (which renders, parses headers and a media type): the most common result
        response = Response.__new__(Response)
        response.status = 200
        response.body = dump_json(result)
        response.raw_headers = [("content-type", JSON_TYPE)]
        response.background = None
        return response
    if isinstance(result, str):
        return PlainTextResponse(result)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result), media_type="application/octet-stream")
    if result is None:
        return Response(None, 204)
    if isinstance(result, tuple):
        return _from_tuple(result)
    return JSONResponse(result)


def _from_tuple(result: tuple[Any, ...]) -> Response:
    if len(result) not in (2, 3) or not isinstance(result[1], int):
        raise TypeError("a handler may return (body, status) or (body, status, headers)")
    response = to_response(result[0])
    response.status = result[1]
    if len(result) == 3:
        response.raw_headers.extend(_header_list(result[2]))
    return response


def add_vary(response: Response, *names: str) -> None:
    """Add names to the response's Vary header, once each."""
    headers = response.raw_headers
    for key, _ in headers:
        if key == "vary":
            break
    else:  # the common case: no Vary yet
        headers.append(("vary", ", ".join(names)))
        return
    existing = [v.strip() for k, value in headers if k == "vary" for v in value.split(",")]
    if "*" in existing:
        return
    missing = [n for n in names if n.lower() not in {e.lower() for e in existing}]
    if not missing:
        return
    response.raw_headers[:] = [(k, v) for k, v in response.raw_headers if k != "vary"]
    response.raw_headers.append(("vary", ", ".join([e for e in existing if e] + missing)))
