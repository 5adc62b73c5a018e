"""Native gRPC beside the HTTP app: ``app.grpc_service(servicer)`` registers a service compiled from a ``.proto``
file (``cello grpc-compile``), and ``app.run(grpc_port=50051)`` (``cello run --grpc-port``) serves every registered
service through ``grpc.aio`` on that port, in every worker, inside the worker's own event loop — started with the
app and stopped with it, in-flight calls given ``drain_timeout`` seconds to finish (``app.configure_grpc``).

granian sends no HTTP/2 trailers, which native gRPC needs (``grpc-status``), so the gRPC server has a port of its
own; the workers share it (``SO_REUSEPORT``), as they share the HTTP port. Beside the application's services it
serves the standard health service (``grpc.health.v1.Health``, ``SERVING`` while the app's readiness checks pass —
the same checks as ``/health/ready``) and server reflection (``grpcurl list`` works). What runs around each call —
metrics and the access log, auth and middleware, errors — is in ``cello.grpc.interceptors``; the same services on
the app's own port, over Connect and gRPC-Web, in ``cello.grpc.web``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc

from ..http.exceptions import ConfigurationError
from ..security.base import Authenticator
from ..security.guards import Guard
from .admission import Admission
from .interceptors import Errors, Guarding, Measuring, call_metrics

if TYPE_CHECKING:
    from ..app import App

__all__ = ["GrpcServer", "adder_of"]

logger = logging.getLogger("cello.grpc")

PORT_VARIABLE = "CELLO_GRPC_PORT"  # app.run(grpc_port=...) hands the port to the workers through it
UNSET: Any = object()  # a setting configure() leaves as it is
DEFAULT_MESSAGE_SIZE = 4 * 1024 * 1024  # grpcio's
COMPRESSIONS = {None: grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip,
                "deflate": grpc.Compression.Deflate}  # fmt: skip


def adder_of(servicer: Any) -> Callable[[Any, Any], None]:
    """The ``add_<Name>Servicer_to_server`` function grpcio-tools generated beside the servicer's base class."""
    import importlib

    for base in type(servicer).__mro__:
        module_name = getattr(base, "__module__", "")
        if module_name.endswith("_pb2_grpc") and base.__name__.endswith("Servicer"):
            adder = getattr(importlib.import_module(module_name), f"add_{base.__name__}_to_server", None)
            if adder is not None:
                return adder  # type: ignore[no-any-return]
    raise ConfigurationError(
        f"{type(servicer).__name__} is not a gRPC servicer: subclass the <Name>Servicer class that "
        "`cello grpc-compile` generated in a *_pb2_grpc module"
    )


class GrpcServer:
    """The app's gRPC services and, in a running worker, the ``grpc.aio`` server that serves them."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.services: list[tuple[Any, Callable[[Any, Any], None]]] = []
        self.names: list[str] = []  # the full names of those services, read once from their descriptors
        self.guards: dict[str, list[Any]] = {}  # service full name -> its own guards
        self.admissions: dict[str, Admission] = {}  # service full name -> its own middleware
        self.server: Any = None
        self.port: int | None = None
        self.drain_timeout = 10.0
        self.max_message_size = DEFAULT_MESSAGE_SIZE
        self.compression: str | None = None
        self.keepalive_time: float | None = None
        self.keepalive_timeout = 20.0
        self.min_ping_interval = 300.0
        self.web_routes: list[Any] = []
        self._layers: list[Any] | None = None
        self._counter: Callable[[str, str, grpc.StatusCode, float], None] | None = None
        self._watching: asyncio.Task[None] | None = None

    def add(self, servicer: Any, guards: Sequence[Any] = (), middleware: Sequence[Any] = (), *,
            web: bool = True) -> list[Any]:  # fmt: skip
        """Add a servicer; returns the routes that answer its methods over Connect and gRPC-Web (``web``)."""
        adder = adder_of(servicer)
        descriptors = _service_descriptors(adder)
        names = [descriptor.full_name for descriptor in descriptors]
        self.services.append((servicer, adder))
        self.names.extend(names)
        if guards:
            from ..security.guards import as_guard

            for name in names:
                self.guards.setdefault(name, []).extend(as_guard(guard) for guard in guards)
        if middleware:
            for name in names:
                self.admissions[name] = Admission(middleware)
        if not web:
            return []
        from .web import web_routes

        routes = web_routes(self, servicer, descriptors)
        self.web_routes.extend(routes)
        return routes

    def configure(self, *, max_message_size: int | None = None, compression: str | None = UNSET,
                  keepalive_time: float | None = UNSET, keepalive_timeout: float | None = None,
                  min_ping_interval: float | None = None, drain_timeout: float | None = None) -> None:  # fmt: skip
        """Change the settings given (``app.configure_grpc``). ``max_message_size``: the largest message taken or
        sent, in bytes, over native gRPC and (as the request body) over Connect and gRPC-Web; ``compression``:
        what native answers are compressed with (``"gzip"``, ``"deflate"``; None: nothing); ``keepalive_time``:
        seconds between the server's pings on a connection (None: grpcio's two hours), each given
        ``keepalive_timeout`` seconds for its answer; ``min_ping_interval``: the least seconds a client may wait
        between its own pings (5 minutes); ``drain_timeout``: seconds the calls under way get at shutdown."""
        if max_message_size is not None:
            if isinstance(max_message_size, bool) or not isinstance(max_message_size, int) or max_message_size < 1:
                raise ConfigurationError(f"max_message_size is a number of bytes >= 1, not {max_message_size!r}")
            self.max_message_size = max_message_size
            for route in self.web_routes:
                route.body_limit = max_message_size + 5  # NOTE: an enveloped message's 5 bytes of framing
        if compression is not UNSET:
            if compression not in COMPRESSIONS:
                raise ConfigurationError(f"compression is 'gzip', 'deflate' or None, not {compression!r}")
            self.compression = compression
        if keepalive_time is not UNSET:
            self.keepalive_time = None if keepalive_time is None else _seconds("keepalive_time", keepalive_time)
        if keepalive_timeout is not None:
            self.keepalive_timeout = _seconds("keepalive_timeout", keepalive_timeout)
        if min_ping_interval is not None:
            self.min_ping_interval = _seconds("min_ping_interval", min_ping_interval)
        if drain_timeout is not None:
            self.drain_timeout = _seconds("drain_timeout", drain_timeout)

    def _options(self) -> list[tuple[str, int]]:
        """grpcio's channel arguments for the settings."""
        options = [("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", self.max_message_size),
                   ("grpc.max_send_message_length", self.max_message_size),
                   ("grpc.http2.min_ping_interval_without_data_ms", int(self.min_ping_interval * 1000)),
                   ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
                   ("grpc.http2.ping_timeout_ms", int(self.keepalive_timeout * 1000))]  # fmt: skip
        if self.keepalive_time is not None:
            # NOTE: pings whatever the connection carries: grpcio stops pinging after two without data by default
            options += [("grpc.keepalive_time_ms", int(self.keepalive_time * 1000)),
                        ("grpc.http2.max_pings_without_data", 0)]  # fmt: skip
        return options

    def auth_layers(self) -> list[Any]:
        """The app's authenticators and guards, in its order; read once, when the first call comes (the app's
        middleware is fixed once it serves)."""
        if self._layers is None:
            self._layers = [layer for layer in self.app.middleware if isinstance(layer, (Authenticator, Guard))]
        return self._layers

    def web_calls_counted(self) -> Callable[[str, str, grpc.StatusCode, float], None]:
        """What counts a Connect or gRPC-Web call in ``cello_grpc_calls_total`` and ``cello_grpc_call_seconds``
        (``count(service, path, code, started)``), when the app exports Prometheus metrics."""

        def count(service: str, path: str, code: grpc.StatusCode, started: float) -> None:
            if self._counter is None:
                self._counter = _web_counter(self.app)
            self._counter(service, path, code, started)

        return count

    async def start(self) -> None:
        """Start serving, when a port was given (``app.run(grpc_port=...)``); the app's startup hook."""
        value = os.environ.get(PORT_VARIABLE)
        if not value or not self.services:
            return
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        server = grpc.aio.server(
            # plain (not async) methods run in this pool; async ones on the worker's event loop
            migration_thread_pool=ThreadPoolExecutor(max_workers=self.app.config.threadpool_size),
            interceptors=[
                *self._measuring(),
                Guarding(self.app, self.guards, self.auth_layers(), self.admissions),
                Errors(debug=bool(self.app.debug)),
            ],
            options=self._options(),
            compression=COMPRESSIONS[self.compression],
        )
        for servicer, adder in self.services:
            adder(servicer, server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection([reflection.SERVICE_NAME, health.SERVICE_NAME, *self.names], server)
        self.port = server.add_insecure_port(f"{os.environ.get('CELLO_GRPC_HOST', '127.0.0.1')}:{value}")
        await server.start()
        self.server = server
        self._serving = health_pb2.HealthCheckResponse.SERVING
        self._not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        await self._report()
        self._watching = asyncio.get_running_loop().create_task(self._watch())
        logger.info("gRPC: serving %s on port %s", ", ".join(self.names), self.port)

    def _measuring(self) -> list[Any]:
        """The interceptor that counts and logs calls, outermost (it sees the status the error interceptor settled
        on), when the app exports Prometheus metrics (``app.enable_prometheus()``) or logs its requests
        (``app.enable_logging()``)."""
        from ..middleware.access_log import AccessLog
        from ..middleware.metrics import Prometheus

        metrics = any(isinstance(layer, Prometheus) for layer in self.app.middleware)
        access = next((layer for layer in self.app.middleware if isinstance(layer, AccessLog)), None)
        return [Measuring(metrics, access)] if metrics or access is not None else []

    async def stop(self) -> None:
        """Stop taking calls and give those under way ``drain_timeout`` seconds; the app's shutdown hook."""
        if self._watching is not None:
            self._watching.cancel()
            self._watching = None
        server, self.server = self.server, None
        if server is not None:
            await server.stop(self.drain_timeout)

    async def _report(self) -> None:
        """The health service's answer: the app's readiness checks (``/health/ready``), or SERVING without any."""
        checks = getattr(self.app, "_health", None)
        ready = True
        if checks is not None:
            _, ready = await checks._checked()
        status = self._serving if ready else self._not_serving
        await self.health.set("", status)
        for name in self.names:
            await self.health.set(name, status)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            try:
                await self._report()
            except Exception:  # a check that fails to run is a failed check: the next report says so
                logger.exception("gRPC health: the readiness checks failed to run")


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{name} is a number of seconds above 0, not {value!r}")
    return float(value)


def _service_descriptors(adder: Callable[..., Any]) -> list[Any]:
    """The descriptors of the services an ``add_..._to_server`` function registers (from its ``_pb2`` module)."""
    import importlib

    pb2 = importlib.import_module(adder.__module__.removesuffix("_grpc"))
    descriptor = getattr(pb2, "DESCRIPTOR", None)
    services = list(descriptor.services_by_name.values()) if descriptor is not None else []
    wanted = adder.__name__.removeprefix("add_").removesuffix("Servicer_to_server")
    chosen = [service for service in services if service.name == wanted] or services
    if not chosen:
        raise ConfigurationError(f"{pb2.__name__} describes no service: compile the .proto with `cello grpc-compile`")
    return chosen


def _web_counter(app: App) -> Callable[[str, str, grpc.StatusCode, float], None]:
    from ..middleware.metrics import Prometheus

    if not any(isinstance(layer, Prometheus) for layer in app.middleware):
        return lambda service, path, code, started: None
    calls, seconds = call_metrics()

    def count(service: str, path: str, code: grpc.StatusCode, started: float) -> None:
        method = path.rpartition("/")[2]
        calls.labels(service, method, code.name).inc()
        seconds.labels(service, method).observe(time.perf_counter() - started)

    return count
