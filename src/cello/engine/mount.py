"""Serving any ASGI application under a path prefix, on either engine face.

The mounted app sees a normal ASGI http scope (``root_path`` = the prefix, ``path`` = the rest); what it sends
back becomes a StreamingResponse, so the mount costs nothing elsewhere and the parent's middleware sees its
responses like any other. Lifespan events are not forwarded to mounted ASGI apps (as in Starlette).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ..http.exceptions import HTTPException
from ..http.request import Request
from ..http.response import Response, StreamingResponse
from ..routing.router import HTTP_METHODS, Route

_ALL_METHODS = [m for m in HTTP_METHODS if m != "TRACE"]


def asgi_mount_routes(prefix: str, asgi_app: Any) -> list[Route]:
    endpoint = _asgi_endpoint(prefix, asgi_app)
    options: dict[str, Any] = {"name": f"mount:{prefix}", "stream": True, "meta": {"mount": asgi_app}}
    return [
        Route(prefix, _ALL_METHODS, endpoint, **options),
        Route(prefix + "/{__mount_path:path}", _ALL_METHODS, endpoint, **options),
    ]


def _scope_for(request: Request, prefix: str) -> dict[str, Any]:
    path = request.path[len(prefix) :] or "/"
    client = request.client
    server = request._server
    host, _, port = (server or "").rpartition(":")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.http_version,
        "method": request.method,
        "scheme": request.scheme,
        "path": path,
        "raw_path": path.encode("utf-8"),
        "root_path": prefix,
        "query_string": request.query_string.encode("latin-1"),
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.multi_items()],
        "client": (client.host, client.port) if client else None,
        "server": (host.strip("[]"), int(port)) if port.isdigit() else None,
        "state": {},
    }


def _asgi_endpoint(prefix: str, asgi_app: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[dict[str, Any]] = loop.create_future()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        finished = asyncio.Event()
        body = request.stream()

        async def receive() -> dict[str, Any]:
            if not finished.is_set():
                try:
                    chunk = await body.__anext__()
                    return {"type": "http.request", "body": chunk, "more_body": True}
                except StopAsyncIteration:
                    finished.set()
                    return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # nothing more will come; a disconnect is signalled by cancellation
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if not started.done():
                    started.set_result(message)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    await chunks.put(message["body"])
                if not message.get("more_body", False):
                    await chunks.put(None)

        task = asyncio.ensure_future(asgi_app(_scope_for(request, prefix), receive, send))
        # if the app fails or returns mid-body, end the body instead of leaving the reader waiting
        task.add_done_callback(lambda _: chunks.put_nowait(None))
        await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            error = task.exception()
            if error is not None:
                raise error
            raise HTTPException(500, "The mounted application sent no response.")
        message = started.result()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]

        async def body_iter() -> AsyncIterator[bytes]:
            try:
                while True:
                    chunk = await chunks.get()
                    if chunk is None:
                        return
                    yield chunk
            finally:
                if not task.done():
                    task.cancel()

        return StreamingResponse(body_iter(), message["status"], headers)

    return endpoint
