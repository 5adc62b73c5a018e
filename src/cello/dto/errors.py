"""Validation failures in one shape, whichever library found them.

Every error is ``{"loc": [...], "msg": str, "type": str, "input": ...}``: ``loc`` starts with where the value came
from (``"body"``, ``"query"``, ``"path"``, ``"header"``, ``"cookie"``, ``"form"``) and continues with the path
inside it (field names and list indexes). msgspec reports a JSON path in its message; pydantic a ``loc`` tuple.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

ErrorItem = dict[str, Any]

_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MSGSPEC_KEY = re.compile(r"^(?P<msg>.*?) - at `key` in `\$(?P<path>[^`]*)`$", re.S)  # a dict's key, not its value
_ANY_KEY = "..."  # msgspec's name for "some key of this dict" in a path
_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[([^\]]*)\]")


class ValidationFailed(Exception):
    """Raised by codecs and extractors; the dispatcher turns the collected errors into one 422 answer."""

    def __init__(self, errors: list[ErrorItem]) -> None:
        super().__init__(errors)
        self.errors = errors


def msgspec_errors(
    exc: Exception, location: Sequence[str | int], document: Any = None, annotation: Any = None
) -> list[ErrorItem]:
    """One error from a msgspec ValidationError; ``document`` (the decoded input) supplies the offending value and,
    with ``annotation`` (the type it was checked against), the keys msgspec leaves unnamed inside dicts."""
    text = str(exc)
    at_key = _MSGSPEC_KEY.match(text)
    match = at_key or _MSGSPEC_PATH.match(text)
    message = match.group("msg") if match else text
    path: list[str | int] = []
    if match and match.group("path"):
        for name, index, key in _PATH_TOKEN.findall(match.group("path")):
            path.append(int(index) if index else (name or key))
    if (at_key or _ANY_KEY in path) and annotation is not None:
        path = _named_keys(annotation, document, path, bad_key=at_key is not None) or path
    field = _FIELD.match(message)
    if field:  # msgspec names the field in the message, at its object's path
        path.append(field.group("field"))
        value = _lookup(document, path[:-1] if field.group("kind") == "missing" else path)
    else:
        value = path[-1] if at_key and path else _lookup(document, path)
    text, kind = _in_pydantic_words(message, annotation, path)
    return [{"loc": [*location, *path], "msg": text, "type": kind, "input": value}]


# msgspec's messages in pydantic's words and error types, so that one 422 reads the same whichever library
# found each problem (scalar parameters, msgspec bodies, pydantic bodies)
_NOUNS = {
    "int": ("a valid integer", "int_type"),
    "float": ("a valid number", "float_type"),
    "str": ("a valid string", "string_type"),
    "bool": ("a valid boolean", "bool_type"),
    "array": ("a valid list", "list_type"),
    "object": ("a valid dictionary", "dict_type"),
    "bytes": ("valid bytes", "bytes_type"),
    "null": ("None", "none_required"),
    "datetime": ("a valid datetime", "datetime_type"),
    "date": ("a valid date", "date_type"),
    "time": ("a valid time", "time_type"),
    "duration": ("a valid timedelta", "time_delta_type"),
    "uuid": ("a valid UUID", "uuid_type"),
    "decimal": ("a valid decimal", "decimal_type"),
}
_BOUNDS = {
    ">=": ("greater than or equal to", "greater_than_equal"),
    ">": ("greater than", "greater_than"),
    "<=": ("less than or equal to", "less_than_equal"),
    "<": ("less than", "less_than"),
}
_PARSING = {
    "Invalid RFC3339 encoded datetime": ("Input should be a valid datetime", "datetime_parsing"),
    "Invalid RFC3339 encoded date": ("Input should be a valid date", "date_parsing"),
    "Invalid RFC3339 encoded time": ("Input should be a valid time", "time_parsing"),
    "Invalid ISO8601 duration": ("Input should be a valid timedelta", "time_delta_parsing"),
    "Invalid UUID": ("Input should be a valid UUID", "uuid_parsing"),
    "Invalid decimal string": ("Input should be a valid decimal", "decimal_parsing"),
    "Invalid base64 encoded string": ("Input should be valid base64", "bytes_invalid_encoding"),
    "Number out of range": ("Input should be a number in the supported range", "number_out_of_range"),
}
_FIELD = re.compile(r"^Object (?:(?P<kind>missing) required|contains unknown) field `(?P<field>[^`]+)`$")
_GOT = re.compile(r"^Expected `(?P<type>[^`]+)`, got `[^`]+`$")
_BOUND = re.compile(r"^Expected `(?P<type>[^`]+)` (?P<op>>=|>|<=|<) (?P<limit>\S+)$")
_LENGTH = re.compile(r"^Expected `(?P<type>str|array|object)` of length (?P<op>>=|<=) (?P<limit>\d+)$")
_MULTIPLE = re.compile(r"^Expected `[^`]+` that's a multiple of (?P<limit>\S+)$")
_PATTERN = re.compile(r"^Expected `str` matching regex (?P<pattern>.+)$", re.S)


def _in_pydantic_words(message: str, annotation: Any, path: Sequence[str | int]) -> tuple[str, str]:
    """``(msg, type)`` as pydantic would put the same problem; msgspec's own message where it has none."""
    field = _FIELD.match(message)
    if field:
        return (
            ("Field required", "missing")
            if field.group("kind")
            else ("Extra inputs are not permitted", "extra_forbidden")
        )
    if message in _PARSING:
        return _PARSING[message]
    if found := _GOT.match(message):
        noun, kind = _NOUNS.get(found.group("type"), (f"of type {found.group('type')}", "type_error"))
        return f"Input should be {noun}", kind
    if found := _BOUND.match(message):
        phrase, kind = _BOUNDS[found.group("op")]
        return f"Input should be {phrase} {found.group('limit')}", kind
    if found := _LENGTH.match(message):
        limit = int(found.group("limit"))
        at_least = found.group("op") == ">="
        if found.group("type") == "str":
            unit = "character" if limit == 1 else "characters"
            what, kind = "String", "string_too_short" if at_least else "string_too_long"
        else:
            unit = "item" if limit == 1 else "items"
            what = "List" if found.group("type") == "array" else "Dictionary"
            kind = "too_short" if at_least else "too_long"
        return f"{what} should have {'at least' if at_least else 'at most'} {limit} {unit}", kind
    if found := _MULTIPLE.match(message):
        return f"Input should be a multiple of {found.group('limit')}", "multiple_of"
    if found := _PATTERN.match(message):
        return f"String should match pattern {found.group('pattern')}", "string_pattern_mismatch"
    if message.startswith("Invalid enum value"):
        allowed = _allowed_values(annotation, path)
        if allowed:
            listed = [repr(value) for value in allowed]
            return "Input should be " + (
                " or ".join(listed) if len(listed) < 3 else ", ".join(listed[:-1]) + " or " + listed[-1]
            ), "enum"
        return "Input should be one of the allowed values", "enum"
    return message, "value_error"


def _allowed_values(annotation: Any, path: Sequence[str | int]) -> list[Any]:
    """The values an enum or ``Literal`` at ``path`` inside ``annotation`` takes (empty: cannot be told)."""
    import enum

    kind = annotation
    for step in path:
        kind = _member_type(_plain(kind), step)
        if kind is _UNKNOWN:
            return []
    kind = _plain(kind)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return [member.value for member in kind]
    if typing.get_origin(kind) is typing.Literal:
        return list(typing.get_args(kind))
    return []


def _named_keys(annotation: Any, document: Any, path: list[str | int], *, bad_key: bool) -> list[str | int] | None:
    """``path`` with each ``...`` replaced by the first key of that dict whose value is not of the dict's value
    type, and, for an error about a key (``bad_key``), the first key not of the key type appended; None when the
    types cannot be followed (a union, say). Runs only for a request that failed, once per value on its path."""
    import msgspec

    named: list[str | int] = []
    node, kind = document, annotation
    for step in [*path, None] if bad_key else path:
        kind = _plain(kind)
        if step == _ANY_KEY or step is None:
            if not isinstance(node, dict) or typing.get_origin(kind) is not dict:
                return None
            key_type, value_type = typing.get_args(kind) or (Any, Any)
            if step is None:
                culprit = next((key for key in node if not _converts(key, key_type, msgspec, strict=False)), None)
                return None if culprit is None else [*named, culprit]
            culprit = next((key for key, value in node.items() if not _converts(value, value_type, msgspec)), None)
            if culprit is None:
                return None
            step, kind = culprit, value_type
        else:
            kind = _member_type(kind, step)
            if kind is _UNKNOWN:
                return None
        named.append(step)
        node = _lookup(node, [step])
    return named


_UNKNOWN = object()


def _plain(annotation: Any) -> Any:
    """The type under ``Annotated`` and ``| None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _member_type(annotation: Any, step: str | int) -> Any:
    """The type of one member of a container or structured type (``_UNKNOWN`` when it cannot be told)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, set, frozenset) and args:
        return args[0]
    if origin is tuple and args:
        return args[0] if len(args) == 2 and args[1] is Ellipsis else args[step] if isinstance(step, int) else _UNKNOWN
    if origin is dict and args:
        return args[1]
    if isinstance(annotation, type):
        import msgspec

        if issubclass(annotation, msgspec.Struct):
            return next((f.type for f in msgspec.structs.fields(annotation) if f.encode_name == step), _UNKNOWN)
        try:
            return typing.get_type_hints(annotation).get(str(step), _UNKNOWN)
        except Exception:  # annotations that do not resolve here
            return _UNKNOWN
    return _UNKNOWN


def _converts(value: Any, annotation: Any, msgspec: Any, *, strict: bool = True) -> bool:
    try:
        msgspec.convert(value, annotation, strict=strict)
    except (msgspec.ValidationError, TypeError):
        return False
    return True


def pydantic_errors(exc: Any, location: Sequence[str | int]) -> list[ErrorItem]:
    """Errors from a pydantic ValidationError, keeping its own types and messages.

    NOTE: for JSON that does not parse, pydantic's ``input`` is the whole raw body (bytes, which would go back to
    the client base64-encoded): it is dropped, as on the msgspec side.
    """
    return [
        {
            "loc": [*location, *item["loc"]],
            "msg": item["msg"],
            "type": item["type"],
            "input": None if item["type"] == "json_invalid" else item.get("input"),
        }
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
