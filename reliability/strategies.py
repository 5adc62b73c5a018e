"""Hypothesis strategies for hostile HTTP requests and WebSocket frames, as the raw bytes a client would send.

Requests are aimed at the routes of ``reliability/app.py`` (so they reach the parameter parsing, the body
decoders and the middleware, not only the 404 path) and bend every part: the method, the path (percent-encoding,
invalid UTF-8, dot segments, very long), the query string, the headers (duplicates, huge values, control
characters), cookies, and bodies (JSON nested deep, huge numbers, invalid UTF-8; multipart broken in every place;
forms; random bytes), with a Content-Length that sometimes lies.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from hypothesis import strategies as st

ROUTES = [
    "/",
    "/pid",
    "/items/{int}",
    "/users/{seg}/posts/{uuid}",
    "/files/{rest}",
    "/headers",
    "/people",
    "/people/{int}",
    "/echo",
    "/login",
    "/upload",
    "/stream",
    "/events",
    "/slow",
    "/admin/stats",
    "/ws/echo",
    "/docs",
    "/openapi.json",
    "/health/live",
    "/health/ready",
    "/{seg}",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
HEADER_NAMES = [
    "content-type",
    "cookie",
    "authorization",
    "user-agent",
    "x-count",
    "accept",
    "accept-encoding",
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
    "x-request-id",
    "if-none-match",
    "range",
    "expect",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "x-forwarded-for",
    "x-http-method-override",
    "last-event-id",
    "cache-control",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=XyZ",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=" + "b" * 300,
    "text/plain",
    "application/msgpack",
    "application/problem+json",
    "",
    ";;;",
    "application/json; charset=\x7f",
]

_bytes = st.binary(max_size=64)
_unicode = st.text(max_size=40)
_huge_numbers = st.sampled_from(
    [b"1e400", b"-1e400", b"1" * 5000, b"-" + b"9" * 400, b"0.1e-99999", b"NaN", b"Infinity", b"1_000", b"0x10"]
)


def _percent(raw: bytes) -> bytes:
    return b"".join(b"%%%02X" % byte for byte in raw)


_segment = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: str(n).encode()),
    _unicode.map(lambda text: _percent(text.encode())),
    _bytes.map(_percent),  # percent-encoded bytes, invalid UTF-8 included
    _bytes.filter(lambda raw: not any(b in raw for b in b" \r\n?#")),  # raw bytes on the wire
    st.sampled_from([b"..", b".", b"", b"%2e%2e", b"%2F", b"%00", b"%zz", b"%", b"%e2%82", b"~", b"%C0%AE"]),
    st.integers(min_value=1, max_value=20000).map(lambda n: b"a" * n),
    st.just(b"3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
)


@st.composite
def paths(draw: st.DrawFn) -> bytes:
    route = draw(st.sampled_from(ROUTES))
    out = route.encode()
    for field in (b"{int}", b"{seg}", b"{uuid}"):
        while field in out:
            out = out.replace(field, draw(_segment), 1)
    if b"{rest}" in out:
        rest = b"/".join(draw(st.lists(_segment, min_size=0, max_size=6)))
        out = out.replace(b"{rest}", rest)
    prefix = draw(st.sampled_from([b"", b"", b"", b"/", b"//", b"/./", b"/../", b"http://127.0.0.1"]))
    suffix = draw(st.sampled_from([b"", b"", b"", b"/", b"/.", b"/..", b"#frag", b";p=1"]))
    return prefix + out + suffix


_query_value = st.one_of(_segment, _huge_numbers, st.sampled_from([b"true", b"false", b"", b"%", b"=", b"&"]))
_query_key = st.one_of(st.sampled_from([b"q", b"limit", b"tag", b"count", b"chunks", b"seconds", b"x"]), _segment)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(_query_key, _query_value, st.booleans()), max_size=8))
    if not pairs:
        return draw(st.sampled_from([b"", b"?", b"?&&", b"?=", b"?" + b"a=" * 500]))
    return b"?" + b"&".join(key + (b"=" + value if with_value else b"") for key, value, with_value in pairs)


_header_value = st.one_of(
    st.binary(max_size=80).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"")),
    _unicode.map(lambda text: text.encode()),
    st.integers(min_value=1, max_value=70000).map(lambda n: b"v" * n),
    _huge_numbers,
    st.sampled_from(
        [
            b"Bearer ",
            b"Bearer a.b.c",
            b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
            b"Basic !!!",
            b"Basic " + b"QQ==",
            b"session=abc; session=def",
            b"a=b; =c; ;; d",
            b"gzip;q=2, br;q=-1, *;q=nan",
            b"bytes=0-1,2-3",
            b"100-continue",
            b"websocket",
            b"close",
            b"upgrade, keep-alive",
            b"https://app.example",
            b"null",
        ]
    ),
)
_header_name = st.one_of(
    st.sampled_from(HEADER_NAMES),
    st.text("abcdefghijklmnopqrstuvwxyz-_0123456789!#$%&'*+.^`|~", min_size=1, max_size=30),
).map(lambda name: name.encode())


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    headers = draw(st.lists(st.tuples(_header_name, _header_value), max_size=10))
    if draw(st.integers(0, 20)) == 0:  # now and then, very many
        headers += [(b"x-many-%d" % n, b"v") for n in range(draw(st.integers(100, 400)))]
    return headers


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
_person = st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=120), st.integers()), "age": st.one_of(st.integers(), st.text(max_size=5))},
    optional={
        "email": st.one_of(st.none(), st.text(max_size=30)),
        "tags": st.lists(st.text(max_size=10), max_size=25),
        "address": st.one_of(st.none(), st.dictionaries(st.sampled_from(["street", "city", "zip"]), _json_values)),
        "extra": _json_values,
    },
)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return json.dumps(draw(_person)).encode()
    if kind == 1:
        return json.dumps(draw(_json_values)).encode()
    if kind == 2:  # nested deeper than any parser's recursion limit
        depth = draw(st.integers(100, 100_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return opener * depth + b"1" + closer * draw(st.sampled_from([depth, 0, depth // 2]))
    if kind == 3:
        return b'{"name": "x", "age": ' + draw(_huge_numbers) + b"}"
    if kind == 4:  # invalid UTF-8 inside a string
        return b'{"name": "' + draw(st.binary(min_size=1, max_size=20)) + b'", "age": 3}'
    if kind == 5:  # truncated
        full = json.dumps(draw(_person)).encode()
        return full[: draw(st.integers(0, max(0, len(full) - 1)))]
    return draw(st.binary(max_size=200))


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    boundary = b"XyZ"
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from([b"file", b"note", b"username", b"password", b"", b'a"b', b"\xff"]))
        filename = draw(st.one_of(st.none(), st.sampled_from([b"a.txt", b"", b"../../etc/passwd", b"\xc3("])))
        disposition = b'form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        head = draw(
            st.sampled_from(
                [
                    b"Content-Disposition: " + disposition,
                    b"Content-Disposition: " + disposition + b"\r\nContent-Type: text/plain",
                    b"Content-Disposition: attachment",
                    b"Content-Type: text/plain",
                    b"",
                    b"Content-Disposition: form-data",
                    b"Garbage",
                ]
            )
        )
        parts.append(b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + draw(st.binary(max_size=100)) + b"\r\n")
    ending = draw(st.sampled_from([b"--XyZ--\r\n", b"--XyZ--", b"", b"--XyZ", b"--Xy", b"--XyZ--\r\ntrailer"]))
    if draw(st.integers(0, 15)) == 0:  # more parts than the limit
        parts += [b'--XyZ\r\nContent-Disposition: form-data; name="n%d"\r\n\r\nv\r\n' % n for n in range(60)]
    body = b"".join(parts) + ending
    if draw(st.booleans()):
        return body
    cut = draw(st.integers(0, len(body)))
    return body[:cut] + draw(st.binary(max_size=30))


@st.composite
def form_bodies(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(_query_key, _query_value), max_size=6))
    return b"&".join(key + b"=" + value for key, value in pairs)


@dataclass
class FuzzRequest:
    """A request in parts, so the long run can mutate one part and serialize it again."""

    method: str
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    content_type: bytes
    body: bytes
    framing: str  # "length", "chunked", "lying:<value>", "chunked:<size>" or "none"

    @property
    def complete(self) -> bool:
        """Whether the framing tells the truth, so the server has the whole request once it is sent."""
        return self.framing in ("length", "chunked", "none")

    @property
    def raw(self) -> bytes:
        lines = [self.method.encode("utf-8", "surrogateescape") + b" " + self.target + b" " + self.version]
        lines.append(b"Host: 127.0.0.1")
        lines += [name + b": " + value for name, value in self.headers]
        body = self.body
        if body or self.framing != "none":
            lines.append(b"Content-Type: " + self.content_type)
            kind, _, value = self.framing.partition(":")
            if kind == "length":
                lines.append(b"Content-Length: %d" % len(body))
            elif kind == "lying":
                lines.append(b"Content-Length: " + value.encode())
            elif kind == "chunked":
                lines.append(b"Transfer-Encoding: chunked")
                size = value.encode() or b"%x" % len(body)
                body = (size + b"\r\n" + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def __repr__(self) -> str:  # what a failing example prints: every part, each cut short
        def cut(data: bytes, at: int = 80) -> str:
            return repr(data[:at]) + (f"...({len(data)} bytes)" if len(data) > at else "")

        headers = ", ".join(f"{name.decode(errors='replace')}: {cut(value, 40)}" for name, value in self.headers[:12])
        more = f" (+{len(self.headers) - 12} more)" if len(self.headers) > 12 else ""
        return (
            f"FuzzRequest({self.method!r} {cut(self.target, 160)} {self.version!r}; headers [{headers}{more}]; "
            f"content-type {cut(self.content_type, 60)}; framing {self.framing}; body {cut(self.body, 120)})"
        )


def printable(target: bytes) -> bytes:
    """``target`` with every byte a request line cannot carry percent-encoded, so it reaches the app."""
    return b"".join(bytes([byte]) if 33 <= byte <= 126 else b"%%%02X" % byte for byte in target)


_clean_header_value = st.one_of(
    _header_value.map(lambda raw: bytes(byte for byte in raw if byte >= 32 and byte != 127)),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.encode),
).map(lambda value: value[:8000].strip())


@st.composite
def http_requests(draw: st.DrawFn) -> FuzzRequest:
    """Mostly requests the engine parses, so the hostility reaches the app; one in four is malformed HTTP."""
    malformed = draw(st.sampled_from([False, False, False, True]))
    if malformed:
        method = draw(st.sampled_from(["get", "G E T", "GET\x00", "PROPFIND", "M" * 300, "\xff", "", *METHODS]))
        target = draw(paths()) + draw(queries())
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"", b"http/1.1"]))
        headers = draw(header_lists())
    else:
        method = draw(st.sampled_from(METHODS[:7]))
        target = printable(draw(paths()) + draw(queries()))[:6000]
        version = b"HTTP/1.1"
        headers = draw(st.lists(st.tuples(_header_name, _clean_header_value), max_size=10))
    content_type = draw(st.sampled_from(CONTENT_TYPES)).encode()
    body_kind = draw(st.sampled_from(["json", "multipart", "none", "form", "json", "multipart", "bytes"]))
    if body_kind == "json":
        body = draw(json_bodies())
        content_type = draw(st.sampled_from([b"application/json", content_type]))
    elif body_kind == "multipart":
        body = draw(multipart_bodies())
        content_type = draw(st.sampled_from([b"multipart/form-data; boundary=XyZ", content_type]))
    elif body_kind == "form":
        body = draw(form_bodies())
        content_type = b"application/x-www-form-urlencoded"
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=300))
    else:
        body = b""
    framings = ["length", "length", "chunked", "none"]
    if malformed:
        framings += ["lying:-1", "lying:abc", "lying:0", "lying:1e3", "lying:99999999999999", "chunked:zz",
                     "chunked:-1", "chunked:ffffffffffffffffff"]  # fmt: skip
    framing = draw(st.sampled_from(framings))
    return FuzzRequest(method, target, version, headers, content_type, body, framing)


# -- WebSocket frames ---------------------------------------------------------------------------------------------


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True, length: int | None = None
) -> bytes:
    """One WebSocket frame; ``length`` may lie about the payload's size."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload) if length is None else length
    if size < 126:
        header = struct.pack("!BB", first, (0x80 if masked else 0) | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, size)
    else:
        header = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, size)
    if not masked:
        return header + payload
    mask = b"\x01\x02\x03\x04"
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


_frames = st.builds(
    frame,
    opcode=st.sampled_from([0x0, 0x1, 0x1, 0x2, 0x2, 0x3, 0x7, 0x8, 0x9, 0xA, 0xB, 0xF]),
    payload=st.one_of(st.binary(max_size=200), st.text(max_size=50).map(str.encode), st.just(b"\xff\xfe")),
    fin=st.booleans() | st.just(True),
    rsv=st.sampled_from([0, 0, 0, 1, 4, 7]),
    masked=st.booleans() | st.just(True),
    length=st.one_of(st.none(), st.none(), st.integers(0, 2**63 - 1)),
)
websocket_frame_sequences = st.lists(_frames, min_size=1, max_size=6)
