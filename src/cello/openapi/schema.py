"""Build the OpenAPI 3.1 document from the compiled routes: their parameters, bodies, results and errors.

Everything comes from what the app already knows: the classified signature of each handler and of the
dependencies it uses (``cello.handlers.plan``), the codecs' JSON schemas (``cello.dto``), route options
(``tags``, ``summary``, ``description``, ``deprecated``, ``status_code``, ``responses``, ``security``,
``include_in_schema``) and the handler's docstring. The document is built once, on first request.
"""

from __future__ import annotations

import inspect
import re
import typing
from typing import TYPE_CHECKING, Any

from ..dto.codecs import codec_for, is_model, strip_annotated
from ..dto.errors import PROBLEM_SCHEMA
from ..handlers.plan import Signature, Slot, _optional_inner, _with_constraints, read_signature
from ..params import UNSET, Body, Depends, Param

if TYPE_CHECKING:
    from ..app import App
    from ..routing.router import Route

OPENAPI_VERSION = "3.1.0"
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z_][A-Za-z0-9_]*)?\}")
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_PATH_PARAM_KIND = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_][A-Za-z0-9_]*))?\}")
_CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "path": {"type": "string"},
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
}


def build_openapi(app: App) -> dict[str, Any]:
    config = app.config.openapi
    assert config is not None
    components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA, "ValidationProblem": app.config.validation_errors.schema}
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    schemes: dict[str, dict[str, Any]] = dict(config.security_schemes)
    for route in app.router:
        if not _documented(route):
            continue
        path = _PATH_PARAM.sub(r"{\1}", route.path)
        signature = route.signature or read_signature(route.handler, route)
        chain = [*app.middleware, *(m for o in route.owners for m in o.middleware), *route.middleware]
        for method in route.methods:
            operation = _operation(app, route, method, signature, components)
            _secure(operation, route, chain, schemes)
            operation["operationId"] = _unique(f"{route.name}_{method.lower()}", operation_ids)
            paths.setdefault(path, {})[method.lower()] = operation
    info: dict[str, Any] = {"title": config.title, "version": config.version}
    if config.description:
        info["description"] = config.description
    if config.summary:
        info["summary"] = config.summary
    document: dict[str, Any] = {"openapi": OPENAPI_VERSION, "info": info, "paths": paths}
    if config.servers:
        document["servers"] = config.servers
    if config.tags:
        document["tags"] = config.tags
    document["components"] = {"schemas": dict(sorted(components.items()))}
    if schemes:
        document["components"]["securitySchemes"] = schemes
    if config.security is not None:
        document["security"] = config.security
    document.update(config.extra)
    return document


def _documented(route: Route) -> bool:
    meta = route.meta
    # WebSocket routes have no place in an OpenAPI document (it describes HTTP operations)
    return not (
        meta.get("internal") or meta.get("mount") or meta.get("include_in_schema") is False or route.is_websocket
    )


def _unique(candidate: str, taken: set[str]) -> str:
    name, counter = candidate, 2
    while name in taken:
        name = f"{candidate}_{counter}"
        counter += 1
    taken.add(name)
    return name


def _operation(app: App, route: Route, method: str, signature: Signature, components: dict[str, Any]) -> dict[str, Any]:
    meta = route.meta
    operation: dict[str, Any] = {}
    tags = meta.get("tags") or [getattr(owner, "name", None) for owner in route.owners[-1:] if hasattr(owner, "prefix")]
    if tags:
        operation["tags"] = list(tags)
    doc = inspect.getdoc(route.handler) or ""
    summary, _, rest = doc.partition("\n\n")
    operation["summary"] = meta.get("summary") or summary.strip() or str(route.name).replace("_", " ").capitalize()
    description = meta.get("description") or rest.strip()
    if description:
        operation["description"] = description
    if meta.get("deprecated"):
        operation["deprecated"] = True

    slots = _all_slots(signature, route)
    described = (_parameter(slot, components) for slot in slots if slot.source in ("path", "query", "header", "cookie"))
    parameters = [p for p in described if p is not None]
    declared = {p["name"] for p in parameters if p["in"] == "path"}
    for name, kind in _PATH_PARAM_KIND.findall(route.path):
        if name not in declared:  # read from request.params rather than declared: describe it from the template
            schema = _CONVERTER_SCHEMAS.get(kind or "str", {"type": "string"})
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if parameters:
        operation["parameters"] = _dedupe(parameters)
    body = _request_body(slots, components)
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = _responses(app, route, signature, slots, components)
    security = meta.get("security")
    if security is not None:
        operation["security"] = security
    described_by = meta.get("openapi")  # a route that describes itself: ``(app, method) -> operation fields``
    if described_by is not None:
        operation.update(described_by(app, method))
    return operation


def _secure(operation: dict[str, Any], route: Route, chain: list[Any], schemes: dict[str, dict[str, Any]]) -> None:
    """Security requirements and 401/403 answers from the route's authenticators and guards.

    Authenticators (``cello.security``) offer ``openapi_scheme()``; every one in the chain must pass, so they form
    one requirement; an optional one adds the empty alternative. Guards list the answers they can give.
    """
    if route.meta.get("public") is True:
        return
    required: dict[str, list[str]] = {}
    optional = False
    answers: set[int] = set()
    for layer in chain:
        answers.update(getattr(layer, "openapi_responses", ()))
        scheme_of = getattr(layer, "openapi_scheme", None)
        if scheme_of is None or layer.excluded(route.path):
            continue
        scheme = scheme_of()
        name = layer.scheme_name
        counter = 2
        while name in schemes and schemes[name] != scheme:  # two authenticators of one kind, configured apart
            name = f"{layer.scheme_name}_{counter}"
            counter += 1
        schemes[name] = scheme
        required[name] = []
        optional = optional or layer.optional
        answers.add(401)
    responses = operation["responses"]
    for status, description in ((401, "Not authenticated"), (403, "Forbidden")):
        if status in answers and str(status) not in responses:
            responses[str(status)] = {
                "description": description,
                "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
            }
    if required and "security" not in operation:
        operation["security"] = [required, {}] if optional else [required]


def _all_slots(signature: Signature, route: Route) -> list[Slot]:
    """The handler's slots and those of every dependency it uses (sub-dependencies included)."""
    slots: list[Slot] = []
    seen: set[Any] = set()

    def walk(current: Signature) -> None:
        for slot in current.slots:
            if slot.source == "depends":
                marker = slot.marker
                assert isinstance(marker, Depends)
                call = marker.dependency if marker.dependency is not None else slot.annotation
                if call in seen or marker.scope == "app":
                    continue
                seen.add(call)
                walk(read_signature(call, route, kind="dependency"))
            else:
                slots.append(slot)

    walk(signature)
    return slots


def _dedupe(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for parameter in parameters:
        unique.setdefault((parameter["in"], parameter["name"]), parameter)
    return list(unique.values())


def _schema_of(annotation: Any, components: dict[str, Any]) -> dict[str, Any]:
    if annotation is Any or annotation is UNSET:
        return {}
    try:
        return codec_for(annotation).schema(components)
    except (TypeError, ValueError):  # a type no codec can describe (e.g. a custom class): say nothing
        return {}


def _parameter(slot: Slot, components: dict[str, Any]) -> dict[str, Any] | None:
    marker = slot.marker
    if isinstance(marker, Param) and not marker.include_in_schema:
        return None
    # NOTE: a parameter left out is how None arrives; "null" is not a value a header or a query string can carry
    schema = _without_null(_schema_of(_with_constraints(slot), components))
    if slot.source == "path" and not schema:
        schema = {"type": "string"}
    parameter: dict[str, Any] = {
        "name": slot.key,
        "in": slot.source,
        "required": slot.source == "path" or slot.required,
    }
    if slot.default is not UNSET and slot.default is not None and _jsonable(slot.default):
        schema = {**schema, "default": _plain(slot.default)}
    parameter["schema"] = schema
    if isinstance(marker, Param):
        if marker.description:
            parameter["description"] = marker.description
        if marker.deprecated:
            parameter["deprecated"] = True
        if marker.examples:
            parameter["examples"] = {str(i): {"value": v} for i, v in enumerate(marker.examples)}
    if typing.get_origin(strip_annotated(_optional_inner(slot.annotation))) in (list, set, tuple):
        if slot.source == "header":  # one comma-separated value or repeated lines: the only style headers have
            parameter["style"], parameter["explode"] = "simple", False
        else:
            parameter["style"], parameter["explode"] = "form", True
    return parameter


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if options is None:
        return schema
    kept = [option for option in options if option != {"type": "null"}]
    if len(kept) == len(options) or not kept:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def _request_body(slots: list[Slot], components: dict[str, Any]) -> dict[str, Any] | None:
    bodies = [slot for slot in slots if slot.source == "body"]
    forms = [slot for slot in slots if slot.source in ("form", "file")]
    if bodies:
        embedded = [slot for slot in bodies if isinstance(slot.marker, Body) and slot.marker.embed]
        if embedded or len(bodies) > 1:
            properties = {slot.key: _schema_of(_with_constraints(slot), components) for slot in bodies}
            required = [slot.key for slot in bodies if slot.required]
            schema: dict[str, Any] = {"type": "object", "properties": properties}
            if required:
                schema["required"] = required
        else:
            schema = _schema_of(_with_constraints(bodies[0]), components)
        media = bodies[0].marker.media_type if isinstance(bodies[0].marker, Body) else "application/json"
        return {"required": any(slot.required for slot in bodies), "content": {media: {"schema": schema}}}
    if forms:
        fields: dict[str, Any] = {}
        required_fields: list[str] = []
        for slot in forms:
            plain = strip_annotated(_optional_inner(slot.annotation))
            if slot.source == "form" and is_model(plain):
                model_schema = _schema_of(plain, components)
                resolved = components.get(model_schema.get("$ref", "").rsplit("/", 1)[-1], model_schema)
                fields.update(resolved.get("properties", {}))
                required_fields.extend(resolved.get("required", []))
                continue
            fields[slot.key] = _file_schema(plain) if slot.source == "file" else _schema_of(slot.annotation, components)
            if slot.required:
                required_fields.append(slot.key)
        schema = {"type": "object", "properties": fields}
        if required_fields:
            schema["required"] = required_fields
        has_files = any(slot.source == "file" for slot in forms)
        media = "multipart/form-data" if has_files else "application/x-www-form-urlencoded"
        return {"required": bool(required_fields), "content": {media: {"schema": schema}}}
    return None


def _file_schema(annotation: Any) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    if typing.get_origin(annotation) is list:
        return {"type": "array", "items": binary}
    return binary


def _responses(
    app: App, route: Route, signature: Signature, slots: list[Slot], components: dict[str, Any]
) -> dict[str, Any]:
    meta = route.meta
    status = str(meta.get("status_code") or 200)
    responses: dict[str, Any] = {}
    returns = signature.return_annotation
    if returns is None or returns is type(None) or status == "204":
        responses["204" if status == "200" else status] = {"description": "No Content"}
    else:
        responses[status] = {"description": "Successful Response", "content": _result_content(returns, components)}
    if slots:
        fmt = app.config.validation_errors
        responses[str(fmt.status)] = {
            "description": "Validation Error",
            "content": {fmt.media_type: {"schema": {"$ref": "#/components/schemas/ValidationProblem"}}},
        }
    for code, extra in (meta.get("responses") or {}).items():
        responses[str(code)] = {"description": extra.get("description", "Response"), **extra}
    # every other answer Cello gives (400, 404, 413, 500...) is a problem+json document
    responses["default"] = {
        "description": "Error",
        "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
    }
    return responses


def _result_content(returns: Any, components: dict[str, Any]) -> dict[str, Any]:
    plain = strip_annotated(returns)
    if plain is str:
        return {"text/plain": {"schema": {"type": "string"}}}
    if plain is bytes:
        return {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    from ..http.response import Response

    if isinstance(plain, type) and issubclass(plain, Response):
        media = plain.media_type or "application/octet-stream"
        return {media: {"schema": {}}}
    if returns is UNSET:
        return {"application/json": {"schema": {}}}
    return {"application/json": {"schema": _schema_of(returns, components)}}


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, list, tuple)) or hasattr(value, "value")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return getattr(value, "value", value)


def message_schemas(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    """What a handler taking a message reads (``cello.messaging.asyncapi``), described as OpenAPI describes a
    request: ``content_type``, ``payload`` (its body), ``headers`` (an object schema of its header parameters)
    and ``result`` (what it returns, for the topics it forwards to); absent keys where there is nothing."""
    signature = route.signature or read_signature(route.handler, route)
    slots = _all_slots(signature, route)
    described: dict[str, Any] = {}
    body = _request_body(slots, components)
    if body is not None:
        described["content_type"], content = next(iter(body["content"].items()))
        described["payload"] = content["schema"]
    headers = [(slot, _parameter(slot, components)) for slot in slots if slot.source == "header"]
    properties = {parameter["name"]: parameter["schema"] for _, parameter in headers if parameter is not None}
    if properties:
        required = [parameter["name"] for _, parameter in headers if parameter is not None and parameter["required"]]
        described["headers"] = {
            "type": "object",
            "properties": properties,
            **({"required": required} if required else {}),
        }
    if signature.return_annotation not in (UNSET, None, type(None)):
        content = _result_content(signature.return_annotation, components)
        media, schema = next(iter(content.items()))
        described["result"] = {"content_type": media, "payload": schema["schema"]}
    return described
