"""Fast mutation of hostile requests, for the long fuzz run.

Hypothesis draws a few thousand structured seeds (``strategies.http_requests``); drawing a million that way would
take hours of client CPU. This module multiplies them instead: each case is a seed with one to three of its parts
bent (path, query, a header, the body, the content type, the framing, the method), serialized again — about
forty times cheaper per case, so the server, not the client, sets the pace.
"""

from __future__ import annotations

import random
from dataclasses import replace

from strategies import CONTENT_TYPES, HEADER_NAMES, METHODS, FuzzRequest, printable

TOKENS = [
    b"%",
    b"%zz",
    b"%00",
    b"%ff",
    b"%c0%ae",
    b"..",
    b"/../",
    b"//",
    b"\x00",
    b"\x7f",
    b"\xff",
    b"\xc3(",
    b"\xe2\x82",
    b"\t",
    b";",
    b"=",
    b"&",
    b"?",
    b"#",
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"1e400",
    b"-0",
    b"9" * 40,
    b"null",
    b"true",
]


def _bend(data: bytes, rng: random.Random, *, wire_safe: bool) -> bytes:
    """``data`` with one random edit; ``wire_safe`` keeps out what would end the line it sits on."""
    choice = rng.randrange(6)
    at = rng.randint(0, len(data))
    if choice == 0 and data:  # flip a byte
        index = rng.randrange(len(data))
        data = data[:index] + bytes([data[index] ^ (1 << rng.randrange(8))]) + data[index + 1 :]
    elif choice == 1:
        data = data[:at] + rng.choice(TOKENS) + data[at:]
    elif choice == 2:
        data = data[:at]
    elif choice == 3 and data:  # repeat a slice
        end = rng.randint(at, len(data))
        data = data[:end] + data[at:end] * rng.randint(1, 50) + data[end:]
    elif choice == 4:
        data = data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]
    else:
        data = data[:at] + b"A" * rng.choice([100, 1000, 4000] if wire_safe else [1000, 100000]) + data[at:]
    if wire_safe:
        data = data.replace(b"\r", b"").replace(b"\n", b"")
    return data


def _on_the_wire(target: bytes, rng: random.Random) -> bytes:
    """Mostly percent-encoded (the app sees it); now and then raw (the engine must refuse it)."""
    return printable(target) if rng.random() < 0.8 else target.replace(b" ", b"%20")


def mutate(seed: FuzzRequest, seeds: list[FuzzRequest], rng: random.Random) -> FuzzRequest:
    case = replace(seed, headers=list(seed.headers))
    for _ in range(rng.randint(1, 3)):
        part = rng.randrange(9)
        if part == 0:
            path, mark, query = case.target.partition(b"?")
            case.target = _on_the_wire(_bend(path, rng, wire_safe=True), rng) + mark + query
        elif part == 1:
            path, _, query = case.target.partition(b"?")
            case.target = path + b"?" + _on_the_wire(_bend(query, rng, wire_safe=True), rng)
        elif part == 2 and case.headers:
            index = rng.randrange(len(case.headers))
            name, value = case.headers[index]
            value = _bend(value, rng, wire_safe=True)
            if rng.random() < 0.8:  # mostly what the engine lets through, so the app sees it
                value = bytes(byte for byte in value if byte >= 32 and byte != 127).strip()
            case.headers[index] = (name, value)
        elif part == 3:
            name = rng.choice(HEADER_NAMES).encode()
            case.headers.append((name, rng.choice(rng.choice(seeds).headers or [(b"", b"x")])[1]))
        elif part in (4, 5):
            case.body = _bend(case.body, rng, wire_safe=False)
        elif part == 6:
            case.content_type = rng.choice([rng.choice(CONTENT_TYPES).encode(), rng.choice(seeds).content_type])
            if rng.random() < 0.5:
                case.body = rng.choice(seeds).body
        elif part == 7:
            case.framing = rng.choice(["length", "length", "chunked", "none", "lying:0", "lying:5", "chunked:zz"])
        else:
            case.method = rng.choice(METHODS)
    return case
