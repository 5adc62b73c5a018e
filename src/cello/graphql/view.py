"""The GraphQL endpoint over HTTP: Strawberry's async view (request parsing, batching, execution) on Cello's
``Request`` and ``Response``, answering as the GraphQL-over-HTTP specification says.

- Media types: a client that accepts ``application/graphql-response+json`` gets it, with the specification's
  status codes (a document that does not parse or validate, or breaks a limit: 400, and no ``data``); a client
  that accepts ``application/json`` (or anything, or says nothing) gets that, with 200 for a GraphQL answer
  whatever its errors, as clients before the specification expect; any other ``Accept``: 406.
- Methods: POST with a JSON body (any other content type: 415; multipart uploads where turned on, with a
  ``GraphQL-Preflight`` header no cross-site form can send), and GET with the operation in the query string,
  for queries only — a mutation over GET is 405 with ``Allow: POST``, so no "simple" cross-site request (a link,
  an image, a form) can change anything. Subscriptions are not answered over plain HTTP.
- Errors of the request itself (bad JSON, no query, batching refused) are problem+json like every Cello error.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import inspect
from collections.abc import AsyncGenerator, Callable, Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeGuard

import orjson
from cross_web import AsyncHTTPRequestAdapter, FormData
from cross_web import HTTPException as StrawberryHTTPException
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.async_base_view import AsyncBaseHTTPView, AsyncWebSocketAdapter
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived, WebSocketDisconnected
from strawberry.schema import BaseSchema, Schema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET

from ..http.exceptions import ConfigurationError, HTTPException
from ..http.request import Request
from ..http.response import Response as HTTPResponse
from ..http.response import StreamingResponse
from ..realtime.websocket import POLICY, WebSocket, WebSocketDisconnect
from . import ide
from .context import Context, Response
from .limits import Limits, extensions, log_errors
from .metrics import OperationMetrics
from .permissions import guard_input_fields
from .persisted import PersistedQueries, Refused

__all__ = ["GRAPHQL_RESPONSE", "JSON", "GraphQLView", "Subscriptions", "media_type"]

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"

# headers a multipart (upload) request must carry: a browser sends none cross-site without a CORS preflight
PREFLIGHT_HEADERS = ("graphql-preflight", "apollo-require-preflight", "x-apollo-operation-name")
NO_PREFLIGHT = ("A multipart GraphQL request needs a GraphQL-Preflight header (or Apollo-Require-Preflight), which a "
                "cross-site form cannot send.")  # fmt: skip

# the response a request's resolvers shape, for get_sub_response (Strawberry asks for it by request)
_response: ContextVar[Response] = ContextVar("cello_graphql_response")


def media_type(accept: str | None) -> str | None:
    """The media type to answer in for an ``Accept`` header (see the module); ``None``: nothing acceptable."""
    if not accept:
        return JSON
    chosen = None
    for part in accept.split(","):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        if any(parameter.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for parameter in parameters):
            continue
        media = media.lower()
        if media == GRAPHQL_RESPONSE:
            return GRAPHQL_RESPONSE
        if media in (JSON, "application/*", "*/*"):
            chosen = JSON
    return chosen


@dataclass(frozen=True)
class Subscriptions:
    """How an endpoint serves subscriptions: ``protocols`` (graphql-transport-ws, the legacy graphql-ws, and
    graphql-sse's distinct connections over SSE), ``ping_interval`` (seconds between the server's pings on
    WebSocket; SSE streams keep Strawberry's heartbeat comments), ``connection_init_timeout`` (seconds a
    WebSocket client has to send ``connection_init``: closed with 4408 after), ``max_subscriptions`` (operations
    at once on one connection), ``origins`` (pages of other origins allowed to open a WebSocket; a browser's
    cross-origin handshake is refused otherwise), ``on_connect`` (``on_connect(context, params)`` at
    ``connection_init``: ``False`` refuses with 4403, a dict is the ``connection_ack`` payload)."""

    protocols: tuple[str, ...] = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL)
    ping_interval: float | None = 15.0
    connection_init_timeout: float = 10.0
    max_subscriptions: int | None = 100
    origins: Collection[str] = ()
    on_connect: Callable[[Any, dict[str, Any]], Any] | None = None


class _RequestAdapter(AsyncHTTPRequestAdapter):
    """Strawberry's view of a Cello request."""

    def __init__(self, request: Request) -> None:
        self.request = request

    @property
    def method(self) -> Any:
        return self.request.method

    @property
    def query_params(self) -> Mapping[str, str | None]:
        return dict(self.request.query.items())

    @property
    def path_params(self) -> Mapping[str, Any]:
        return self.request.path_params

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def content_type(self) -> str | None:
        return self.request.header("content-type")

    async def get_body(self) -> bytes:
        return bytes(self.request.body)

    async def get_form_data(self) -> FormData:
        form = await self.request.form()
        return FormData(files=form, form=form)

    @property
    def url(self) -> str:
        return str(self.request.url)

    @property
    def cookies(self) -> Mapping[str, str]:
        return self.request.cookies

    @property
    def client_host(self) -> str | None:
        client = self.request.client
        return client.host if client is not None else None


class GraphQLView(AsyncBaseHTTPView[Request, HTTPResponse, Response, WebSocket, WebSocket, Any, Any]):
    """One endpoint's Strawberry view: its own copy of the schema, with the endpoint's limits, caches and error
    masking added to the schema's own extensions (the schema given is not changed)."""

    request_adapter_class = _RequestAdapter
    graphql_ide = None

    def __init__(
        self,
        schema: Schema,
        *,
        limits: Limits,
        introspection: bool,
        mask_errors: bool,
        allow_get: bool,
        batching: int | None,
        root_value: Any,
        subscriptions: Subscriptions,
        metrics: OperationMetrics | None = None,
        graphiql: bool = False,
        persisted: PersistedQueries | None = None,
        uploads: bool = False,
    ) -> None:
        if not isinstance(schema, Schema):
            raise ConfigurationError(f"app.graphql() serves a strawberry.Schema, not {type(schema).__name__}")
        # NOTE: a shallow copy shares the built GraphQL schema and its types; only the extension list (and the
        # batching setting) are the endpoint's own
        self.schema = copy.copy(schema)
        added = extensions(limits, introspection=introspection, mask_errors=mask_errors)
        if metrics is not None:
            added.append(metrics.extension)
        self.schema.extensions = (*schema.extensions, *added)
        self.schema.config = dataclasses.replace(
            schema.config,
            batching_config={"max_operations": batching} if batching else None,
            # "did you mean ...?" tells a stranger the schema's field names, like introspection
            disable_field_suggestions=schema.config.disable_field_suggestions or not introspection,
        )
        guard_input_fields(schema)
        if type(schema).process_errors is BaseSchema.process_errors:  # not the application's own logging
            self.schema.process_errors = log_errors  # type: ignore[method-assign]
        self._allow_get = allow_get
        self.root_value = root_value
        self.graphiql = graphiql
        self.persisted = persisted
        self.multipart_uploads_enabled = uploads  # Strawberry's: the multipart request specification
        # subscriptions: Strawberry's protocol handlers, configured from the endpoint's options
        self.protocols = subscriptions.protocols
        self.connection_init_wait_timeout = timedelta(seconds=subscriptions.connection_init_timeout)
        self.max_subscriptions_per_connection = subscriptions.max_subscriptions
        self.allowed_origins = frozenset(subscriptions.origins)
        self.ping_interval = subscriptions.ping_interval
        self.keep_alive = subscriptions.ping_interval is not None  # graphql-ws: its "ka" messages
        self.keep_alive_interval = subscriptions.ping_interval
        self.on_connect = subscriptions.on_connect
        self.sse = GRAPHQL_SSE_PROTOCOL in subscriptions.protocols
        self.websocket_adapter_class = _WebSocketAdapter
        self.graphql_transport_ws_handler_class = _TransportWSHandler

    @property
    def allow_queries_via_get(self) -> bool:
        return self._allow_get

    async def answer(self, request: Request, values: Any) -> HTTPResponse:
        """The answer to one HTTP request; ``values``: what the endpoint's context function returned."""
        accept = request.header("accept")
        if self.graphiql and request.method == "GET" and "query" not in request.query and "text/html" in (accept or ""):
            return ide.page(request.path)  # a browser opening the endpoint
        streamed = self.sse and accept is not None and "text/event-stream" in accept.lower()
        accepted = JSON if streamed else media_type(accept)
        if accepted is None:
            raise HTTPException(406, f"GraphQL answers in {GRAPHQL_RESPONSE} or {JSON}.")
        if request.method == "POST":
            kind = (request.header("content-type") or "").split(";")[0].strip().lower()
            if kind == "multipart/form-data" and self.multipart_uploads_enabled:
                # NOTE: a cross-site form can send multipart without asking first; it cannot add a header
                if not any(request.header(name) for name in PREFLIGHT_HEADERS):
                    raise HTTPException(400, NO_PREFLIGHT)
            elif kind != JSON:
                raise HTTPException(415, f"A GraphQL request over POST is {JSON}.")
        elif not self._allow_get:
            raise HTTPException(405, "GraphQL over GET is off here; POST the operation.", {"Allow": "POST"})
        response = Response()
        response.media_type = accepted
        if values is None or isinstance(values, Mapping):
            context: Any = Context(request, response, values)
        else:
            context = values  # the application's own context object
        token = _response.set(response)
        try:
            return await self.run(request, context=context)
        except StrawberryHTTPException as exc:
            raise HTTPException(exc.status_code, exc.reason) from None
        except Refused as exc:  # a persisted-query refusal: a GraphQL error, which the client's link reads
            status = 400 if accepted == GRAPHQL_RESPONSE else 200
            return HTTPResponse(orjson.dumps(exc.answer()), status=status, media_type=accepted)
        finally:
            _response.reset(token)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        items = data if isinstance(data, list) else [data]
        if self.persisted is None:
            for item in items:  # a client trying APQ on an endpoint without it: tell it to send documents
                if item.query is None and item.extensions and "persistedQuery" in item.extensions:
                    raise Refused("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED")
            return data
        resolved = [await self.persisted.resolve(item) for item in items]
        return resolved if isinstance(data, list) else resolved[0]

    # -- what AsyncBaseHTTPView asks of an integration -------------------------------------------------------

    async def get_sub_response(self, request: Request) -> Response:
        return _response.get()

    async def get_context(self, request: Request, response: Any) -> Any:
        return Context(request, response if isinstance(response, Response) else None)

    async def get_root_value(self, request: Request) -> Any:
        return self.root_value

    def should_render_graphql_ide(self, request: Any) -> bool:
        return False  # the page is answered before Strawberry's view runs; a GET without a query is a 400

    async def render_graphql_ide(self, request: Request) -> HTTPResponse:
        raise StrawberryHTTPException(404, "Not Found")

    def decode_json(self, data: str | bytes) -> object:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise StrawberryHTTPException(400, "The request body is not valid JSON.") from exc

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def create_streaming_response(
        self,
        request: Request,
        stream: Callable[[], AsyncGenerator[str, None]],
        sub_response: Response,
        headers: Mapping[str, str],
    ) -> HTTPResponse:
        """A subscription over SSE (graphql-sse, distinct connections): one event per result, then ``complete``."""
        return StreamingResponse(stream(), status=sub_response.status_code,
                                 headers={**sub_response.headers, **headers})  # fmt: skip

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> HTTPResponse:
        return HTTPResponse(
            orjson.dumps(response_data),
            status=sub_response.status_code,
            headers=sub_response.headers,
            media_type=sub_response.media_type,
        )

    async def execute_single(  # Strawberry's signature
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        method = request_adapter.method
        # NOTE: subscriptions stream (WebSocket, SSE); a plain HTTP answer has room for one result
        allowed = OperationType.from_http(method) - {OperationType.SUBSCRIPTION}
        try:
            result = await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as exc:
            raise StrawberryHTTPException(400, exc.as_http_error_reason()) from exc
        except InvalidOperationTypeError as exc:
            if method == "GET":  # a mutation over GET: the specification's 405
                raise HTTPException(405, "Only queries may be sent with GET; POST the operation.",
                                    {"Allow": "POST"}) from None  # fmt: skip
            raise StrawberryHTTPException(400, exc.as_http_error_reason(method)) from exc
        except MissingQueryError as exc:
            raise StrawberryHTTPException(400, "No GraphQL query found in the request.") from exc
        if isinstance(result, PreExecutionError):
            if sub_response.media_type == GRAPHQL_RESPONSE:
                sub_response.status_code = 400  # not a GraphQL answer: the document failed to parse or validate
        elif self.persisted is not None:
            await self.persisted.remember(request_data)  # APQ: a document sent with its hash, and valid
        return result

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        answer = await super().process_result(request, result)
        if isinstance(result, PreExecutionError):
            answer.pop("data", None)  # nothing was executed: no data entry at all
        return answer

    # -- WebSocket: graphql-transport-ws and graphql-ws -----------------------------------------------------

    async def answer_websocket(self, websocket: WebSocket, values: Any) -> None:
        """Serve one WebSocket connection; ``values``: what the context function returned at the handshake."""
        context = Context(websocket, None, values) if values is None or isinstance(values, Mapping) else values
        await self.run(websocket, context=context)

    def is_websocket_request(self, request: Any) -> TypeGuard[WebSocket]:
        return bool(request.is_websocket)

    async def pick_websocket_subprotocol(self, request: WebSocket) -> str | None:
        supported = self.websocket_subprotocols
        return next((offered for offered in request.subprotocols if offered in supported), None)

    async def create_websocket_response(self, request: WebSocket, subprotocol: str | None) -> WebSocket:
        await request.accept(subprotocol)
        return request

    def get_websocket_headers(self, request: WebSocket) -> Mapping[str, str]:
        return request.headers

    async def reject_websocket(self, request: WebSocket) -> WebSocket:
        await request.close(POLICY)  # before the handshake completes: refused with 403
        return request

    async def on_ws_connect(self, context: Any) -> Any:
        if self.on_connect is None:
            return UNSET
        params = getattr(context, "connection_params", None) or {}
        verdict = self.on_connect(context, params)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is False:
            raise ConnectionRejectionError
        return verdict if isinstance(verdict, dict) else UNSET


class _WebSocketAdapter(AsyncWebSocketAdapter):
    """Strawberry's view of a Cello WebSocket: JSON text messages."""

    def __init__(self, view: Any, request: WebSocket, response: WebSocket) -> None:
        super().__init__(view)
        self.ws = response

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        async for message in self.ws:
            if not message.is_text:
                raise NonTextMessageReceived
            try:
                yield orjson.loads(message.text)
            except orjson.JSONDecodeError:
                if not ignore_parsing_errors:
                    raise NonJsonMessageReceived from None

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect:
            raise WebSocketDisconnected from None

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)


class _TransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """graphql-transport-ws, with the server's own pings: a proxy drops a socket quiet for long (often 60 s), and
    a subscription may well be quiet that long. Every ``ping_interval`` seconds after ``connection_ack`` the server
    sends ``ping``; the client answers ``pong`` (the protocol requires it)."""

    ping_task: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        interval = getattr(self.view, "ping_interval", None)
        if self.connection_acknowledged and interval and self.ping_task is None:
            self.ping_task = asyncio.get_running_loop().create_task(self._ping(interval))

    async def _ping(self, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                await self.send_message({"type": "ping"})
        except (WebSocketDisconnected, WebSocketDisconnect):
            return

    async def shutdown(self) -> None:
        if self.ping_task is not None:
            self.ping_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.ping_task
        await super().shutdown()
