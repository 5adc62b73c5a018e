"""GraphiQL, the in-browser GraphQL IDE, served by the app itself: the page at the endpoint's own path (a browser's
GET without a query), its scripts and stylesheet beside it — no CDN, so it works offline and behind firewalls.

The page has no inline script or style: it loads GraphiQL's UMD build with React, then a small start-up script of
ours that reads the endpoint's URL from the page. So it works under a Content-Security-Policy that allows the app's
own origin only (``cello.security.SecurityHeaders``' default). The third-party files are stored gzip-compressed
(``static/NOTICE.md`` says where they come from) and sent as they are to clients that accept gzip.
"""

from __future__ import annotations

import gzip
import html
from pathlib import Path

from ..http.exceptions import NotFound
from ..http.request import Request
from ..http.response import HTMLResponse, Response

__all__ = ["GRAPHIQL_VERSION", "asset", "assets_path", "page"]

GRAPHIQL_VERSION = "3.8.3"  # in the assets' URLs: a new version is a new URL, so they may be cached for a year
STATIC = Path(__file__).resolve().parent / "static"
_MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_LAYOUT = b"html, body, #graphiql { height: 100%; margin: 0; }\n"
_FILES = {
    "graphiql.min.css": "graphiql.min.css.gz",
    "react.production.min.js": "react.production.min.js.gz",
    "react-dom.production.min.js": "react-dom.production.min.js.gz",
    "graphiql.min.js": "graphiql.min.js.gz",
    "graphiql-start.js": "graphiql-start.js",
}
_loaded: dict[str, tuple[bytes, bool]] = {}  # name -> (bytes, gzip-compressed)


def assets_path(endpoint: str) -> str:
    return f"{endpoint.rstrip('/')}/_graphiql/{GRAPHIQL_VERSION}"


def page(endpoint: str) -> Response:
    """The GraphiQL page for the endpoint at ``endpoint``."""
    base = html.escape(assets_path(endpoint), quote=True)
    scripts = "".join(
        f'<script src="{base}/{name}"></script>'
        for name in ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js", "graphiql-start.js")
    )
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>GraphiQL</title>'
        f'<link rel="stylesheet" href="{base}/graphiql.min.css"><link rel="stylesheet" href="{base}/layout.css">'
        f'</head><body><div id="graphiql" data-endpoint="{html.escape(endpoint, quote=True)}">Loading…</div>'
        f"{scripts}</body></html>"
    )
    return HTMLResponse(text, headers={"cache-control": "no-cache"})


def asset(request: Request, name: str) -> Response:
    """One of the page's files, compressed for a client that accepts gzip."""
    if name == "layout.css":
        body, compressed = _LAYOUT, False
    else:
        stored = _FILES.get(name)
        if stored is None:
            raise NotFound()
        if name not in _loaded:
            _loaded[name] = ((STATIC / stored).read_bytes(), stored.endswith(".gz"))
        body, compressed = _loaded[name]
    headers = {"cache-control": "public, max-age=31536000, immutable", "vary": "accept-encoding"}
    if compressed:
        if "gzip" in (request.header("accept-encoding") or "").lower():
            headers["content-encoding"] = "gzip"
        else:
            body = gzip.decompress(body)
    return Response(body, headers=headers, media_type=_MEDIA[Path(name).suffix])
