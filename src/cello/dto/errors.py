"""Validation failures in one shape, whichever library found them.

Every error is ``{"loc": [...], "msg": str, "type": str, "input": ...}``: ``loc`` starts with where the value came
from (``"body"``, ``"query"``, ``"path"``, ``"header"``, ``"cookie"``, ``"form"``) and continues with the path
inside it (field names and list indexes). msgspec reports a JSON path in its message; pydantic a ``loc`` tuple.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
