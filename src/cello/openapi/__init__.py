"""OpenAPI 3.1: the document built from the routes, and the Swagger UI / ReDoc pages that show it."""

from .config import OpenAPIConfig
from .schema import build_openapi

__all__ = ["OpenAPIConfig", "build_openapi"]
