"""Validation failures in one shape, whichever library found them.

Every error is ``{"loc": [...], "msg": str, "type": str, "input": ...}``: ``loc`` starts with where the value came
from (``"body"``, ``"query"``, ``"path"``, ``"header"``, ``"cookie"``, ``"form"``) and continues with the path
inside it (field names and list indexes). msgspec reports a JSON path in its message; pydantic a ``loc`` tuple.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

ErrorItem = dict[str, Any]

_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[([^\]]*)\]")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")


class ValidationFailed(Exception):
    """Raised by codecs and extractors; the dispatcher turns the collected errors into one 422 answer."""

    def __init__(self, errors: list[ErrorItem]) -> None:
        super().__init__(errors)
        self.errors = errors


def msgspec_errors(exc: Exception, location: Sequence[str | int], document: Any = None) -> list[ErrorItem]:
    """One error from a msgspec ValidationError; ``document`` (the decoded input) supplies the offending value."""
    text = str(exc)
    match = _MSGSPEC_PATH.match(text)
    message = match.group("msg") if match else text
    path: list[str | int] = []
    if match and match.group("path"):
        for name, index, key in _PATH_TOKEN.findall(match.group("path")):
            path.append(int(index) if index else (name or key))
    kind = "value_error"
    missing = _MISSING.match(message)
    if missing:
        path.append(missing.group("field"))
        kind = "missing"
        value = _lookup(document, path[:-1])
    else:
        if message.startswith("Expected"):
            kind = "type_error" if "got" in message else "value_error"
        value = _lookup(document, path)
    return [{"loc": [*location, *path], "msg": message, "type": kind, "input": value}]


def pydantic_errors(exc: Any, location: Sequence[str | int]) -> list[ErrorItem]:
    """Errors from a pydantic ValidationError, keeping its own types and messages."""
    return [
        {"loc": [*location, *item["loc"]], "msg": item["msg"], "type": item["type"], "input": item.get("input")}
        for item in exc.errors(include_url=False, include_context=False)
    ]


def _lookup(document: Any, path: Sequence[str | int]) -> Any:
    value = document
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


ERROR_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
        "input": {},
    },
    "required": ["loc", "msg", "type"],
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem details object.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}


class ValidationErrorFormat:
    """How a 422 looks: status, media type, body, and the JSON schema the OpenAPI document gives for it.

    The default is problem+json with an ``errors`` list. ``render(errors, instance) -> body`` replaces the body
    (anything JSON-serializable); give ``schema`` with it so the document describes what clients get.
    """

    def __init__(
        self,
        status: int = 422,
        media_type: str = "application/problem+json",
        render: Callable[[list[ErrorItem], str], Any] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        if render is not None and schema is None:
            raise ValueError("a custom validation error body needs its schema, for the OpenAPI document")
        self.status = status
        self.media_type = media_type
        self.render = render
        self.schema = schema if schema is not None else {
            **PROBLEM_SCHEMA,
            "properties": {**PROBLEM_SCHEMA["properties"], "errors": {"type": "array", "items": ERROR_ITEM_SCHEMA}},
            "required": [*PROBLEM_SCHEMA["required"], "errors"],
        }  # fmt: skip

    def body(self, errors: list[ErrorItem], instance: str) -> Any:
        if self.render is not None:
            return self.render(errors, instance)
        return {
            "type": "about:blank",
            "title": "Unprocessable Content" if self.status == 422 else "Invalid Request",
            "status": self.status,
            "detail": "The request is not valid.",
            "instance": instance,
            "errors": errors,
        }
