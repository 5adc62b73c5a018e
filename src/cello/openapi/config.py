"""What an app says about its own OpenAPI document and documentation pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OpenAPIConfig:
    """``App(openapi=OpenAPIConfig(...))``; ``App(openapi=None)`` turns the document and pages off.

    ``openapi_url``, ``docs_url`` (Swagger UI) and ``redoc_url``: where they are served (None: not served).
    ``asyncapi_url`` and ``asyncapi_docs_url``: the AsyncAPI document of an app with message brokers, and its page.
    ``servers``: OpenAPI server objects, e.g. ``[{"url": "https://api.example.com"}]``.
    ``security_schemes``: named OpenAPI security scheme objects (the auth middleware adds its own here).
    ``security``: requirements applied to every operation unless a route declares ``security=``.
    """

    title: str = "Cello API"
    version: str = "0.1.0"
    description: str | None = None
    summary: str | None = None
    servers: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    openapi_url: str | None = "/openapi.json"
    docs_url: str | None = "/docs"
    redoc_url: str | None = "/redoc"
    assets_url: str = "/docs/assets"
    asyncapi_url: str | None = "/asyncapi.json"
    asyncapi_docs_url: str | None = "/asyncapi"
    security_schemes: dict[str, dict[str, Any]] = field(default_factory=dict)
    security: list[dict[str, list[str]]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
