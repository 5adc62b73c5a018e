"""Cello: a batteries-included Python web framework on the granian engine."""

from ._version import __version__
from .app import App, AppConfig
from .background import BackgroundTasks
from .http.datastructures import URL, Address, FormData, Headers, QueryParams
from .http.exceptions import (
    BadRequest,
    CelloError,
    ConfigurationError,
    Forbidden,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestValidationError,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from .http.request import Request
from .http.response import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    ProblemResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from .http.uploads import MultipartLimits, UploadFile
from .openapi.config import OpenAPIConfig
from .params import Body, Cookie, Depends, File, Form, Header, Path, Query
from .realtime.sse import EventSourceResponse, ServerSentEvent
from .realtime.websocket import Message, WebSocket, WebSocketDisconnect
from .routing import Blueprint, register_converter
from .templating import TemplateResponse, Templates


def __getattr__(name: str) -> object:
    # NOTE: names whose modules an app that does not use them should not import (PEP 562)
    if name == "HealthCheckConfig":
        from .middleware.health import HealthCheckConfig

        return HealthCheckConfig
    if name == "OpenTelemetryConfig":
        from .telemetry import OpenTelemetryConfig

        return OpenTelemetryConfig
    raise AttributeError(f"module 'cello' has no attribute {name!r}")


__all__ = [
    "URL",
    "Address",
    "App",
    "AppConfig",
    "BackgroundTasks",
    "BadRequest",
    "Blueprint",
    "Body",
    "CelloError",
    "ConfigurationError",
    "Cookie",
    "Depends",
    "EventSourceResponse",
    "File",
    "FileResponse",
    "Forbidden",
    "Form",
    "FormData",
    "HTMLResponse",
    "HTTPException",
    "Header",
    "Headers",
    "HealthCheckConfig",
    "JSONResponse",
    "Message",
    "MethodNotAllowed",
    "MultipartLimits",
    "NotFound",
    "OpenAPIConfig",
    "OpenTelemetryConfig",
    "Path",
    "PayloadTooLarge",
    "PlainTextResponse",
    "ProblemResponse",
    "Query",
    "QueryParams",
    "RedirectResponse",
    "Request",
    "RequestValidationError",
    "Response",
    "ServerSentEvent",
    "ServiceUnavailable",
    "StreamingResponse",
    "TemplateResponse",
    "Templates",
    "Unauthorized",
    "UnsupportedMediaType",
    "UploadFile",
    "WebSocket",
    "WebSocketDisconnect",
    "__version__",
    "register_converter",
]
