"""The Greeter service (greeter.proto) on Cello: native gRPC on its own port, and the same methods over Connect
and gRPC-Web on the HTTP app's port.

    cello grpc-compile examples/grpc/greeter.proto     # writes greeter_pb2.py and greeter_pb2_grpc.py beside it
    python examples/grpc/service.py                     # HTTP (and Connect, gRPC-Web) on 8000, gRPC on 50051
    python examples/grpc/client.py                      # calls each method over gRPC, then SayHello over Connect
    curl localhost:8000/greeter.v1.Greeter/SayHello -H 'content-type: application/json' -d '{"name": "Ada"}'

PORT and GRPC_PORT choose the ports.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import greeter_pb2
import greeter_pb2_grpc
import grpc

from cello import App

app = App()
app.enable_health_checks()


class Greeter(greeter_pb2_grpc.GreeterServicer):
    async def SayHello(
        self, request: greeter_pb2.HelloRequest, context: grpc.aio.ServicerContext
    ) -> greeter_pb2.HelloReply:
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is required")
        if request.name == "boom":
            raise RuntimeError("the database password is hunter2")  # answered as INTERNAL, never shown
        return greeter_pb2.HelloReply(message=f"Hello, {request.name}!")

    async def Countdown(
        self, request: greeter_pb2.CountdownRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[greeter_pb2.Tick]:
        for value in range(request.start, 0, -1):
            yield greeter_pb2.Tick(value=value)
            await asyncio.sleep(request.interval)

    def Sum(self, requests, context):  # a plain method: it runs in a thread of the server pool
        total = count = 0
        for number in requests:
            total += number.value
            count += 1
        return greeter_pb2.Total(total=total, count=count)

    async def Chat(
        self, requests: AsyncIterator[greeter_pb2.Line], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[greeter_pb2.Line]:
        async for line in requests:
            yield greeter_pb2.Line(text=line.text.upper())


app.grpc_service(Greeter())


@app.get("/")
def index() -> dict[str, str]:
    return {"grpc": "greeter.v1.Greeter"}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8000")), grpc_port=int(os.environ.get("GRPC_PORT", "50051")))
