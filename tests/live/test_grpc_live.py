"""Native gRPC beside the HTTP app (examples/grpc/, compiled by ``cello grpc-compile``), with a real grpcio client
over a socket: the four call shapes (async and plain methods), INVALID_ARGUMENT and a masked INTERNAL, a deadline,
a cancelled stream, the health and reflection services, and SIGTERM letting a stream under way finish."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")

from cello.testing import free_port  # noqa: E402

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "grpc"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example in a folder of its own, its modules generated there by ``cello grpc-compile``."""
    folder = tmp_path_factory.mktemp("grpc")
    for name in ("greeter.proto", "service.py", "client.py"):
        shutil.copy(EXAMPLE / name, folder / name)
    done = subprocess.run([sys.executable, "-m", "cello", "grpc-compile", str(folder / "greeter.proto")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (folder / "greeter_pb2.py").exists() and (folder / "greeter_pb2_grpc.py").exists()
    sys.path.insert(0, str(folder))
    return folder


def start(live: Any, folder: Path) -> tuple[Any, str]:
    port, grpc_port = free_port(), free_port()
    server = live([sys.executable, str(folder / "service.py")], port=port, cwd=folder, ready_path="/",
                  env={"PORT": str(port), "GRPC_PORT": str(grpc_port)}).start()  # fmt: skip
    target = f"127.0.0.1:{grpc_port}"
    deadline = time.monotonic() + 15
    while True:  # the gRPC server starts with the worker, beside the HTTP one
        try:
            grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=1)
            break
        except grpc.FutureTimeoutError:
            if time.monotonic() > deadline:
                raise
    return server, target


@pytest.fixture(scope="module")
def served(live_module: Any, compiled: Path) -> tuple[Any, str]:
    return start(live_module, compiled)


def stub(target: str) -> Any:
    import greeter_pb2_grpc

    return greeter_pb2_grpc.GreeterStub(grpc.insecure_channel(target))


def test_the_four_call_shapes(served: tuple[Any, str]) -> None:
    import greeter_pb2 as pb

    greeter = stub(served[1])
    assert greeter.SayHello(pb.HelloRequest(name="Ada"), timeout=5).message == "Hello, Ada!"
    assert [tick.value for tick in greeter.Countdown(pb.CountdownRequest(start=3), timeout=5)] == [3, 2, 1]
    total = greeter.Sum(iter([pb.Number(value=n) for n in range(1, 101)]), timeout=5)  # a plain method
    assert (total.total, total.count) == (5050, 100)
    lines = [line.text for line in greeter.Chat(iter([pb.Line(text="a"), pb.Line(text="b")]), timeout=5)]
    assert lines == ["A", "B"]


def test_the_example_client_calls_every_way(served: tuple[Any, str], compiled: Path) -> None:
    server, target = served
    done = subprocess.run([sys.executable, str(compiled / "client.py"), target, server.url], cwd=compiled,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Hello, Ada!", "[3, 2, 1]", "sum of 10 numbers: 55", "['HELLO', 'GRPC']",
                                        "Hello, Connect!"]  # fmt: skip


def test_status_codes_and_masked_errors(served: tuple[Any, str]) -> None:
    import greeter_pb2 as pb

    greeter = stub(served[1])
    with pytest.raises(grpc.RpcError) as invalid:
        greeter.SayHello(pb.HelloRequest(name=""), timeout=5)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.value.details() == "name is required"
    with pytest.raises(grpc.RpcError) as failed:
        greeter.SayHello(pb.HelloRequest(name="boom"), timeout=5)
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert failed.value.details() == "Internal server error."  # the exception's text stays in the log
    assert "hunter2" in served[0].output()


def test_a_deadline_and_a_cancelled_stream(served: tuple[Any, str]) -> None:
    import greeter_pb2 as pb

    greeter = stub(served[1])
    with pytest.raises(grpc.RpcError) as late:
        list(greeter.Countdown(pb.CountdownRequest(start=5, interval=1.0), timeout=0.3))
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    call = greeter.Countdown(pb.CountdownRequest(start=100, interval=0.05), timeout=10)
    assert next(call).value == 100
    call.cancel()
    with pytest.raises(grpc.RpcError) as cancelled:
        list(call)
    assert cancelled.value.code() == grpc.StatusCode.CANCELLED
    assert greeter.SayHello(pb.HelloRequest(name="after"), timeout=5).message == "Hello, after!"


def test_health_and_reflection(served: tuple[Any, str]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = grpc.insecure_channel(served[1])
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "greeter.v1.Greeter"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {service.name for answer in answers for service in answer.list_services_response.service}
    assert {"greeter.v1.Greeter", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_sigterm_lets_a_stream_under_way_finish(live: Any, compiled: Path) -> None:
    import greeter_pb2 as pb

    server, target = start(live, compiled)
    call = stub(target).Countdown(pb.CountdownRequest(start=5, interval=0.2), timeout=20)
    assert next(call).value == 5
    os.kill(server.pid, signal.SIGTERM)
    assert [tick.value for tick in call] == [4, 3, 2, 1]  # drained, not cut


def test_a_message_that_does_not_decode_is_invalid_argument(served: tuple[Any, str]) -> None:
    channel = grpc.insecure_channel(served[1])
    garbage = b"\xff\xff\xff"  # not a protobuf message
    say_hello = channel.unary_unary("/greeter.v1.Greeter/SayHello")  # bytes in, bytes out
    summed = channel.stream_unary("/greeter.v1.Greeter/Sum")  # a plain method, in the server's pool
    countdown = channel.unary_stream("/greeter.v1.Greeter/Countdown")
    for call in (lambda: say_hello(garbage, timeout=5), lambda: summed(iter([garbage]), timeout=5),
                 lambda: list(countdown(garbage, timeout=5))):  # fmt: skip
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "does not decode" in refused.value.details()
