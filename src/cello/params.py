"""Markers that say where a handler parameter comes from: ``Query()``, ``Header()``, ``Cookie()``, ``Path()``,
``Body()``, ``Form()``, ``File()`` and ``Depends()``.

Use them as defaults (``limit: int = Query(10, le=100)``) or inside ``Annotated`` (``Annotated[int, Query(le=100)]``).
A parameter without a marker is classified by its name and type (see ``cello.handlers.plan``). The constraints
(``ge``, ``max_length``, ``pattern``...) become ``msgspec.Meta`` on the parameter's type, so they are checked by
the same fast validator as bodies and show up in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

__all__ = ["Body", "Cookie", "Depends", "File", "Form", "Header", "Param", "Path", "Query"]


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()

Source = Literal["path", "query", "header", "cookie", "body", "form", "file"]


class Param:
    """Where a parameter comes from, how it is named on the wire, and what it must satisfy."""

    source: Source = "query"

    def __init__(
        self,
        default: Any = UNSET,
        *,
        alias: str | None = None,
        title: str | None = None,
        description: str | None = None,
        examples: list[Any] | None = None,
        deprecated: bool = False,
        include_in_schema: bool = True,
        gt: float | None = None,
        ge: float | None = None,
        lt: float | None = None,
        le: float | None = None,
        multiple_of: float | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
        pattern: str | None = None,
    ) -> None:
        self.default = UNSET if default is Ellipsis else default  # Query(...): FastAPI's way to say "required"
        self.alias = alias
        self.title = title
        self.description = description
        self.examples = examples
        self.deprecated = deprecated
        self.include_in_schema = include_in_schema
        self.constraints = {
            key: value
            for key, value in (
                ("gt", gt),
                ("ge", ge),
                ("lt", lt),
                ("le", le),
                ("multiple_of", multiple_of),
                ("min_length", min_length),
                ("max_length", max_length),
                ("pattern", pattern),
            )
            if value is not None
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(default={self.default!r}, alias={self.alias!r})"


class Path(Param):
    source = "path"


class Query(Param):
    source = "query"


class Header(Param):
    """A request header. The parameter name's underscores become hyphens (``user_agent`` → ``User-Agent``)
    unless ``convert_underscores=False`` or an ``alias`` is given."""

    source = "header"

    def __init__(self, default: Any = UNSET, *, convert_underscores: bool = True, **options: Any) -> None:
        super().__init__(default, **options)
        self.convert_underscores = convert_underscores


class Cookie(Param):
    source = "cookie"


class Body(Param):
    """The request body. ``embed=True`` reads the parameter from a member of a JSON object named like it."""

    source = "body"

    def __init__(self, default: Any = UNSET, *, embed: bool = False, media_type: str = "application/json",
                 **options: Any) -> None:  # fmt: skip
        super().__init__(default, **options)
        self.embed = embed
        self.media_type = media_type


class Form(Param):
    """A field of a urlencoded or multipart form; a model type reads the whole form into the model."""

    source: Source = "form"


class File(Form):
    """An uploaded file of a multipart form (``UploadFile``, ``bytes``, or a list of them)."""

    source = "file"


class Depends:
    """A value computed by ``dependency`` for each request (or once per app with ``scope="app"``).

    ``dependency`` may be a function or class, sync or async, and may ``yield`` once to run teardown code after
    the handler. Its own parameters are resolved like a handler's, so dependencies nest. Within one request each
    dependency runs once and its value is shared, unless ``use_cache=False``.
    """

    __slots__ = ("dependency", "use_cache", "scope")

    def __init__(
        self,
        dependency: Callable[..., Any] | None = None,
        *,
        use_cache: bool = True,
        scope: Literal["request", "app"] = "request",
    ) -> None:
        if scope not in ("request", "app"):
            raise ValueError(f"scope must be 'request' or 'app', not {scope!r}")
        self.dependency = dependency
        self.use_cache = use_cache
        self.scope = scope

    def __repr__(self) -> str:
        name = getattr(self.dependency, "__name__", repr(self.dependency))
        return f"Depends({name}{', scope=app' if self.scope == 'app' else ''})"
