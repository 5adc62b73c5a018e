"""The routes that serve the OpenAPI document, Swagger UI and ReDoc — with their assets, from the app itself.

The UI assets come from the ``openapi-ui-bundles`` package (``pip install 'cello[openapi]'``), so the pages work
offline and behind firewalls that block CDNs. Without the package, only the JSON document is served and a
warning at startup says how to get the pages.

The pages carry no inline script, so they work under a Content-Security-Policy that allows scripts from the
app's own origin only (``cello.security.SecurityHeaders``' default): Swagger UI's start-up code is a small script
served beside the bundles, which reads the document's URL from the page. Each page route also says, in its
``security_headers`` option, what it needs added to the app's policy — ReDoc injects ``<style>`` elements at run
time (some before it could be given a nonce) and runs its search in a ``blob:`` worker, so its page alone allows
inline styles and such workers.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..http.exceptions import NotFound
from ..http.response import FileResponse, HTMLResponse, Response
from ..routing.router import Route

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("cello.openapi")

_SWAGGER_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png")
_REDOC_ASSETS = ("redoc.standalone.js",)
_SWAGGER_INIT = "swagger-initializer.js"

# what each page needs on top of the app's CSP (merged into it, see cello.security.CSP.merge); with the default
# policy only ReDoc's entries add anything
_SWAGGER_CSP = {"script_src": "'self'", "style_src": "'self'", "img_src": "'self' data:", "connect_src": "'self'"}
_REDOC_CSP = {
    "script_src": "'self'",
    "style_src": "'self' 'unsafe-inline'",
    # the "API docs by Redocly" logo in the side menu comes from Redocly's CDN
    "img_src": "'self' data: https://cdn.redoc.ly",
    "connect_src": "'self'",
    "worker_src": "'self' blob:",
}


def _asset_directories() -> dict[str, Path] | None:
    try:
        from openapi_ui_bundles import redoc, swagger_ui
    except ImportError:
        return None
    found = {name: Path(swagger_ui.static_path) / name for name in _SWAGGER_ASSETS}
    found.update({name: Path(redoc.static_path) / name for name in _REDOC_ASSETS})
    return {name: path for name, path in found.items() if path.is_file()}


def openapi_routes(app: App) -> list[Route]:
    config = app.config.openapi
    if config is None:
        return []
    routes: list[Route] = []
    hidden = {"include_in_schema": False}
    if config.openapi_url:
        cache: dict[str, bytes] = {}

        async def openapi_document(request: Any) -> Response:
            if "document" not in cache:
                from .schema import build_openapi

                cache["document"] = orjson.dumps(build_openapi(app))
            return Response(cache["document"], media_type="application/json")

        routes.append(Route(config.openapi_url, ["GET"], openapi_document, name="openapi", meta=hidden))
    if not (config.docs_url or config.redoc_url) or not config.openapi_url:
        return routes
    assets = _asset_directories()
    if assets is None:
        # info, not a warning: the pages are on by default, and an app that never wanted them should stay quiet
        logger.info("Swagger UI and ReDoc need the openapi extra: pip install 'cello[openapi]'")
        return routes
    title = html.escape(config.title)
    spec_url = html.escape(config.openapi_url)
    base = html.escape(config.assets_url.rstrip("/"))

    async def asset(request: Any, name: str) -> Response:
        if name == _SWAGGER_INIT:
            response = Response(_SWAGGER_INIT_SCRIPT, media_type="text/javascript")
            response.headers["cache-control"] = "public, max-age=86400"
            return response
        path = assets.get(name)
        if path is None:
            raise NotFound()
        response = FileResponse(path)
        response.headers["cache-control"] = "public, max-age=86400"
        return response

    routes.append(Route(config.assets_url.rstrip("/") + "/{name}", ["GET"], asset, name="openapi_asset", meta=hidden))
    if config.docs_url:
        swagger_page = _SWAGGER_PAGE.format(title=title, spec_url=spec_url, base=base)

        async def swagger_ui(request: Any) -> Response:
            return HTMLResponse(swagger_page)

        meta = {**hidden, "security_headers": {"csp_merge": _SWAGGER_CSP}}
        routes.append(Route(config.docs_url, ["GET"], swagger_ui, name="swagger_ui", meta=meta))
    if config.redoc_url:
        redoc_page = _REDOC_PAGE.format(title=title, spec_url=spec_url, base=base)

        async def redoc_ui(request: Any) -> Response:
            return HTMLResponse(redoc_page)

        # NOTE: no nonce here: next to a nonce, browsers ignore 'unsafe-inline', which ReDoc's styles rely on
        meta = {**hidden, "security_headers": {"csp_nonce": False, "csp_merge": _REDOC_CSP}}
        routes.append(Route(config.redoc_url, ["GET"], redoc_ui, name="redoc", meta=meta))
    return routes


_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — Swagger UI</title>
<link rel="stylesheet" href="{base}/swagger-ui.css">
<link rel="icon" type="image/png" href="{base}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-spec-url="{spec_url}"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script src="{base}/swagger-ui-standalone-preset.js"></script>
<script src="{base}/swagger-initializer.js"></script>
</body>
</html>
"""

# The page's start-up code, served as a file so that the page has no inline script. It reads the document's URL
# from the page, so it is the same for every app. validatorUrl null: the default badge would send the document's
# URL to a third-party validator, from a page meant to work offline (and the default CSP would block the image).
_SWAGGER_INIT_SCRIPT = """window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.specUrl,
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  persistAuthorization: true,
  validatorUrl: null
});
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — ReDoc</title>
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<redoc spec-url="{spec_url}"></redoc>
<script src="{base}/redoc.standalone.js"></script>
</body>
</html>
"""
