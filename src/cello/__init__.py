"""Cello: a batteries-included Python web framework on the granian engine."""

from ._version import __version__
from .app import App, AppConfig
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
from .routing import Blueprint, register_converter

__all__ = [
    "URL",
    "Address",
    "App",
    "AppConfig",
    "BadRequest",
    "Blueprint",
    "CelloError",
    "ConfigurationError",
    "FileResponse",
    "Forbidden",
    "FormData",
    "HTMLResponse",
    "HTTPException",
    "Headers",
    "JSONResponse",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PlainTextResponse",
    "ProblemResponse",
    "QueryParams",
    "RedirectResponse",
    "Request",
    "Response",
    "StreamingResponse",
    "Unauthorized",
    "UnsupportedMediaType",
    "__version__",
    "register_converter",
]
