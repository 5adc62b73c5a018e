"""Connect and gRPC-Web on the app's own port, with real JavaScript clients under Node: @connectrpc/connect-node
(Connect over HTTP/1.1 and HTTP/2, JSON and binary) and @connectrpc/connect-web's gRPC-Web transport (the
browsers' one); and native gRPC on the app's own port under hypercorn, which sends HTTP trailers, with a grpcio
client. The same servicer, the same API key and service guard as on the gRPC port (tests/apps/grpc_web_app.py):
refused and allowed through every protocol, rich error details, a masked INTERNAL, a deadline, and a stream the
client abandons being closed on the server."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")

from cello.testing import free_port  # noqa: E402

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
READER, WRITER = "reader-key-0123456789", "writer-key-0123456789"
# (transport, HTTP version, binary): every way the clients reach the main port
WAYS = [("connect", "1.1", False), ("connect", "1.1", True), ("connect", "2", True), ("grpc-web", "1.1", True),
        ("grpc-web", "1.1", False)]  # fmt: skip


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("grpc-web")
    shutil.copy(ROOT / "examples" / "grpc" / "greeter.proto", folder / "greeter.proto")
    done = subprocess.run([sys.executable, "-m", "cello", "grpc-compile", str(folder / "greeter.proto")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="module")
def served(live_module: Any, compiled: Path) -> tuple[Any, str]:
    port, grpc_port = free_port(), free_port()
    apps = ROOT / "tests" / "apps"
    server = live_module([sys.executable, str(apps / "grpc_web_app.py")], port=port, ready_path="/",
                         env={"PORT": str(port), "GRPC_PORT": str(grpc_port),
                              "PYTHONPATH": f"{compiled}:{apps}"}).start()  # fmt: skip
    return server, f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="module")
def descriptors(compiled: Path) -> str:
    """The greeter's file and google.rpc's error details, as a FileDescriptorSet the Node client reads."""
    from google.protobuf import descriptor_pb2
    from google.rpc import error_details_pb2

    sys.path.insert(0, str(compiled))
    try:
        import greeter_pb2
    finally:
        sys.path.remove(str(compiled))
    files = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file: Any) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        proto = files.file.add()
        file.CopyToProto(proto)
        named(proto.message_type)

    def named(messages: Any) -> None:
        # NOTE: _pb2 modules carry their descriptors without JSON names; the JavaScript client needs them
        for message in messages:
            for field in message.field:
                head, *rest = field.name.split("_")
                field.json_name = field.json_name or head + "".join(part.title() for part in rest)
            named(message.nested_type)

    add(greeter_pb2.DESCRIPTOR)
    add(error_details_pb2.DESCRIPTOR)
    return base64.b64encode(files.SerializeToString()).decode()


def node_calls(node_modules: Path, base_url: str, descriptors: str, way: tuple[str, str, bool],
               calls: list[dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    transport, version, binary = way
    spec = {"baseUrl": base_url, "descriptors": descriptors, "service": "greeter.v1.Greeter", "transport": transport,
            "httpVersion": version, "binary": binary, "calls": calls}  # fmt: skip
    done = subprocess.run(["node", str(node_modules.parent / "connect_client.mjs"), json.dumps(spec)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def keyed(key: str | None) -> dict[str, str]:
    return {"x-api-key": key} if key else {}


@pytest.mark.parametrize("way", WAYS, ids=["-".join(map(str, way)) for way in WAYS])
def test_every_client_gets_the_same_answers(
    served: tuple[Any, str], node_modules: Path, descriptors: str, way: tuple[str, str, bool]
) -> None:
    calls = [
        {"method": "sayHello", "request": {"name": "Ada"}, "headers": keyed(WRITER)},
        {"method": "sayHello", "request": {"name": "Ada"}, "headers": keyed(None)},
        {"method": "sayHello", "request": {"name": "Ada"}, "headers": keyed("not-a-key-at-all-000")},
        {"method": "sayHello", "request": {"name": "Ada"}, "headers": keyed(READER)},
        {"method": "sayHello", "request": {"name": ""}, "headers": keyed(WRITER)},
        {"method": "sayHello", "request": {"name": "boom"}, "headers": keyed(WRITER)},
        {"method": "countdown", "request": {"start": 3}, "headers": keyed(WRITER)},
        {"method": "countdown", "request": {"start": 3}, "headers": keyed(READER)},
        {"method": "countdown", "request": {"start": 50, "interval": 0.2}, "headers": keyed(WRITER), "timeoutMs": 500},
    ]
    if way[0] == "connect":  # NOTE: fetch, under the gRPC-Web transport, cannot stream a request at all
        calls.append({"method": "sum", "request": [{"value": 1}, {"value": 2}, {"value": 3}], "headers": keyed(WRITER)})
    answers = node_calls(node_modules, served[0].url, descriptors, way, calls)
    hello, anonymous, bad_key, reader, empty, boom, ticks, reader_ticks, late, *summed = answers
    assert hello == {"ok": {"message": "Hello, Ada, from ['greet:read', 'greet:write']!"}}
    assert anonymous["code"] == bad_key["code"] == "Unauthenticated"
    assert reader["code"] == reader_ticks["code"] == "PermissionDenied"
    assert empty["code"] == "InvalidArgument" and empty["message"] == "name is required"
    assert empty["details"] == [{"type": "google.rpc.BadRequest",
                                 "value": {"fieldViolations": [{"field": "name",
                                                                "description": "a name is required"}]}}]  # fmt: skip
    assert boom == {"code": "Internal", "message": "Internal server error.", "details": []}
    assert ticks == {"ok": [{"value": 3}, {"value": 2}, {"value": 1}]}
    assert late["code"] == "DeadlineExceeded"
    if summed:  # the requests read whole, then the method runs on them
        assert summed == [{"ok": {"total": "6", "count": 3}}]


def test_a_stream_the_client_leaves_is_closed_on_the_server(served: tuple[Any, str]) -> None:
    server, _ = served
    before = httpx.get(f"{server.url}/ended").json()["streams"]
    message = b'{"start": 1000, "interval": 0.05}'
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    headers = {"content-type": "application/connect+json", "x-api-key": WRITER}
    with httpx.stream("POST", f"{server.url}/greeter.v1.Greeter/Countdown", content=frame, headers=headers) as answer:
        assert answer.status_code == 200
        first = next(answer.iter_raw())
        assert first.startswith(b"\x00") and b'{"value":1000}' in first
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/ended").json()["streams"] == before:
        assert time.monotonic() < deadline, "the abandoned stream was not closed"
        time.sleep(0.05)


def test_native_grpc_beside_it_keeps_the_same_rules(served: tuple[Any, str], compiled: Path) -> None:
    sys.path.insert(0, str(compiled))
    try:
        import greeter_pb2 as pb
        import greeter_pb2_grpc
    finally:
        sys.path.remove(str(compiled))
    _, target = served
    deadline = time.monotonic() + 15
    while True:
        try:
            grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=1)
            break
        except grpc.FutureTimeoutError:
            assert time.monotonic() < deadline
    greeter = greeter_pb2_grpc.GreeterStub(grpc.insecure_channel(target))
    answer = greeter.SayHello(pb.HelloRequest(name="Ada"), metadata=(("x-api-key", WRITER),), timeout=5)
    assert answer.message == "Hello, Ada, from ['greet:read', 'greet:write']!"
    with pytest.raises(grpc.RpcError) as refused:
        greeter.SayHello(pb.HelloRequest(name="Ada"), metadata=(("x-api-key", READER),), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as empty:
        greeter.SayHello(pb.HelloRequest(name=""), metadata=(("x-api-key", WRITER),), timeout=5)
    from grpc_status import rpc_status

    status = rpc_status.from_call(empty.value)
    assert status is not None and status.details[0].type_url.endswith("google.rpc.BadRequest")


@pytest.fixture(scope="module")
def hypercorn_served(live_module: Any, compiled: Path) -> Any:
    pytest.importorskip("hypercorn")
    apps = ROOT / "tests" / "apps"
    return live_module("grpc_web_app:app", "hypercorn", env={"PYTHONPATH": f"{compiled}:{apps}"}).start()


def test_native_grpc_on_the_main_port_under_hypercorn(hypercorn_served: Any, compiled: Path) -> None:
    sys.path.insert(0, str(compiled))
    try:
        import greeter_pb2 as pb
        import greeter_pb2_grpc
    finally:
        sys.path.remove(str(compiled))
    from grpc_status import rpc_status

    greeter = greeter_pb2_grpc.GreeterStub(grpc.insecure_channel(f"127.0.0.1:{hypercorn_served.port}"))
    writer = (("x-api-key", WRITER),)
    hello = greeter.SayHello(pb.HelloRequest(name="Ada"), metadata=writer, timeout=5)
    assert hello.message == "Hello, Ada, from ['greet:read', 'greet:write']!"
    assert [tick.value for tick in greeter.Countdown(pb.CountdownRequest(start=3), metadata=writer, timeout=5)] == [
        3, 2, 1]  # fmt: skip
    total = greeter.Sum(iter([pb.Number(value=n) for n in range(1, 101)]), metadata=writer, timeout=5)
    assert (total.total, total.count) == (5050, 100)
    chat = greeter.Chat(iter([pb.Line(text="a"), pb.Line(text="b")]), metadata=writer, timeout=5)
    assert [line.text for line in chat] == ["A", "B"]
    for request, metadata, code in ((pb.HelloRequest(name="Ada"), (), grpc.StatusCode.UNAUTHENTICATED),
                                    (pb.HelloRequest(name="Ada"), (("x-api-key", READER),),
                                     grpc.StatusCode.PERMISSION_DENIED),
                                    (pb.HelloRequest(name="boom"), writer, grpc.StatusCode.INTERNAL),
                                    (pb.HelloRequest(name=""), writer, grpc.StatusCode.INVALID_ARGUMENT)):  # fmt: skip
        with pytest.raises(grpc.RpcError) as refused:
            greeter.SayHello(request, metadata=metadata, timeout=5)
        assert refused.value.code() == code
    assert refused.value.details() == "name is required"
    status = rpc_status.from_call(refused.value)
    assert status is not None and status.details[0].type_url.endswith("google.rpc.BadRequest")
    with pytest.raises(grpc.RpcError) as late:
        list(greeter.Countdown(pb.CountdownRequest(start=50, interval=0.2), metadata=writer, timeout=0.5))
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
