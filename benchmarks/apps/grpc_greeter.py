"""The servicer every native gRPC benchmark target serves (benchmarks/grpc.py): SayHello answers
``Hello, <name>!``. greeter_pb2 and greeter_pb2_grpc are compiled from examples/grpc/greeter.proto by the
benchmark into a folder on PYTHONPATH."""

from __future__ import annotations

from typing import Any

import greeter_pb2
import greeter_pb2_grpc


class Greeter(greeter_pb2_grpc.GreeterServicer):
    async def SayHello(self, request: Any, context: Any) -> Any:
        return greeter_pb2.HelloReply(message=f"Hello, {request.name}!")
