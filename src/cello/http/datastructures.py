"""Read-only, multi-valued views of what a client sent: headers, query strings, cookies, forms, URL, address."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from http.cookies import _unquote as _cookie_unquote  # type: ignore[attr-defined]
from typing import Any, NamedTuple, TypeVar, overload
from urllib.parse import unquote_plus

from .exceptions import BadRequest

_T = TypeVar("_T")

# A '%' not followed by two hex digits: browsers never send it, and silently keeping it would let two
# different spellings of one value slip past validation, so the request is refused instead.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class MultiDict(Mapping[str, str]):
    """An immutable mapping whose keys may repeat; ``[key]`` and ``get`` give the first value."""

    __slots__ = ("_items", "_first")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = list(items)
        # the first value of each key wins: built in C from the reversed pairs rather than in a Python loop
        self._first: dict[str, str] = dict(reversed(self._items))

    def __getitem__(self, key: str) -> str:
        return self._first[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, key: object) -> bool:
        return key in self._first

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str | _T) -> str | _T: ...
    def get(self, key: str, default: Any = None) -> Any:
        return self._first.get(key, default)

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self._items if k == key]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MultiDict):
            return sorted(self._items) == sorted(other._items)
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class Headers(MultiDict):
    """Request or response headers: names are case-insensitive, values keep their order and repeats."""

    __slots__ = ()

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return self._first[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._first

    def get(self, key: str, default: Any = None) -> Any:
        return self._first.get(key.lower(), default)

    def getlist(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._items if k == key]


class QueryParams(MultiDict):
    """The parsed query string; ``getlist`` returns every value of a repeated key."""

    __slots__ = ()

    @classmethod
    def parse(cls, query_string: str) -> QueryParams:
        return cls(parse_urlencoded(query_string))


class FormData(MultiDict):
    """Fields of a urlencoded or multipart form: ``str`` values, and ``UploadFile`` values for files.

    Awaitable (``await request.form()`` gives the same object), so handlers may use either spelling.
    """

    __slots__ = ()

    def files(self) -> list[Any]:
        return [value for _, value in self._items if not isinstance(value, str)]

    def close(self) -> None:
        """Close every uploaded file (removing any temporary file on disk)."""
        for upload in self.files():
            upload.close_sync()

    def __await__(self) -> Any:
        return self
        yield  # pragma: no cover - makes this a generator, i.e. awaitable


def parse_urlencoded(data: str) -> list[tuple[str, str]]:
    """Parse ``a=1&b=2`` strictly: malformed percent-escapes or non-UTF-8 bytes are a 400."""
    if not data:
        return []
    if "%" not in data and "+" not in data:
        # nothing to decode (the common case): plain splitting, no unquoting
        return [part.partition("=")[::2] for part in data.split("&") if part]  # type: ignore[misc]
    if "%" in data and _BAD_PERCENT.search(data):
        raise BadRequest("Malformed percent-encoding in the query string or form.")
    pairs: list[tuple[str, str]] = []
    try:
        for part in data.split("&"):
            if not part:
                continue
            key, _, value = part.partition("=")
            pairs.append((unquote_plus(key, errors="strict"), unquote_plus(value, errors="strict")))
    except UnicodeDecodeError:
        raise BadRequest("The query string or form is not valid UTF-8.") from None
    return pairs


def parse_cookie_header(header: str) -> dict[str, str]:
    """Parse a Cookie header the way browsers send it (RFC 6265), tolerating junk instead of failing."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        if "=" in chunk:
            key, value = chunk.split("=", 1)
        else:
            key, value = "", chunk
        key, value = key.strip(), value.strip()
        if key or value:
            cookies[key] = _cookie_unquote(value)
    return cookies


class Address(NamedTuple):
    host: str
    port: int


def parse_address(value: str | None) -> Address | None:
    """``"1.2.3.4:80"`` or ``"[::1]:80"`` as the engines report a socket peer."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):  # "²" is a digit to isdigit(), not to int()
        return Address(value, 0)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Address(host, int(port))


class URL(str):
    """The full request URL; a ``str`` with its parts as attributes."""

    scheme: str
    netloc: str
    path: str
    query: str

    def __new__(cls, scheme: str, netloc: str, path: str, query: str) -> URL:
        text = f"{scheme}://{netloc}{path}"
        if query:
            text += "?" + query
        url = super().__new__(cls, text)
        url.scheme, url.netloc, url.path, url.query = scheme, netloc, path, query
        return url

    @property
    def hostname(self) -> str:
        host = self.netloc
        if host.startswith("["):
            return host[1 : host.find("]")]
        return host.rpartition(":")[0] if ":" in host else host

    @property
    def port(self) -> int | None:
        host = self.netloc
        tail = host[host.rfind("]") + 1 :] if host.startswith("[") else host
        _, sep, port = tail.rpartition(":")
        return int(port) if sep and port.isdigit() else None
