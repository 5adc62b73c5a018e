"""Routes, the router (static dict + radix tree), converters and blueprints."""

from .blueprint import Blueprint, Middleware
from .converters import register_converter
from .router import MethodMap, Route, Router

__all__ = ["Blueprint", "MethodMap", "Middleware", "Route", "Router", "register_converter"]
