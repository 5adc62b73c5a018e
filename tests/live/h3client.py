"""A minimal HTTP/3 client on aioquic (the shape of aioquic's own http3_client example), for the live tests."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent


@dataclass
class H3Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _H3Protocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._responses: dict[int, H3Response] = {}
        self._waiters: dict[int, asyncio.Future[H3Response]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self._http.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        response = self._responses.get(event.stream_id)
        if response is None:
            return
        if isinstance(event, HeadersReceived):
            for name, value in event.headers:
                if name == b":status":
                    response.status = int(value)
                else:
                    response.headers[name.decode()] = value.decode()
        else:
            response.body += event.data
        if event.stream_ended:
            waiter = self._waiters.pop(event.stream_id)
            if not waiter.done():
                waiter.set_result(self._responses.pop(event.stream_id))

    async def request(self, method: str, authority: str, path: str, body: bytes = b"") -> H3Response:
        stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"cello-tests-aioquic"),
        ]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        self._http.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self._http.send_data(stream_id, body, end_stream=True)
        waiter: asyncio.Future[H3Response] = asyncio.get_running_loop().create_future()
        self._responses[stream_id] = H3Response()
        self._waiters[stream_id] = waiter
        self.transmit()
        return await asyncio.shield(waiter)


async def h3_request(
    host: str,
    port: int,
    path: str,
    *,
    cafile: str,
    method: str = "GET",
    body: bytes = b"",
    server_name: str = "localhost",
    timeout: float = 10.0,
) -> H3Response:
    """One HTTP/3 request over a fresh QUIC connection; the certificate is verified against ``cafile``."""
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
    configuration.verify_mode = ssl.CERT_REQUIRED
    configuration.load_verify_locations(cafile)
    async with asyncio.timeout(timeout):
        async with connect(host, port, configuration=configuration, create_protocol=_H3Protocol) as client:
            assert isinstance(client, _H3Protocol)
            return await client.request(method, f"{server_name}:{port}", path, body)
