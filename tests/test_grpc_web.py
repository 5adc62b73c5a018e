"""Connect and gRPC-Web on the app's port (cello.grpc.web), in process: the wire details of each protocol — content
types, envelopes, errors and their HTTP statuses, trailers, compression, timeouts — plain methods run in the pool,
and what is refused. Real JavaScript clients cover the same routes over sockets in test_grpc_web_live.py."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")

import grpc

from cello import App
from cello.testing import TestClient

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "grpc"
HELLO = "/greeter.v1.Greeter/SayHello"
COUNTDOWN = "/greeter.v1.Greeter/Countdown"


def envelope(data: bytes, flags: int = 0) -> bytes:
    return bytes((flags,)) + len(data).to_bytes(4, "big") + data


def frames(body: bytes) -> list[tuple[int, bytes]]:
    found = []
    while body:
        size = int.from_bytes(body[1:5], "big")
        found.append((body[0], body[5 : 5 + size]))
        body = body[5 + size :]
    return found


@pytest.fixture(scope="module")
def client(greeter: tuple[Any, Any]) -> Iterator[TestClient]:
    messages, stubs = greeter

    class Greeter(stubs.GreeterServicer):
        async def SayHello(self, request: Any, context: Any) -> Any:
            if request.name == "teapot":
                context.set_trailing_metadata([("x-brewed", "no"), ("x-raw-bin", b"\x00\x01")])
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "100% not a teapot ☕")
            if request.name == "boom":
                raise RuntimeError("the database password is hunter2")
            await context.send_initial_metadata([("x-greeted", request.name)])
            context.set_trailing_metadata([("x-count", "1")])
            return messages.HelloReply(message=f"Hello, {request.name}!")

        def Countdown(self, request: Any, context: Any) -> Iterator[Any]:  # a plain generator: run in the pool
            for value in range(request.start, 0, -1):
                yield messages.Tick(value=value)
            if request.start == 2:
                context.set_code(grpc.StatusCode.OUT_OF_RANGE)
                context.set_details("two is too few")

    app = App()
    app.grpc_service(Greeter())
    with TestClient(app) as test_client:
        yield test_client


def test_connect_unary_json_and_binary(client: TestClient, greeter: tuple[Any, Any]) -> None:
    messages, _ = greeter
    answer = client.post(HELLO, content=b'{"name": "Ada"}', headers={"content-type": "application/json"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {"message": "Hello, Ada!"}
    # the method's initial metadata as headers, its trailing metadata as trailer- headers
    assert answer.headers["x-greeted"] == "Ada" and answer.headers["trailer-x-count"] == "1"
    binary = client.post(HELLO, content=messages.HelloRequest(name="Bo").SerializeToString(),
                         headers={"content-type": "application/proto"})  # fmt: skip
    assert messages.HelloReply.FromString(binary.content).message == "Hello, Bo!"


def test_connect_errors_carry_their_code_status_and_trailers(client: TestClient) -> None:
    teapot = client.post(HELLO, content=b'{"name": "teapot"}', headers={"content-type": "application/json"})
    assert teapot.status_code == 400 and teapot.headers["content-type"] == "application/json"
    assert teapot.json() == {"code": "failed_precondition", "message": "100% not a teapot ☕"}
    assert teapot.headers["trailer-x-brewed"] == "no" and teapot.headers["trailer-x-raw-bin"] == "AAE="
    boom = client.post(HELLO, content=b'{"name": "boom"}', headers={"content-type": "application/json"})
    assert (boom.status_code, boom.json()) == (500, {"code": "internal", "message": "Internal server error."})
    for body in (b"{not json", b'{"name": 5}', b'{"name": "\xff"}'):
        bad = client.post(HELLO, content=body, headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_argument"
    # a client-streaming method stays on native gRPC
    summed = client.post("/greeter.v1.Greeter/Sum", content=b"{}", headers={"content-type": "application/json"})
    assert (summed.status_code, summed.json()["code"]) == (501, "unimplemented")


def test_an_unknown_content_type_is_415_with_the_types_taken(client: TestClient) -> None:
    for headers in ({"content-type": "text/plain"}, {}):
        answer = client.post(HELLO, content=b"name=Ada", headers=headers)
        assert answer.status_code == 415
        assert answer.headers["content-type"] == "application/problem+json"
        assert "Accept-Post" in answer.json()["detail"]
        assert "application/connect+proto" in answer.headers["accept-post"]


def test_connect_streaming_envelopes_and_end_of_stream(client: TestClient) -> None:
    answer = client.post(COUNTDOWN, content=envelope(b'{"start": 3}'),
                         headers={"content-type": "application/connect+json"})  # fmt: skip
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/connect+json"
    found = frames(answer.content)
    assert found[:-1] == [(0, b'{"value":3}'), (0, b'{"value":2}'), (0, b'{"value":1}')]
    assert found[-1] == (2, b"{}")
    # the code the plain generator set after its replies closes the stream
    failed = frames(client.post(COUNTDOWN, content=envelope(b'{"start": 2}'),
                                headers={"content-type": "application/connect+json"}).content)  # fmt: skip
    assert len(failed) == 3 and orjson.loads(failed[-1][1]) == {
        "error": {"code": "out_of_range", "message": "two is too few"}}  # fmt: skip
    # not one envelope: refused in the stream's own terms
    broken = client.post(
        COUNTDOWN, content=b"\x00\x00\x00\x00\x09{}", headers={"content-type": "application/connect+json"}
    )
    assert broken.status_code == 200
    assert orjson.loads(frames(broken.content)[-1][1])["error"]["code"] == "invalid_argument"


def test_grpc_web_frames_and_trailers(client: TestClient, greeter: tuple[Any, Any]) -> None:
    messages, _ = greeter
    request = envelope(messages.CountdownRequest(start=2).SerializeToString())
    answer = client.post(COUNTDOWN, content=request, headers={"content-type": "application/grpc-web+proto"})
    assert answer.headers["content-type"] == "application/grpc-web+proto"
    found = frames(answer.content)
    assert [messages.Tick.FromString(data).value for flags, data in found[:-1]] == [2, 1]
    assert found[-1] == (0x80, b"grpc-status:11\r\ngrpc-message:two is too few\r\n")
    # an error before any reply: trailers-only, the status in the headers too, the message percent-encoded
    teapot = client.post(HELLO, content=envelope(b'{"name":"teapot"}'),
                         headers={"content-type": "application/grpc-web+json"})  # fmt: skip
    assert teapot.status_code == 200
    assert teapot.headers["grpc-status"] == "9" and teapot.headers["grpc-message"] == "100%25 not a teapot %E2%98%95"
    assert frames(teapot.content)[-1][0] == 0x80
    assert b"x-raw-bin:AAE=" in frames(teapot.content)[-1][1]


def test_compressed_requests_and_timeouts(client: TestClient, greeter: tuple[Any, Any]) -> None:
    messages, _ = greeter
    squeezed = client.post(HELLO, content=gzip.compress(b'{"name": "Zip"}'),
                           headers={"content-type": "application/json", "content-encoding": "gzip"})  # fmt: skip
    assert squeezed.json() == {"message": "Hello, Zip!"}
    framed = envelope(gzip.compress(messages.HelloRequest(name="Web").SerializeToString()), flags=1)
    web = client.post(HELLO, content=framed, headers={"content-type": "application/grpc-web", "grpc-encoding": "gzip"})
    assert messages.HelloReply.FromString(frames(web.content)[0][1]).message == "Hello, Web!"
    unknown = client.post(HELLO, content=b"{}", headers={"content-type": "application/json", "content-encoding": "br"})
    assert (unknown.status_code, unknown.json()["code"]) == (501, "unimplemented")
    for name, value in (("connect-timeout-ms", "soon"), ("connect-timeout-ms", "-5")):
        bad = client.post(HELLO, content=b"{}", headers={"content-type": "application/json", name: value})
        assert bad.json()["code"] == "invalid_argument"
    bad_web = client.post(HELLO, content=envelope(b""), headers={"content-type": "application/grpc-web",
                                                                 "grpc-timeout": "5x"})  # fmt: skip
    assert bad_web.headers["grpc-status"] == "3"


def test_web_false_keeps_a_service_off_the_http_port(greeter: tuple[Any, Any]) -> None:
    _, stubs = greeter

    class Greeter(stubs.GreeterServicer):
        pass

    app = App()
    app.grpc_service(Greeter(), web=False)
    with TestClient(app) as client:
        assert client.post(HELLO, content=b"{}", headers={"content-type": "application/json"}).status_code == 404


async def test_web_calls_are_counted_with_native_ones(greeter: tuple[Any, Any]) -> None:
    pytest.importorskip("prometheus_client")
    from cello.testing import AsyncTestClient

    messages, stubs = greeter

    class Counted(stubs.GreeterServicer):
        async def SayHello(self, request: Any, context: Any) -> Any:
            if not request.name:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a name, please")
            return messages.HelloReply(message="hi")

        async def Countdown(self, request: Any, context: Any) -> AsyncIterator[Any]:
            yield messages.Tick(value=1)

    from prometheus_client import REGISTRY

    calls = (("OK", "SayHello"), ("INVALID_ARGUMENT", "SayHello"), ("OK", "Countdown"))

    def counted() -> list[float]:
        labels = [{"service": "greeter.v1.Greeter", "method": method, "code": code} for code, method in calls]
        return [REGISTRY.get_sample_value("cello_grpc_calls_total", each) or 0.0 for each in labels]

    app = App()
    app.enable_prometheus()
    app.grpc_service(Counted())
    before = counted()
    async with AsyncTestClient(app) as client:
        json_headers = {"content-type": "application/json"}
        await client.post("/greeter.v1.Greeter/SayHello", content=b'{"name": "a"}', headers=json_headers)
        await client.post("/greeter.v1.Greeter/SayHello", content=b"{}", headers=json_headers)
        await client.post(COUNTDOWN, content=envelope(b"{}"), headers={"content-type": "application/connect+json"})
        assert "cello_grpc_calls_total" in (await client.get("/metrics")).text
    assert [after - earlier for after, earlier in zip(counted(), before, strict=True)] == [1.0, 1.0, 1.0]


def test_a_services_middleware_answers_in_the_calls_protocol(greeter: tuple[Any, Any]) -> None:
    from cello.middleware import CircuitBreaker, RateLimit

    messages, stubs = greeter

    class Fragile(stubs.GreeterServicer):
        async def SayHello(self, request: Any, context: Any) -> Any:
            if request.name == "boom":
                raise RuntimeError("down")
            return messages.HelloReply(message="hi")

    app = App()
    breaker = CircuitBreaker("web-greeter", failure_threshold=2, reset_timeout=60)
    app.grpc_service(Fragile(), middleware=[RateLimit(requests=4, window=60, key="ip"), breaker])
    json_headers = {"content-type": "application/json"}
    with TestClient(app) as client:
        assert client.post(HELLO, content=b'{"name": "a"}', headers=json_headers).status_code == 200
        for _ in range(2):
            assert client.post(HELLO, content=b'{"name": "boom"}', headers=json_headers).json()["code"] == "internal"
        opened = client.post(HELLO, content=b'{"name": "a"}', headers=json_headers)
        assert (opened.status_code, opened.json()["code"]) == (503, "unavailable")
        assert int(opened.headers["trailer-retry-after"]) > 0
        limited = client.post(
            HELLO, content=envelope(b'{"name": "a"}'), headers={"content-type": "application/grpc-web+json"}
        )
        assert limited.headers["grpc-status"] == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        assert limited.headers["grpc-message"] == "Too many requests; slow down."


def test_client_streaming_reads_every_message_of_the_body(greeter: tuple[Any, Any]) -> None:
    messages, stubs = greeter

    class Adder(stubs.GreeterServicer):
        async def Sum(self, requests: Any, context: Any) -> Any:
            numbers = [number.value async for number in requests]
            return messages.Total(total=sum(numbers), count=len(numbers))

        def Chat(self, requests: Any, context: Any) -> Iterator[Any]:  # plain: a plain iterator of requests
            for line in requests:
                yield messages.Line(text=line.text.upper())

    app = App()
    app.grpc_service(Adder())
    with TestClient(app) as client:
        body = b"".join(envelope(b'{"value": %d}' % n) for n in (1, 2, 3))
        summed = client.post(
            "/greeter.v1.Greeter/Sum", content=body, headers={"content-type": "application/connect+json"}
        )
        assert frames(summed.content) == [(0, b'{"total":"6","count":3}'), (2, b"{}")]
        lines = b"".join(envelope(messages.Line(text=text).SerializeToString()) for text in ("a", "b"))
        chat = client.post("/greeter.v1.Greeter/Chat", content=lines, headers={"content-type": "application/grpc-web"})
        assert [messages.Line.FromString(data).text for flags, data in frames(chat.content)[:-1]] == ["A", "B"]
        # one message, no more, for a method that takes one
        two = client.post(HELLO, content=envelope(b"{}") * 2, headers={"content-type": "application/connect+json"})
        assert orjson.loads(frames(two.content)[-1][1])["error"]["code"] == "invalid_argument"


def test_native_grpc_without_trailers_is_told_where_to_go(client: TestClient) -> None:
    """The test client, like granian, sends no HTTP trailers: a native gRPC call gets its status in the headers."""
    answer = client.post(HELLO, content=envelope(b""), headers={"content-type": "application/grpc"})
    assert answer.status_code == 200 and answer.headers["grpc-status"] == "12"  # UNIMPLEMENTED
    assert "grpc_port" in answer.headers["grpc-message"]


async def test_one_jwt_and_role_guard_for_routes_and_every_protocol(
    greeter: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's JwtAuth and an RBAC guard: a bearer token in a request's headers, in a call's metadata."""
    from cello.middleware import JwtAuth, JwtConfig
    from cello.security import Role
    from cello.testing import AsyncTestClient, free_port

    messages, stubs = greeter

    class Greeter(stubs.GreeterServicer):
        async def SayHello(self, request: Any, context: Any) -> Any:
            return messages.HelloReply(message=f"Hello, {request.name}!")

    config = JwtConfig(secret=b"grpc-test-secret-that-is-long-enough!")
    app = App()
    app.use(JwtAuth(config))
    app.grpc_service(Greeter(), guards=[Role("admin")])

    @app.get("/me")
    def me(request: Any) -> dict[str, Any]:
        return {"sub": request.context["jwt_claims"]["sub"]}

    admin = config.create_token({"sub": "ada", "roles": ["admin"]})
    viewer = config.create_token({"sub": "bo", "roles": ["viewer"]})
    port = free_port()
    monkeypatch.setenv("CELLO_GRPC_PORT", str(port))
    async with AsyncTestClient(app) as client:
        assert (await client.get("/me", headers={"authorization": f"Bearer {viewer}"})).json() == {"sub": "bo"}
        for token, status in ((admin, 200), (viewer, 403), (None, 401)):
            headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
            answer = await client.post(HELLO, content=b'{"name": "Ada"}', headers=headers)
            assert answer.status_code == status
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = stubs.GreeterStub(channel)
            hello = await stub.SayHello(
                messages.HelloRequest(name="Ada"), metadata=(("authorization", f"Bearer {admin}"),)
            )
            assert hello.message == "Hello, Ada!"
            for metadata, code in (((("authorization", f"Bearer {viewer}"),), grpc.StatusCode.PERMISSION_DENIED),
                                   ((), grpc.StatusCode.UNAUTHENTICATED)):  # fmt: skip
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.SayHello(messages.HelloRequest(name="Ada"), metadata=metadata, timeout=5)
                assert refused.value.code() == code
