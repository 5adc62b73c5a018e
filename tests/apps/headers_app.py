"""Security headers on one app, served on every face by tests/test_security_headers.py and opened in Chromium by
tests/live/test_security_headers_browser.py.

The middleware runs with its defaults; routes show the per-route option (a changed CSP, no framing rule, all
headers off, a per-request nonce), a handler that sets its own headers, and error answers. The loopback peer is
a trusted proxy, so ``X-Forwarded-Proto: https`` makes a request count as one over TLS on every face.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from cello import App, HTTPException, Response, TemplateResponse, Templates
from cello.security.headers import DEFAULT_CSP

app = App(trusted_proxies=["127.0.0.1", "::1"])
app.enable_security_headers()

# NOTE: the page is kept here, beside the routes that serve it, rather than in a template directory of its own
app.templates = Templates(Path(__file__).resolve().parent / "site" / "templates")
app.templates.env.loader = jinja2.DictLoader(
    {
        "nonce.html": """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nonce</title>
<style nonce="{{ csp_nonce }}">#styled { color: rgb(0, 128, 0); }</style>
<style>#unstyled { color: rgb(255, 0, 0); }</style>
</head>
<body>
<p id="styled">styled</p>
<p id="unstyled">unstyled</p>
<button id="handler" onclick="document.body.dataset.attribute = 'ran'">inline handler</button>
<script>document.body.dataset.without = "ran";</script>
<script nonce="{{ csp_nonce }}">document.body.dataset.with = "ran";</script>
</body>
</html>
"""
    }
)

EMBED_CSP = DEFAULT_CSP.with_(frame_ancestors=["https://partner.example"])
OWN_CSP = "default-src 'none'"


@app.get("/__ready")
def ready():
    return "ok"


@app.get("/hello")
def hello():
    return {"hello": "world"}


@app.get("/embed", security_headers={"x_frame_options": None, "csp": EMBED_CSP})
def embed():
    return {"embeddable": True}


@app.get("/bare", security_headers=False)
def bare():
    return {"headers": "none"}


@app.get("/page", security_headers={"csp_nonce": True})
def page(request):
    return TemplateResponse(request, "nonce.html")


@app.get("/own")
def own():
    return Response("mine", headers={"content-security-policy": OWN_CSP, "x-frame-options": "SAMEORIGIN"})


@app.get("/items")
def items(limit: int):
    return {"limit": limit}


@app.get("/teapot")
def teapot():
    raise HTTPException(418, "short and stout")
