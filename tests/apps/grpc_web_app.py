"""The example's Greeter service behind an API key and a service guard, reached over Connect, gRPC-Web and (under
hypercorn) native gRPC on the app's port, and over native gRPC on its own (tests/live/test_grpc_web_live.py).
greeter_pb2 and greeter_pb2_grpc are compiled by the test (``cello grpc-compile``) into a folder on PYTHONPATH.

An empty name is refused with rich error details (a ``google.rpc.BadRequest``), ``boom`` raises (masked as
INTERNAL), and Countdown streams ticks ``interval`` seconds apart and counts the streams that ended."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import greeter_pb2 as pb
import greeter_pb2_grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from cello import App
from cello import grpc as cello_grpc
from cello.security import ApiKeyAuth, Permission

READER, WRITER = "reader-key-0123456789", "writer-key-0123456789"

app = App()
app.use(ApiKeyAuth(keys={READER: ["greet:read"], WRITER: ["greet:read", "greet:write"]}, exclude_paths=["/", "/ended"]))
ended = {"streams": 0}


class Greeter(greeter_pb2_grpc.GreeterServicer):
    async def SayHello(self, request: Any, context: Any) -> Any:
        if not request.name:
            violation = error_details_pb2.BadRequest.FieldViolation(field="name", description="a name is required")
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
            status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="name is required", details=[detail])
            await context.abort_with_status(rpc_status.to_status(status))
        if request.name == "boom":
            raise RuntimeError("the database password is hunter2")
        user = cello_grpc.current_user()
        return pb.HelloReply(message=f"Hello, {request.name}, from {sorted(user.permissions)}!")

    async def Countdown(self, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            for value in range(request.start, 0, -1):
                yield pb.Tick(value=value)
                await asyncio.sleep(request.interval)
        finally:
            ended["streams"] += 1

    def Sum(self, requests: Any, context: Any) -> Any:
        numbers = [number.value for number in requests]
        return pb.Total(total=sum(numbers), count=len(numbers))

    async def Chat(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for line in requests:
            yield pb.Line(text=line.text.upper())


app.grpc_service(Greeter(), guards=[Permission("greet:write")])


@app.get("/")
def index() -> dict[str, str]:
    return {"grpc": "greeter.v1.Greeter"}


@app.get("/ended")
def streams_ended() -> dict[str, int]:
    return ended


if __name__ == "__main__":
    app.run(port=int(os.environ["PORT"]), grpc_port=int(os.environ["GRPC_PORT"]))
