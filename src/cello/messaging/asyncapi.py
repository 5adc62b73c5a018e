"""The app's AsyncAPI 3.0 document, built from its brokers' subscribers and publishers, and the page that shows it.

Every subscriber is a ``receive`` operation on the channel of its topic, every ``@broker.publisher`` topic a
``send`` operation; message payloads and headers come from the handlers' signatures through the same type
machinery as the OpenAPI document (``cello.openapi.schema.message_schemas``), so a msgspec Struct, a pydantic
model or a dataclass is described once, in ``components.schemas``, for both documents. Each broker is a server;
its URL is shown without credentials.

``app.asyncapi()`` returns the document; with ``app.include_broker(...)`` the app serves it at ``/asyncapi.json``
and a page reading it at ``/asyncapi`` (``OpenAPIConfig.asyncapi_url`` / ``asyncapi_docs_url``), rendered on the
server with no script and a stylesheet of its own (no CDN); ``cello asyncapi module:app`` prints it.
"""

from __future__ import annotations

import html
import inspect
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from ..http.response import HTMLResponse, Response
from ..routing.router import Route

if TYPE_CHECKING:
    from ..app import App
    from .broker import Broker
    from .subscriber import Subscriber

__all__ = ["asyncapi_routes", "build_asyncapi"]

ASYNCAPI_VERSION = "3.0.0"
_NAME = re.compile(r"[^\w.\-]")


def build_asyncapi(app: App) -> dict[str, Any]:
    from ..openapi.config import OpenAPIConfig
    from ..openapi.schema import message_schemas

    config = app.config.openapi or OpenAPIConfig()
    schemas: dict[str, Any] = {}
    servers: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def channel(topic: str, server: str) -> str:
        name = _unique_key(_NAME.sub("_", topic), channels, lambda existing: existing["address"] == topic)
        found = channels.setdefault(name, {"address": topic, "messages": {}, "servers": []})
        if {"$ref": f"#/servers/{server}"} not in found["servers"]:
            found["servers"].append({"$ref": f"#/servers/{server}"})
        return name

    def message(channel_name: str, name: str, described: dict[str, Any]) -> dict[str, str]:
        body: dict[str, Any] = {"name": name, "contentType": described.get("content_type", "application/json")}
        body["payload"] = described.get("payload", {})
        if "headers" in described:
            body["headers"] = described["headers"]
        key = _unique_key(_NAME.sub("_", name), messages, lambda existing: existing == body)
        messages[key] = body
        channels[channel_name]["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        return {"$ref": f"#/channels/{_pointer(channel_name)}/messages/{key}"}

    for broker in app.brokers:
        server = _unique_key(broker.transport.scheme, servers, lambda existing: False)
        servers[server] = _server(broker)
        for subscriber in broker.subscribers:
            described = message_schemas(subscriber.route, schemas)
            name = channel(subscriber.topic, server)
            operation = _operation(subscriber, "receive", name)
            named = _message_name(described, f"{subscriber.name}.message")
            operation["messages"] = [message(name, named, described)]
            operations[_unique_key(_NAME.sub("_", subscriber.name), operations, lambda existing: False)] = operation
            result = described.get("result")
            for topic in subscriber.forward_to:
                forwarded = channel(topic, server)
                sent = _operation(subscriber, "send", forwarded)
                sent["summary"] = f"What {subscriber.name} returns, published to {topic}"
                if result is not None:
                    named = _message_name(result, f"{subscriber.name}.result")
                    sent["messages"] = [message(forwarded, named, result)]
                key = _NAME.sub("_", f"{subscriber.name}.to.{topic}")
                operations[_unique_key(key, operations, lambda existing: False)] = sent

    info: dict[str, Any] = {"title": config.title, "version": config.version}
    if config.description:
        info["description"] = config.description
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }
    return document


def _server(broker: Broker) -> dict[str, Any]:
    """The broker as a server object: host and path of its URL, never its credentials."""
    parts = urlsplit(broker.url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    server: dict[str, Any] = {"host": host or broker.transport.scheme, "protocol": broker.transport.scheme}
    if parts.path and parts.path != "/":
        server["pathname"] = parts.path
    server.update(broker.transport.describe())  # the adapter's protocol version, bindings...
    return server


def _operation(subscriber: Subscriber, action: str, channel_name: str) -> dict[str, Any]:
    operation: dict[str, Any] = {"action": action, "channel": {"$ref": f"#/channels/{_pointer(channel_name)}"}}
    doc = inspect.getdoc(subscriber.handler) or ""
    summary, _, description = doc.partition("\n\n")
    if action == "receive":
        operation["summary"] = summary.strip() or f"{subscriber.name} (group {subscriber.group})"
        if description.strip():
            operation["description"] = description.strip()
        delivery = [f"group {subscriber.group}", f"concurrency {subscriber.concurrency}"]
        if subscriber.retries:
            delivery.append(f"{subscriber.retries} retries")
        if subscriber.dead_letter:
            delivery.append(f"dead letter {subscriber.dead_letter}")
        operation["x-cello-delivery"] = ", ".join(delivery)
    return operation


def _message_name(described: dict[str, Any], fallback: str) -> str:
    """A message is named after its payload's schema (``Order``), or after its handler when it has none."""
    ref = described.get("payload", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else fallback


def _unique_key(candidate: str, taken: dict[str, Any], same: Any) -> str:
    """``candidate``, or ``candidate_2``... unless the entry already under that key is the ``same`` one."""
    key, n = candidate or "_", 1
    while key in taken and not same(taken[key]):
        n += 1
        key = f"{candidate}_{n}"
    return key


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


# -- the routes ----------------------------------------------------------------------------------------------------


def asyncapi_routes(app: App) -> list[Route]:
    """``/asyncapi.json`` and the ``/asyncapi`` page, for an app with brokers (none otherwise)."""
    config = app.config.openapi
    if config is None or not app.brokers or not config.asyncapi_url:
        return []
    hidden = {"include_in_schema": False}
    cache: dict[str, Any] = {}

    def document() -> dict[str, Any]:
        if "document" not in cache:
            cache["document"] = build_asyncapi(app)
        return cache["document"]  # type: ignore[no-any-return]

    async def asyncapi_document(request: Any) -> Response:
        return Response(orjson.dumps(document()), media_type="application/json")

    routes = [Route(config.asyncapi_url, ["GET"], asyncapi_document, name="asyncapi", meta=hidden)]
    if config.asyncapi_docs_url:
        page_url = config.asyncapi_docs_url.rstrip("/") or "/"
        stylesheet = page_url.rstrip("/") + "/viewer.css"

        async def asyncapi_page(request: Any) -> Response:
            if "page" not in cache:
                cache["page"] = render_page(document(), config.asyncapi_url or "", stylesheet)
            return HTMLResponse(cache["page"])

        async def asyncapi_stylesheet(request: Any) -> Response:
            response = Response(_STYLESHEET, media_type="text/css")
            response.headers["cache-control"] = "public, max-age=86400"
            return response

        routes.append(Route(page_url, ["GET"], asyncapi_page, name="asyncapi_page", meta=hidden))
        routes.append(Route(stylesheet, ["GET"], asyncapi_stylesheet, name="asyncapi_stylesheet", meta=hidden))
    return routes


# -- the page ------------------------------------------------------------------------------------------------------


def render_page(document: dict[str, Any], document_url: str, stylesheet: str) -> str:
    """The document as one HTML page: servers, then each channel with its operations and message schemas."""
    e = html.escape
    info = document["info"]
    schemas = document["components"]["schemas"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{e(info['title'])} — AsyncAPI</title><link rel='stylesheet' href='{e(stylesheet)}'></head><body>",
        f"<header><h1>{e(info['title'])} <small>{e(info['version'])}</small></h1>",
        f"<p>AsyncAPI {e(document['asyncapi'])} · <a href='{e(document_url)}'>the document as JSON</a></p>",
    ]
    if info.get("description"):
        parts.append(f"<p>{e(info['description'])}</p>")
    parts.append("</header><main><section id='servers'><h2>Servers</h2><table>")
    parts.append("<tr><th>name</th><th>protocol</th><th>host</th></tr>")
    for name, server in document["servers"].items():
        where = server["host"] + server.get("pathname", "")
        parts.append(f"<tr><td>{e(name)}</td><td>{e(server['protocol'])}</td><td><code>{e(where)}</code></td></tr>")
    parts.append("</table></section>")
    operations = document["operations"]
    for key, channel in document["channels"].items():
        parts.append(f"<section class='channel' id='channel-{e(key)}'><h2><code>{e(channel['address'])}</code></h2>")
        for op_name, operation in operations.items():
            if operation["channel"]["$ref"] != f"#/channels/{_pointer(key)}":
                continue
            action = operation["action"]
            parts.append(f"<article class='operation {e(action)}' id='operation-{e(op_name)}'>")
            parts.append(f"<h3><span class='action'>{e(action)}</span> {e(op_name)}</h3>")
            if operation.get("summary"):
                parts.append(f"<p class='summary'>{e(operation['summary'])}</p>")
            if operation.get("description"):
                parts.append(f"<p>{e(operation['description'])}</p>")
            if operation.get("x-cello-delivery"):
                parts.append(f"<p class='delivery'>{e(operation['x-cello-delivery'])}</p>")
            for ref in operation.get("messages", []):
                message = document["components"]["messages"][ref["$ref"].rsplit("/", 1)[-1]]
                parts.append(
                    f"<div class='message'><h4>{e(message['name'])} <small>{e(message['contentType'])}</small></h4>"
                )
                if "headers" in message:
                    parts.append("<h5>Headers</h5>" + _schema_html(message["headers"], schemas))
                parts.append("<h5>Payload</h5>" + _schema_html(message["payload"], schemas) + "</div>")
            parts.append("</article>")
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "".join(parts)


def _schema_html(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> str:
    """A JSON schema as nested lists: each property with its type, whether required, its constraints."""
    e = html.escape
    if depth > 8:
        return "<p class='type'>…</p>"
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return f"<p class='type'>{e(name)}</p>" + _schema_html(schemas.get(name, {}), schemas, depth + 1)
    if not schema:
        return "<p class='type'>any</p>"
    properties = schema.get("properties")
    if not properties:
        return f"<p class='type'>{e(_type_of(schema))}</p>"
    required = set(schema.get("required", []))
    rows = []
    for name, prop in properties.items():
        nested = prop.get("properties") or (prop.get("$ref") and schemas.get(prop["$ref"].rsplit("/", 1)[-1], {}))
        flag = "<span class='required'>required</span>" if name in required else ""
        detail = _schema_html(prop, schemas, depth + 1) if nested else ""
        rows.append(f"<li><code>{e(name)}</code> <span class='type'>{e(_type_of(prop))}</span> {flag}"
                    f"{_constraints(prop)}{detail}</li>")  # fmt: skip
    return "<ul class='schema'>" + "".join(rows) + "</ul>"


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"].rsplit("/", 1)[-1])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(_type_of(option) for option in schema[union])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    if isinstance(kind, list):
        return " | ".join(map(str, kind))
    return str(kind) + (f" ({schema['format']})" if "format" in schema else "")


def _constraints(schema: dict[str, Any]) -> str:
    shown = {key: schema[key] for key in ("minimum", "maximum", "minLength", "maxLength", "pattern", "enum",
                                          "default") if key in schema}  # fmt: skip
    if not shown:
        return ""
    text = ", ".join(f"{key} {orjson.dumps(value).decode()}" for key, value in shown.items())
    return f" <span class='constraints'>{html.escape(text)}</span>"


_STYLESHEET = """\
body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
header, main { max-width: 960px; margin: 0 auto; padding: 0 1.5rem; }
header { padding-top: 1.5rem; } h1 small, h4 small { color: #6e6e73; font-weight: normal; font-size: 0.7em; }
table { border-collapse: collapse; } th, td { text-align: left; padding: 0.25rem 1rem 0.25rem 0; }
section.channel { background: #fff; border: 1px solid #e0e0e0; border-radius: 8px; padding: 0.5rem 1.25rem;
  margin: 1.25rem 0; }
article.operation { border-top: 1px solid #eee; padding: 0.5rem 0; }
.action { text-transform: uppercase; font-size: 0.75em; padding: 0.1rem 0.5rem; border-radius: 4px; color: #fff; }
.receive .action { background: #2e7d32; } .send .action { background: #1565c0; }
.delivery, .constraints { color: #6e6e73; font-size: 0.9em; } .type { color: #8e24aa; margin: 0.2rem 0; }
.required { color: #c62828; font-size: 0.8em; } ul.schema { list-style: none; padding-left: 1.2rem; margin: 0.2rem 0; }
code { background: #f2f2f2; padding: 0 0.25rem; border-radius: 3px; }
"""
