"""gRPC registration and the compile command, without a server: what is refused, and what protoc makes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")

from cello import App, ConfigurationError
from cello.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "grpc"


def test_only_a_generated_servicer_is_served() -> None:
    with pytest.raises(ConfigurationError, match="not a gRPC servicer"):
        App().grpc_service(object())


def test_grpc_compile_writes_the_modules_and_refuses_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["grpc-compile", str(EXAMPLE / "greeter.proto"), "--out", str(tmp_path)]) == 0
    assert {path.name for path in tmp_path.iterdir()} >= {"greeter_pb2.py", "greeter_pb2.pyi", "greeter_pb2_grpc.py"}
    sys.path.insert(0, str(tmp_path))
    try:
        import greeter_pb2_grpc

        class Greeter(greeter_pb2_grpc.GreeterServicer):
            pass

        app = App()
        assert app.grpc_service(Greeter()) is not None  # found add_GreeterServicer_to_server beside its base
    finally:
        sys.path.remove(str(tmp_path))
    with pytest.raises(SystemExit) as refused:
        main(["grpc-compile", str(tmp_path / "missing.proto")])
    assert refused.value.code == 2
    assert "no such .proto file" in capsys.readouterr().err


async def test_calls_are_counted_per_service_method_and_code(greeter: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server in this test's own loop (the app's startup hook, as in a worker), called over a socket."""
    pytest.importorskip("prometheus_client")
    import grpc

    from cello.testing import AsyncTestClient, free_port

    pb, greeter_pb2_grpc = greeter

    class Counted(greeter_pb2_grpc.GreeterServicer):
        async def SayHello(self, request: Any, context: Any) -> Any:
            if request.name == "nobody":
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a name, please")
            if request.name == "boom":
                raise RuntimeError("kaput")
            return pb.HelloReply(message=f"Hello, {request.name}!")

    from prometheus_client import REGISTRY

    labels = {"service": "greeter.v1.Greeter", "method": "SayHello"}

    def counted() -> list[float]:  # NOTE: the metrics are the process's: other tests count calls too
        codes = [REGISTRY.get_sample_value("cello_grpc_calls_total", {**labels, "code": code}) or 0.0
                 for code in ("OK", "INVALID_ARGUMENT", "INTERNAL")]  # fmt: skip
        return [*codes, REGISTRY.get_sample_value("cello_grpc_call_seconds_count", labels) or 0.0]

    app = App()
    app.enable_prometheus()
    app.grpc_service(Counted())
    before = counted()
    port = free_port()
    monkeypatch.setenv("CELLO_GRPC_PORT", str(port))
    async with AsyncTestClient(app) as client:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            greeter = greeter_pb2_grpc.GreeterStub(channel)
            assert (await greeter.SayHello(pb.HelloRequest(name="Ada"), timeout=5)).message == "Hello, Ada!"
            for name, code in (("nobody", grpc.StatusCode.INVALID_ARGUMENT), ("boom", grpc.StatusCode.INTERNAL)):
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await greeter.SayHello(pb.HelloRequest(name=name), timeout=5)
                assert failed.value.code() == code
        exported = (await client.get("/metrics")).text
    assert 'cello_grpc_calls_total{code="INTERNAL",method="SayHello",service="greeter.v1.Greeter"}' in exported
    assert [after - earlier for after, earlier in zip(counted(), before, strict=True)] == [1.0, 1.0, 1.0, 3.0]


async def test_the_apps_authenticators_and_guards_protect_rpcs(greeter: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One auth layer: an API key in the call's metadata, as in a request's headers; a service guard."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from cello import grpc as cello_grpc
    from cello.security import ApiKeyAuth, Permission
    from cello.testing import AsyncTestClient, free_port

    pb, greeter_pb2_grpc = greeter

    class Guarded(greeter_pb2_grpc.GreeterServicer):
        async def SayHello(self, request: Any, context: Any) -> Any:
            user = cello_grpc.current_user()
            return pb.HelloReply(message=f"Hello, {request.name}, from {sorted(user.permissions)}!")

    reader, writer = "reader-key-0123456789", "writer-key-0123456789"
    app = App()
    app.use(ApiKeyAuth(keys={reader: ["greet:read"], writer: ["greet:read", "greet:write"]}))
    app.grpc_service(Guarded(), guards=[Permission("greet:write")])
    port = free_port()
    monkeypatch.setenv("CELLO_GRPC_PORT", str(port))
    async with AsyncTestClient(app):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            greeter = greeter_pb2_grpc.GreeterStub(channel)
            hello = pb.HelloRequest(name="Ada")
            for metadata, code in (((), grpc.StatusCode.UNAUTHENTICATED),
                                   ((("x-api-key", "not-a-key-at-all-000"),), grpc.StatusCode.UNAUTHENTICATED),
                                   ((("x-api-key", reader),), grpc.StatusCode.PERMISSION_DENIED)):  # fmt: skip
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await greeter.SayHello(hello, metadata=metadata, timeout=5)
                assert refused.value.code() == code
            answer = await greeter.SayHello(hello, metadata=(("x-api-key", writer),), timeout=5)
            assert answer.message == "Hello, Ada, from ['greet:read', 'greet:write']!"
            # the health service answers anyone, like /health
            health = health_pb2_grpc.HealthStub(channel)
            status = (await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status
            assert status == health_pb2.HealthCheckResponse.SERVING


async def test_an_access_log_line_per_call(
    greeter: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    import grpc

    from cello.testing import AsyncTestClient, free_port

    pb, greeter_pb2_grpc = greeter

    class Logged(greeter_pb2_grpc.GreeterServicer):
        async def SayHello(self, request: Any, context: Any) -> Any:
            return pb.HelloReply(message="hi")

    app = App()
    app.enable_logging()
    app.grpc_service(Logged())
    port = free_port()
    monkeypatch.setenv("CELLO_GRPC_PORT", str(port))
    with caplog.at_level(logging.INFO, logger="cello.access"):
        async with AsyncTestClient(app):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                greeter = greeter_pb2_grpc.GreeterStub(channel)
                await greeter.SayHello(pb.HelloRequest(name="a"), metadata=(("x-request-id", "req-42"),), timeout=5)
                await greeter.SayHello(pb.HelloRequest(name="b"), timeout=5)
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "cello.access"]
    assert [(line["rpc"], line["code"]) for line in lines] == [("/greeter.v1.Greeter/SayHello", "OK")] * 2
    assert lines[0]["request_id"] == "req-42" and len(lines[1]["request_id"]) == 32  # the caller's, or a new one
    assert lines[0]["client"].startswith("ipv4:127.0.0.1:") and lines[0]["duration_ms"] >= 0


async def test_rate_limits_and_circuit_breakers_around_rpcs(greeter: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service's middleware: a rate limit keyed on the caller's address, and a circuit breaker that counts
    INTERNAL as a failure but not INVALID_ARGUMENT; async and plain methods alike."""
    import grpc

    from cello.middleware import CircuitBreaker, RateLimit
    from cello.testing import AsyncTestClient, free_port

    pb, greeter_pb2_grpc = greeter
    ran = {"hello": 0}

    class Fragile(greeter_pb2_grpc.GreeterServicer):
        async def SayHello(self, request: Any, context: Any) -> Any:
            ran["hello"] += 1
            if not request.name:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a name, please")
            if request.name == "boom":
                raise RuntimeError("down")
            return pb.HelloReply(message="hi")

        def Sum(self, requests: Any, context: Any) -> Any:  # plain: admitted from the server's thread pool
            return pb.Total(total=sum(number.value for number in requests))

    class Limited(greeter_pb2_grpc.GreeterServicer):
        def Sum(self, requests: Any, context: Any) -> Any:
            return pb.Total(total=sum(number.value for number in requests))

    breaker = CircuitBreaker("greeter", failure_threshold=2, reset_timeout=60)
    app = App()
    app.grpc_service(Fragile(), middleware=[breaker])
    port = free_port()
    monkeypatch.setenv("CELLO_GRPC_PORT", str(port))
    async with AsyncTestClient(app):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            greeter = greeter_pb2_grpc.GreeterStub(channel)
            for name, code in (("", grpc.StatusCode.INVALID_ARGUMENT), ("", grpc.StatusCode.INVALID_ARGUMENT),
                               ("boom", grpc.StatusCode.INTERNAL), ("boom", grpc.StatusCode.INTERNAL),
                               ("Ada", grpc.StatusCode.UNAVAILABLE)):  # fmt: skip
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await greeter.SayHello(pb.HelloRequest(name=name), timeout=5)
                assert failed.value.code() == code
            assert ran["hello"] == 4 and breaker.state == "open"  # the open circuit answered without the method
            assert dict(failed.value.trailing_metadata())["retry-after"].isdigit()

    limited = App()
    limited.grpc_service(Limited(), middleware=[RateLimit(requests=2, window=60, key="ip")])
    port = free_port()
    monkeypatch.setenv("CELLO_GRPC_PORT", str(port))
    async with AsyncTestClient(limited):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            greeter = greeter_pb2_grpc.GreeterStub(channel)
            numbers = [pb.Number(value=n) for n in (1, 2, 3)]
            for _ in range(2):
                assert (await greeter.Sum(iter(numbers), timeout=5)).total == 6
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await greeter.Sum(iter(numbers), timeout=5)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.value.details() == "Too many requests; slow down."
            assert int(dict(refused.value.trailing_metadata())["retry-after"]) > 0


async def test_plain_methods_end_with_the_right_status(greeter: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Methods run in the server's thread pool, whose context cannot say its code: an exception is a masked
    INTERNAL, an unimplemented method (the generated base class's) UNIMPLEMENTED, an abort its own code."""
    import grpc

    from cello.testing import AsyncTestClient, free_port

    pb, greeter_pb2_grpc = greeter

    class Plain(greeter_pb2_grpc.GreeterServicer):
        def SayHello(self, request: Any, context: Any) -> Any:
            if request.name == "boom":
                raise RuntimeError("the database password is hunter2")
            context.abort(grpc.StatusCode.NOT_FOUND, f"no {request.name} here")

        def Countdown(self, request: Any, context: Any) -> Any:
            yield pb.Tick(value=1)
            raise RuntimeError("the signing key is 0xDEADBEEF")

    app = App()
    app.grpc_service(Plain())
    port = free_port()
    monkeypatch.setenv("CELLO_GRPC_PORT", str(port))
    async with AsyncTestClient(app):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            greeter = greeter_pb2_grpc.GreeterStub(channel)
            for name, code, details in (("boom", grpc.StatusCode.INTERNAL, "Internal server error."),
                                        ("Bo", grpc.StatusCode.NOT_FOUND, "no Bo here")):  # fmt: skip
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await greeter.SayHello(pb.HelloRequest(name=name), timeout=5)
                assert (failed.value.code(), failed.value.details()) == (code, details)
            ticks = greeter.Countdown(pb.CountdownRequest(start=1), timeout=5)
            assert (await ticks.read()).value == 1
            with pytest.raises(grpc.aio.AioRpcError) as broken:
                await ticks.read()
            assert (broken.value.code(), broken.value.details()) == (grpc.StatusCode.INTERNAL, "Internal server error.")
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await greeter.Sum(iter([pb.Number(value=1)]), timeout=5)
            assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def _proxy(port: int) -> tuple[Any, dict[str, int]]:
    """A TCP proxy to ``port``: ``state["down"]`` counts the bytes the server sends back (what is on the wire);
    while ``state["deaf"]`` is set, what the client sends is dropped — a client gone silent."""
    import asyncio

    state = {"down": 0, "deaf": 0}

    async def pipe(source: Any, target: Any, down: bool) -> None:
        try:
            while data := await source.read(65536):
                if down:
                    state["down"] += len(data)
                elif state["deaf"]:
                    continue
                target.write(data)
                await target.drain()
        finally:
            target.close()

    async def handle(reader: Any, writer: Any) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, upstream_writer, False), pipe(upstream_reader, writer, True),
                             return_exceptions=True)  # fmt: skip

    return await asyncio.start_server(handle, "127.0.0.1", 0), state


async def test_server_settings_compression_message_size_and_keepalive(
    greeter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import grpc

    from cello.testing import AsyncTestClient, free_port

    pb, greeter_pb2_grpc = greeter

    class Echo(greeter_pb2_grpc.GreeterServicer):
        async def SayHello(self, request: Any, context: Any) -> Any:
            return pb.HelloReply(message=request.name)

        async def Countdown(self, request: Any, context: Any) -> Any:
            for value in range(request.start, 0, -1):
                yield pb.Tick(value=value)
                await asyncio.sleep(request.interval)

    app = App()
    app.grpc_service(Echo())
    app.configure_grpc(compression="gzip", max_message_size=2_000_000, keepalive_time=0.5, keepalive_timeout=0.5)
    with pytest.raises(ConfigurationError):
        app.configure_grpc(compression="zstd")
    port = free_port()
    monkeypatch.setenv("CELLO_GRPC_PORT", str(port))
    async with AsyncTestClient(app):
        proxy, wire = await _proxy(port)
        address = f"127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
        async with proxy, grpc.aio.insecure_channel(address) as channel:
            greeter = greeter_pb2_grpc.GreeterStub(channel)
            answer = await greeter.SayHello(pb.HelloRequest(name="a" * 1_000_000), timeout=10)
            assert len(answer.message) == 1_000_000 and wire["down"] < 50_000  # gzip on the wire
            with pytest.raises(grpc.aio.AioRpcError) as too_large:
                await greeter.SayHello(pb.HelloRequest(name="a" * 2_500_000), timeout=10)
            assert too_large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # the client goes silent during a stream: its pings unanswered, the server drops the connection
            # within keepalive_time + keepalive_timeout, long before the stream's next message was due
            ticks = greeter.Countdown(pb.CountdownRequest(start=2, interval=8), timeout=20)
            assert (await ticks.read()).value == 2
            wire["deaf"] = 1
            started = asyncio.get_running_loop().time()
            with pytest.raises(grpc.aio.AioRpcError) as dropped:
                await ticks.read()
            assert dropped.value.code() == grpc.StatusCode.UNAVAILABLE
            assert asyncio.get_running_loop().time() - started < 6
