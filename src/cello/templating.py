"""Jinja2 templates: autoescaped HTML, sync or async rendering, ``url_for`` for routes and static files.

``App(templates="templates")`` (or ``app.templates = Templates(...)``) configures the directory. In a handler::

    return TemplateResponse(request, "post.html", {"post": post})       # sync or async handlers
    return await app.render("post.html", post=post)                    # async rendering

Every template sees ``url_for(name, **params)`` (a route's path; ``url_for("static", path="site.css")`` for a
static directory named "static") and, when rendered for a request, ``request``. Autoescaping is on for every
template whose name does not end in ``.txt`` — turn it off for one value with ``|safe`` or ``Markup``.
Jinja2 comes with the ``templates`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .http.exceptions import ConfigurationError
from .http.response import HeadersArg, HTMLResponse

if TYPE_CHECKING:
    from .app import App
    from .http.request import Request

__all__ = ["TemplateResponse", "Templates"]


class Templates:
    """A template directory (or several) with one Jinja2 environment for sync and one for async rendering."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | list[str | os.PathLike[str]],
        *,
        globals: Mapping[str, Any] | None = None,
        filters: Mapping[str, Any] | None = None,
        auto_reload: bool = True,
        autoescape: bool = True,
    ) -> None:
        try:
            import jinja2
        except ImportError:
            raise ConfigurationError("templates need Jinja2: pip install 'cello[templates]'") from None
        directories = [os.fspath(d) for d in (directory if isinstance(directory, list) else [directory])]
        for path in directories:  # NOTE: a missing folder would show only as a 500 on the first render
            if not os.path.isdir(path):
                raise ConfigurationError(
                    f"template directory {path!r} does not exist (a relative path is read from the working "
                    f"directory, {os.getcwd()})"
                )
        loader = jinja2.FileSystemLoader(directories)
        # on for every template but .txt ones, and for template text given inline; off everywhere when asked
        escaping = (
            jinja2.select_autoescape(disabled_extensions=("txt",), default_for_string=True, default=True)
            if autoescape
            else False
        )
        self._sync = jinja2.Environment(loader=loader, autoescape=escaping, auto_reload=auto_reload)  # noqa: S701
        self._async = jinja2.Environment(
            loader=loader,
            autoescape=escaping,  # noqa: S701
            auto_reload=auto_reload,
            enable_async=True,
        )
        # one set of globals and filters for both: what is added to .env later shows in async rendering too
        self._async.globals = self._sync.globals
        self._async.filters = self._sync.filters
        self._sync.globals["csrf_input"] = jinja2.pass_context(_csrf_input)
        self._sync.globals.update(globals or {})
        self._sync.filters.update(filters or {})
        self.app: App | None = None

    @property
    def env(self) -> Any:
        """The (sync) Jinja2 environment, for adding globals, filters and tests."""
        return self._sync

    def bind(self, app: App) -> None:
        """Give templates ``url_for`` for this app's routes."""
        self.app = app
        self._sync.globals.setdefault("url_for", self.url_for)

    def url_for(self, name: str, /, **params: Any) -> str:
        if self.app is None:
            raise ConfigurationError("these templates are not attached to an app; url_for needs one")
        return self.app.url_path_for(name, **params)

    def _context(self, context: Mapping[str, Any] | None, request: Request | None) -> dict[str, Any]:
        merged = dict(context or {})
        if request is not None:
            merged.setdefault("request", request)
            # what the security middleware leaves for pages: the CSRF token for forms, the CSP nonce for scripts
            extras = request._context
            if extras:
                for key in ("csrf_token", "csrf_field", "csp_nonce"):
                    if key in extras:
                        merged.setdefault(key, extras[key])
        return merged

    def render(self, name: str, context: Mapping[str, Any] | None = None, request: Request | None = None) -> str:
        return str(self._sync.get_template(name).render(self._context(context, request)))

    def render_string(
        self, source: str, context: Mapping[str, Any] | None = None, request: Request | None = None
    ) -> str:
        """Render template text given inline (autoescaped like an HTML template)."""
        return str(self._sync.from_string(source).render(self._context(context, request)))

    async def render_async(
        self, name: str, context: Mapping[str, Any] | None = None, request: Request | None = None
    ) -> str:
        return str(await self._async.get_template(name).render_async(self._context(context, request)))

    def response(
        self,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        request: Request | None = None,
        status: int = 200,
        headers: HeadersArg = None,
    ) -> HTMLResponse:
        return HTMLResponse(self.render(name, context, request), status, headers)


def _csrf_input(context: Any) -> Any:
    """``{{ csrf_input() }}`` in a form: the hidden field carrying the CSRF token (``app.enable_csrf()``)."""
    from markupsafe import Markup

    token = context.get("csrf_token")
    field = context.get("csrf_field")
    if not (token and field):  # no CSRF protection, or a header-only one that reads no form field
        return Markup("")
    return Markup('<input type="hidden" name="%s" value="%s">') % (field, token)


class TemplateResponse(HTMLResponse):
    """``TemplateResponse(request, "page.html", {"key": value})`` renders with the request's app's templates."""

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        status: int = 200,
        headers: HeadersArg = None,
    ) -> None:
        templates = request.app.templates
        super().__init__(templates.render(name, context, request), status, headers)
