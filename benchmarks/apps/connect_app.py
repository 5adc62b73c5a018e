"""The benchmark's Greeter on connect-python (connectrpc), the Connect protocol's own Python server, as an ASGI
app under uvicorn (benchmarks/grpc.py). greeter_gen is the package its code generator writes (google protobuf
messages), made by the benchmark."""

from __future__ import annotations

from typing import Any

from greeter_gen import greeter_connect
from greeter_gen.greeter_pb2 import HelloReply, HelloRequest


class Greeter(greeter_connect.Greeter):
    async def say_hello(self, request: HelloRequest, ctx: Any) -> HelloReply:
        return HelloReply(message=f"Hello, {request.name}!")


app = greeter_connect.GreeterASGIApplication(Greeter())
