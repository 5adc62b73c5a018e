"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers a request's bytes meet inside Cello: the query
string, forms, cookies, forwarded addresses, multipart bodies, the router with its converters, and the JSON
decoders of typed bodies. Atheris mutates toward inputs that reach new code, which finds what random generation
misses in tight parsers. Any exception other than the 4xx Cello means to raise is a crash, with its input kept.

    .venv/bin/python reliability/atheris_fuzz.py -max_total_time=120 -artifact_prefix=/tmp/cello-fuzz-

(libFuzzer's own options; needs the atheris package: pip install atheris.)
"""

from __future__ import annotations

import sys
from typing import Annotated

import atheris

with atheris.instrument_imports():
    import msgspec

    from cello import App
    from cello.dto.codecs import codec_for
    from cello.dto.errors import ValidationFailed
    from cello.http.datastructures import parse_address, parse_cookie_header, parse_urlencoded
    from cello.http.exceptions import HTTPException
    from cello.http.multipart import parse_multipart
    from cello.http.uploads import MultipartLimits


class Item(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=50)]
    price: Annotated[float, msgspec.Meta(ge=0)]
    tags: list[str] = []


app = App()


@app.get("/items/{item_id:int}/{slug}")
def item(item_id: int, slug: str) -> dict[str, object]:
    return {}


@app.get("/files/{path:path}")
def files(path: str) -> dict[str, object]:
    return {}


@app.get("/u/{key:uuid}/{ratio:float}")
def uuid_route(key: str, ratio: float) -> dict[str, object]:
    return {}


RESOLVE = app.dispatcher.resolve
ITEM = codec_for(Item)
ANY = codec_for(dict[str, object])
LIMITS = MultipartLimits(max_size=1 << 20, max_file_size=1 << 19, max_parts=50, spool_size=1 << 16)
EXPECTED = (HTTPException, ValidationFailed)  # the refusals Cello means: each becomes a 4xx


def one_input(data: bytes) -> None:
    fuzz = atheris.FuzzedDataProvider(data)
    target = fuzz.ConsumeIntInRange(0, 6)
    rest = fuzz.ConsumeBytes(fuzz.remaining_bytes())
    text = rest.decode("utf-8", "surrogateescape")
    try:
        if target == 0:
            parse_urlencoded(text)
        elif target == 1:
            parse_cookie_header(text)
        elif target == 2:
            parse_address(text)
        elif target == 3:
            boundary, _, body = rest.partition(b"\n")
            parse_multipart(body, "multipart/form-data; boundary=" + boundary.decode("latin-1"), LIMITS)
        elif target == 4:
            method = ("GET", "POST", "HEAD")[len(rest) % 3]
            RESOLVE(method, "/" + text.lstrip("/"))
        elif target == 5:
            ITEM.decode_json(rest)
        else:
            ANY.decode_json(rest)
    except EXPECTED:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
