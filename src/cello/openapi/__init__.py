"""OpenAPI 3.1: ``config`` (what the app says about its document), ``schema`` (the document built from the
routes) and ``ui`` (Swagger UI / ReDoc). Only the config is imported here; the rest loads when an app compiles."""

from .config import OpenAPIConfig

__all__ = ["OpenAPIConfig"]
