"""Read a handler's (or dependency's) signature once and turn each parameter into an extractor.

Classification, first rule that applies:

1. ``Annotated[T, marker]`` or a marker as default (``Query()``, ``Header()``, ``Depends()``...) says it outright;
2. named ``request`` or annotated ``Request`` → the request; annotated ``BackgroundTasks`` → the request's tasks;
3. named like a path parameter → that parameter, converted to ``T`` when the route's converter did not already;
4. annotated ``UploadFile`` (or a list of them) → an uploaded file;
5. a structured type (msgspec Struct, pydantic model, dataclass, TypedDict) or a ``dict`` → the JSON body;
6. anything else → a query parameter (``list[T]`` collects repeated keys).

An extractor is ``extract(request) -> value`` and raises ``ValidationFailed`` with located errors. Nothing here
inspects anything per request.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ..dto.codecs import codec_for, is_model, strip_annotated
from ..dto.errors import ValidationFailed
from ..http.exceptions import ConfigurationError, UnsupportedMediaType
from ..http.request import Request
from ..params import UNSET, Body, Depends, File, Header, Param, Path, Query

if TYPE_CHECKING:
    from ..routing.router import Route

Extractor = Callable[[Request], Any]


@dataclasses.dataclass
class Slot:
    """One parameter of a handler or dependency and where its value comes from."""

    name: str
    source: str  # request, background, path, query, header, cookie, body, form, file, depends
    key: str  # its name on the wire (query key, header name...), or the parameter name
    annotation: Any
    default: Any = UNSET
    marker: Param | Depends | None = None
    extract: Extractor | None = None
    # a path value handed over exactly as the router produced it (no conversion): the fastest call path
    passthrough: bool = False

    @property
    def required(self) -> bool:
        return self.default is UNSET


@dataclasses.dataclass
class Signature:
    call: Callable[..., Any]
    slots: list[Slot]
    is_async: bool
    return_annotation: Any = UNSET


def read_signature(
    call: Callable[..., Any],
    route: Route | None,
    *,
    kind: str = "handler",
    singletons: Mapping[str, Any] | None = None,
) -> Signature:
    """Classify every parameter of ``call``; ``route`` supplies the path parameters (None outside routes),
    ``singletons`` the app's values handed over by parameter name (``App.register_singleton``)."""
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError):
        raise ConfigurationError(f"cannot read the signature of {call!r}") from None
    hints = _type_hints(call)
    path_params = _path_param_types(route)
    # JSON bodies only from requests that say they are JSON (see _require_json); a route may opt out
    strict_json = route is None or route.meta.get("strict_content_type", True) is not False
    parameters = [p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    # on a WebSocket route the socket (a Request too) is also recognised by the names people give it
    socket_names = ("ws", "websocket") if route is not None and route.is_websocket else ()
    slots = []
    for parameter in parameters:
        annotation = hints.get(parameter.name, parameter.annotation)
        slot = _classify(parameter, annotation, path_params, call, kind, socket_names, strict_json, singletons)
        # Flask habit: a lone parameter without annotation or default under another name (`req`) is the request
        if (
            len(parameters) == 1
            and slot.source == "query"
            and parameter.annotation is parameter.empty
            and parameter.default is parameter.empty
            and kind == "handler"
        ):
            slot = Slot(parameter.name, "request", parameter.name, Request)
        slots.append(slot)
    returns = hints.get("return", signature.return_annotation)
    if route is not None and kind == "handler" and "response_model" in route.meta:
        # FastAPI's route option: results are converted to (and filtered by) this type; None: sent as they are
        returns = route.meta["response_model"]
        if returns is None:
            returns = inspect.Signature.empty
    return Signature(
        call=call,
        slots=slots,
        is_async=is_async_callable(call),
        return_annotation=UNSET if returns is inspect.Signature.empty else returns,
    )


def is_async_callable(call: Any) -> bool:
    if inspect.iscoroutinefunction(call):
        return True
    if inspect.isroutine(call) or isinstance(call, type):
        return False
    return inspect.iscoroutinefunction(type(call).__call__)  # an instance with `async def __call__`


def _type_hints(call: Any) -> dict[str, Any]:
    if isinstance(call, functools.partial):
        call = call.func
    if inspect.isclass(call):
        target = call.__init__
    elif inspect.isfunction(call) or inspect.ismethod(call):
        target = call
    else:  # an instance with __call__
        target = type(call).__call__
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: S110 - some annotation does not resolve: find out which, one by one below
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    for name, annotation in getattr(target, "__annotations__", {}).items():
        if not isinstance(annotation, str):
            hints[name] = annotation
            continue
        try:
            hints[name] = eval(annotation, namespace, {})  # noqa: S307 - the source's own annotation text
        except Exception:
            if name == "return":
                continue  # an unresolvable return annotation only costs the typed serialization
            raise ConfigurationError(
                f"{_where(call)}: cannot resolve the annotation {annotation!r} of parameter {name!r}; "
                f"types used in annotations must be importable from the function's module"
            ) from None
    return hints


def _path_param_types(route: Route | None) -> dict[str, Any]:
    """Path parameter name → the type its converter produces (None: a custom converter, unknown)."""
    if route is None:
        return {}
    from ..routing.router import PARAM_PATTERN

    produced = {"str": str, "int": int, "float": float, "uuid": uuid.UUID, "path": str}
    return {m.group(1): produced.get(m.group(2) or "str") for m in PARAM_PATTERN.finditer(route.path)}


def _classify(
    parameter: inspect.Parameter,
    annotation: Any,
    path_params: dict[str, Any],
    owner: Any,
    kind: str,
    socket_names: tuple[str, ...] = (),
    strict_json: bool = True,
    singletons: Mapping[str, Any] | None = None,
) -> Slot:
    name = parameter.name
    default = UNSET if parameter.default is parameter.empty else parameter.default
    if annotation is parameter.empty:
        annotation = Any
    marker: Param | Depends | None = None
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        for item in metadata:
            if isinstance(item, (Param, Depends)):
                marker = item
        if marker is not None:
            annotation = base
    if isinstance(default, (Param, Depends)):
        marker, default = default, default.default if isinstance(default, Param) else UNSET
    elif isinstance(marker, Param) and marker.default is not UNSET and default is UNSET:
        default = marker.default

    if isinstance(marker, Depends):
        return Slot(name, "depends", name, annotation, marker=marker)
    if marker is None:
        plain = strip_annotated(annotation)
        if name == "request" or name in socket_names or (isinstance(plain, type) and issubclass(plain, Request)):
            return Slot(name, "request", name, annotation)
        if _is_background(plain):
            return Slot(name, "background", name, annotation)
        if name in path_params:
            marker = Path()
        elif singletons and name in singletons and _fits(singletons[name], plain):
            value = singletons[name]
            return Slot(name, "singleton", name, annotation, extract=lambda request: value)
        elif _is_upload(plain):
            marker = File()
        elif _is_body_type(strip_annotated(_optional_inner(plain))):
            marker = Body()
        else:
            marker = Query()
    slot = Slot(name, marker.source, _wire_name(name, marker), annotation, default, marker)
    if marker.source == "path" and name not in path_params:
        raise ConfigurationError(f"{_where(owner)}: Path() parameter {name!r} is not in the route's path")
    slot.extract = _extractor(slot, path_params.get(name), owner, strict_json)
    if marker.source == "path":
        produced, target = path_params.get(name), _with_constraints(slot)
        slot.passthrough = target is Any or (produced is not None and target is produced)
    return slot


def _wire_name(name: str, marker: Param) -> str:
    if marker.alias:
        return marker.alias
    if isinstance(marker, Header):
        return (name.replace("_", "-") if marker.convert_underscores else name).lower()
    return name


def _where(owner: Any) -> str:
    return getattr(owner, "__qualname__", None) or repr(owner)


def _fits(value: Any, annotation: Any) -> bool:
    """A singleton fills a parameter without annotation, or one whose (class) annotation it is an instance of."""
    return annotation is Any or not isinstance(annotation, type) or isinstance(value, annotation)


def _is_background(annotation: Any) -> bool:
    from ..background import BackgroundTasks

    return isinstance(annotation, type) and issubclass(annotation, BackgroundTasks)


def _is_upload(annotation: Any) -> bool:
    from ..http.uploads import UploadFile

    annotation = _optional_inner(annotation)
    if typing.get_origin(annotation) is list:
        annotation = strip_annotated(typing.get_args(annotation)[0])
    return isinstance(annotation, type) and issubclass(annotation, UploadFile)


def _is_body_type(annotation: Any) -> bool:
    """A structured type, a dict, or a list of structured types: read from the JSON body (``Optional`` unwrapped
    by the caller: ``Item | None`` is an optional body, not a query parameter)."""
    if is_model(annotation) or annotation is dict or typing.get_origin(annotation) is dict:
        return True
    return typing.get_origin(annotation) is list and any(is_model(arg) for arg in typing.get_args(annotation))


def _optional_inner(annotation: Any) -> Any:
    """``T`` for ``T | None`` / ``Optional[T]``; the annotation itself otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(strip_annotated(_optional_inner(annotation))) in (list, set, frozenset, tuple)


# -- extractors -------------------------------------------------------------------------------------------


def _extractor(slot: Slot, produced: Any, owner: Any, strict_json: bool) -> Extractor | None:
    source = slot.source
    if source == "path":
        return _path_extractor(slot, produced)
    if source in ("query", "header", "cookie"):
        return _scalar_extractor(slot, owner)
    if source == "body":
        return _body_extractor(slot, strict_json)
    return None  # form and file slots are filled from the parsed form (cello.handlers.forms)


def _path_extractor(slot: Slot, produced: Any) -> Extractor:
    key = slot.key
    target = _with_constraints(slot)
    if target is Any or (produced is not None and target is produced):

        def path_value(request: Request) -> Any:
            return request.params[key]

        return path_value
    convert = string_converter(target, ("path", key))

    def converted_path_value(request: Request) -> Any:
        value = request.params[key]
        return convert(value if isinstance(value, str) else str(value))

    return converted_path_value


def _scalar_extractor(slot: Slot, owner: Any) -> Extractor:
    source, key, default = slot.source, slot.key, slot.default
    location = (source, key)
    target = _with_constraints(slot)
    required = default is UNSET
    if _is_sequence(target):
        convert_many = _sequence_converter(target, location)

        split = source == "header"  # RFC 9110: a list header's lines are one comma-separated list

        def many(request: Request) -> Any:
            values = _multi_source(request, source).getlist(key)
            if split:
                values = [item for value in values for item in map(str.strip, value.split(",")) if item]
            if not values:
                if required:
                    raise ValidationFailed([_missing(location)])
                return default
            return convert_many(values)

        return many
    if source != "query" and _is_structured(target):
        raise ConfigurationError(f"{_where(owner)}: {source} parameter {slot.name!r} must be a scalar type")
    convert = string_converter(target, location)

    if source == "query":

        def query_value(request: Request) -> Any:
            value = request.query._first.get(key)
            if value is None:
                if required:
                    raise ValidationFailed([_missing(location)])
                return default
            return convert(value)

        return query_value
    if source == "header":

        def header_value(request: Request) -> Any:
            value = request.header(key)
            if value is None:
                if required:
                    raise ValidationFailed([_missing(location)])
                return default
            return convert(value)

        return header_value

    def cookie_value(request: Request) -> Any:
        value = request.cookies.get(key)
        if value is None:
            if required:
                raise ValidationFailed([_missing(location)])
            return default
        return convert(value)

    return cookie_value


def _multi_source(request: Request, source: str) -> Any:
    if source == "query":
        return request.query
    if source == "header":
        return request.headers
    raise ConfigurationError("cookies cannot repeat; use a scalar cookie parameter")


def _body_extractor(slot: Slot, strict_json: bool) -> Extractor:
    marker = slot.marker
    assert isinstance(marker, Body)
    target = _with_constraints(slot)
    default, required = slot.default, slot.default is UNSET
    if target is Any:

        def any_json(request: Request) -> Any:
            if not request._body:
                if required:
                    raise ValidationFailed([_missing(("body",))])
                return default
            if strict_json:
                _require_json(request)
            return request.json()

        return any_json
    codec = codec_for(target)
    if marker.embed:
        key = slot.key
        location = ("body", key)

        def embedded(request: Request) -> Any:
            if request._body and strict_json:
                _require_json(request)
            document = request.json() if request._body else {}
            if not isinstance(document, dict) or key not in document:
                if required:
                    raise ValidationFailed([_missing(location)])
                return default
            return codec.convert(document[key], location)

        return embedded
    decode = codec.decode_json
    fast_decode = codec.raw_decoder()  # the library's own decode, no wrapper: errors re-decode below

    def body_value(request: Request) -> Any:
        data = request._body
        if not data:
            if required:
                raise ValidationFailed([_missing(("body",))])
            return default
        if strict_json:
            _require_json(request)
        if fast_decode is not None:
            try:
                return fast_decode(data)
            except Exception:  # noqa: S110 - invalid input: decode again the slow way, which explains it
                pass
        return decode(data)

    return body_value


def _require_json(request: Request) -> None:
    """Refuse a JSON body parameter's body unless the request says it is JSON (``application/json`` or a
    ``+json`` type): a cross-site ``text/plain`` POST, or one with no Content-Type (a Blob), needs no CORS
    preflight, so a cookie-authenticated JSON endpoint that read any body would be open to CSRF."""
    value = request.header("content-type")
    if value == "application/json":  # NOTE: by far the most common: no parsing
        return
    media = (value or "").partition(";")[0].strip().lower()
    if media != "application/json" and not (media.endswith("+json") and "/" in media):
        raise UnsupportedMediaType("The body must be sent as JSON: Content-Type application/json or a +json type.")


def _missing(location: tuple[str | int, ...]) -> dict[str, Any]:
    return {"loc": list(location), "msg": "Field required", "type": "missing", "input": None}


def _with_constraints(slot: Slot) -> Any:
    marker = slot.marker
    annotation = slot.annotation
    if isinstance(marker, Param) and marker.constraints:
        meta = msgspec.Meta(**typing.cast(Any, marker.constraints))
        inner = _optional_inner(annotation)
        if inner is not annotation:  # constraints bind to the value, not to its absence: (T, Meta) | None
            return typing.Optional[typing.Annotated[inner, meta]]  # noqa: UP045 - built at run time
        return typing.Annotated[annotation, meta]
    return annotation


def _is_structured(annotation: Any) -> bool:
    return is_model(_optional_inner(annotation)) or strip_annotated(annotation) is dict


# -- converting strings -----------------------------------------------------------------------------------


def string_converter(target: Any, location: tuple[str | int, ...]) -> Callable[[str], Any]:
    """``str -> value`` for one scalar type; the common ones skip msgspec's general machinery."""
    inner = _optional_inner(target)
    if inner is Any or inner is str or inner is object:
        return _identity
    if inner is int:

        def to_int(value: str) -> int:
            digits = value[1:] if value[:1] == "-" else value
            if digits.isascii() and digits.isdigit():
                try:
                    return int(value)
                except ValueError:  # more digits than Python converts (4300 by default)
                    pass
            raise ValidationFailed([_invalid(location, "Input should be a valid integer", "int_parsing", value)])

        return to_int
    if inner is float:

        def to_float(value: str) -> float:
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if number != number or number in (float("inf"), float("-inf")):
                raise ValidationFailed([_invalid(location, "Input should be a valid number", "float_parsing", value)])
            return number

        return to_float
    if inner is bool:

        def to_bool(value: str) -> bool:
            lowered = value.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValidationFailed([_invalid(location, "Input should be a valid boolean", "bool_parsing", value)])

        return to_bool
    codec = codec_for(target)

    def general(value: str) -> Any:
        return codec.convert(value, location, from_strings=True)

    return general


def _sequence_converter(target: Any, location: tuple[str | int, ...]) -> Callable[[list[str]], Any]:
    codec = codec_for(target)

    def convert(values: list[str]) -> Any:
        return codec.convert(values, location, from_strings=True)

    return convert


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _identity(value: str) -> str:
    return value


def _invalid(location: tuple[str | int, ...], message: str, kind: str, value: Any) -> dict[str, Any]:
    return {"loc": list(location), "msg": message, "type": kind, "input": value}
