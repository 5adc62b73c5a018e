"""Codecs: how one Python type is decoded from JSON or form data, validated, encoded, and described.

msgspec handles msgspec Structs, dataclasses, TypedDicts, NamedTuples, enums, builtins and their containers.
pydantic v2 models (and containers of them) go through a pydantic ``TypeAdapter``; pydantic is imported only
when such a type appears, so it stays an optional dependency. A codec is built once per type at startup.
"""

from __future__ import annotations

import abc
import dataclasses
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import orjson

from .errors import ValidationFailed, msgspec_errors, pydantic_errors

REF_TEMPLATE = "#/components/schemas/{name}"


class Codec(abc.ABC):
    """Decode/convert/encode/describe one type. Subclasses hold the library-specific parts."""

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation

    @abc.abstractmethod
    def decode_json(self, data: bytes, location: Sequence[str | int] = ("body",)) -> Any:
        """Decode and validate JSON bytes; failures raise ValidationFailed located under ``location``."""

    def raw_decoder(self) -> Callable[[bytes], Any] | None:
        """The library's decode function itself, for the hot path (it raises the library's own errors)."""
        return None

    @abc.abstractmethod
    def convert(self, value: Any, location: Sequence[str | int], *, from_strings: bool = False) -> Any:
        """Validate an already-decoded value (a dict from a form, strings from a query)."""

    @abc.abstractmethod
    def encode_json(self, value: Any) -> bytes:
        """Serialize a value of the type."""

    @abc.abstractmethod
    def schema(self, components: dict[str, Any]) -> dict[str, Any]:
        """The JSON schema of the type; named parts are added to ``components`` and referenced."""


class MsgspecCodec(Codec):
    def __init__(self, annotation: Any) -> None:
        super().__init__(annotation)
        self._decoder = msgspec.json.Decoder(annotation)
        self._encoder = msgspec.json.Encoder()

    def raw_decoder(self) -> Callable[[bytes], Any] | None:
        return self._decoder.decode  # type: ignore[no-any-return]

    def decode_json(self, data: bytes, location: Sequence[str | int] = ("body",)) -> Any:
        try:
            try:
                return self._decoder.decode(data)
            except msgspec.ValidationError as exc:
                if "got `float`" in str(exc):
                    # JSON Schema counts 622.0 as an integer; msgspec's strict decoding does not. Retry with
                    # integral floats read as ints (only on this failure, so valid requests never pay for it).
                    # NOTE: msgspec may report the type before noticing the document is malformed: the retry
                    # can raise DecodeError, answered below like any other
                    try:
                        return msgspec.convert(_INTEGRAL_FLOATS.decode(data), self.annotation, strict=True)
                    except msgspec.ValidationError as retry:
                        exc = retry
                raise ValidationFailed(msgspec_errors(exc, location, _loads_or_none(data), self.annotation)) from None
        except msgspec.DecodeError as exc:
            raise _invalid_json(location, str(exc)) from None
        except UnicodeDecodeError:  # msgspec's answer to invalid UTF-8 inside a JSON string
            raise _invalid_json(location, "not valid UTF-8") from None
        except RecursionError:  # msgspec's answer to nesting deeper than the interpreter's stack allows
            raise _invalid_json(location, "nested too deeply") from None

    def convert(self, value: Any, location: Sequence[str | int], *, from_strings: bool = False) -> Any:
        try:
            return msgspec.convert(value, self.annotation, strict=not from_strings)
        except msgspec.ValidationError as exc:
            raise ValidationFailed(msgspec_errors(exc, location, value, self.annotation)) from None

    def encode_json(self, value: Any) -> bytes:
        return self._encoder.encode(value)

    def schema(self, components: dict[str, Any]) -> dict[str, Any]:
        (schema,), named = msgspec.json.schema_components(
            [self.annotation], ref_template=REF_TEMPLATE, schema_hook=_object_schema
        )
        components.update(named)
        return schema  # type: ignore[no-any-return]


def _invalid_json(location: Sequence[str | int], reason: str) -> ValidationFailed:
    return ValidationFailed([{"loc": list(location), "msg": f"Invalid JSON: {reason}", "type": "json_invalid",
                              "input": None}])  # fmt: skip


# ``object`` (as in ``dict[str, object]``) holds any JSON value; msgspec needs it spelled out (an empty schema
# counts as none)
_ANY_JSON_VALUE = {"type": ["object", "array", "string", "number", "boolean", "null"]}


def _object_schema(annotation: Any) -> dict[str, Any]:
    """msgspec's ``schema_hook``: raising NotImplementedError is how a hook declines a type, which msgspec then
    reports as undescribable (and the OpenAPI generator leaves unschematized)."""
    if annotation is object:
        return _ANY_JSON_VALUE
    raise NotImplementedError


class PydanticCodec(Codec):
    def __init__(self, annotation: Any) -> None:
        super().__init__(annotation)
        from pydantic import TypeAdapter

        self._adapter: Any = TypeAdapter(annotation)
        # NOTE: pydantic reads NaN, Infinity and 1e400 as floats by default, and they leave again as JSON null: a
        # client's value would change without a word. msgspec refuses them; so does this codec, unless the type
        # takes them on purpose (pydantic's prebuilt model validators cannot be told otherwise)
        self._finite = _refuses_non_finite(self._adapter)

    def decode_json(self, data: bytes, location: Sequence[str | int] = ("body",)) -> Any:
        from pydantic import ValidationError

        if self._finite and _NON_FINITE_SUSPECT.search(data) is not None:
            try:
                orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise _invalid_json(location, str(exc).partition(":")[0]) from None  # orjson names the position
        try:
            return self._adapter.validate_json(data)
        except ValidationError as exc:
            raise ValidationFailed(pydantic_errors(exc, location)) from None

    def convert(self, value: Any, location: Sequence[str | int], *, from_strings: bool = False) -> Any:
        from pydantic import ValidationError

        try:
            return self._adapter.validate_python(value, strict=False if from_strings else None)
        except ValidationError as exc:
            raise ValidationFailed(pydantic_errors(exc, location)) from None

    def encode_json(self, value: Any) -> bytes:
        return self._adapter.dump_json(value)  # type: ignore[no-any-return]

    def schema(self, components: dict[str, Any]) -> dict[str, Any]:
        schema: dict[str, Any] = self._adapter.json_schema(
            ref_template=REF_TEMPLATE.replace("{name}", "{model}"), mode="serialization"
        )
        components.update(schema.pop("$defs", {}))
        if isinstance(self.annotation, type) and "properties" in schema:
            # a model at the top: a named component, as msgspec gives it, so both kinds read the same
            name = self.annotation.__name__
            components[name] = schema
            return {"$ref": REF_TEMPLATE.format(name=name)}
        return schema


# what can make pydantic's JSON parser produce a NaN or an infinity: its NaN and Infinity tokens, a number with a
# three-digit exponent, a run of 300 digits; a match is only a suspect, strict JSON (orjson) decides
_NON_FINITE_SUSPECT = re.compile(rb"NaN|Infinity|[0-9][eE]\+?[0-9]{3}|[0-9]{300}")


def _refuses_non_finite(adapter: Any) -> bool:
    """Whether the type has a float that does not take NaN or infinities on purpose (``Field(allow_inf_nan=True)``,
    or ``allow_inf_nan=True`` in the config of a model around it)."""

    def refuses(node: Any, allowed: bool) -> bool:
        if isinstance(node, list):
            return any(refuses(item, allowed) for item in node)
        if not isinstance(node, dict):
            return False
        config = node.get("config")
        if isinstance(config, dict) and "allow_inf_nan" in config:
            allowed = bool(config["allow_inf_nan"])
        if node.get("type") == "float" and not node.get("allow_inf_nan", allowed):
            return True
        return any(refuses(value, allowed) for value in node.values())

    try:
        return refuses(adapter.core_schema, False)
    except Exception:  # a schema pydantic has not built yet (forward references): it cannot be read
        return True


def _integral(literal: str) -> float | int:
    value = float(literal)
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


_INTEGRAL_FLOATS = msgspec.json.Decoder(float_hook=_integral)

_CODECS: dict[Any, Codec] = {}


def codec_for(annotation: Any) -> Codec:
    """The (cached) codec of a type."""
    try:
        return _CODECS[annotation]
    except (KeyError, TypeError):
        pass
    codec: Codec = PydanticCodec(annotation) if uses_pydantic(annotation) else MsgspecCodec(annotation)
    try:
        _CODECS[annotation] = codec
    except TypeError:  # an unhashable annotation: build it again next time
        pass
    return codec


def uses_pydantic(annotation: Any) -> bool:
    """Whether a pydantic model appears anywhere in the annotation."""
    if isinstance(annotation, type):
        return any(getattr(cls, "__module__", "").startswith("pydantic") for cls in annotation.__mro__[1:])
    return any(uses_pydantic(arg) for arg in typing.get_args(annotation))


def is_model(annotation: Any) -> bool:
    """A structured type read from a request body: Struct, pydantic model, dataclass, TypedDict, NamedTuple."""
    annotation = strip_annotated(annotation)
    if not isinstance(annotation, type):
        return False
    if issubclass(annotation, msgspec.Struct) or dataclasses.is_dataclass(annotation):
        return True
    if typing.is_typeddict(annotation) or (issubclass(annotation, tuple) and hasattr(annotation, "_fields")):
        return True
    return uses_pydantic(annotation)


def strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _loads_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
