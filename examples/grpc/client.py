"""Calls examples/grpc/service.py each way it answers: every method with grpcio on its gRPC port, then SayHello
over Connect (plain HTTP and JSON) on its HTTP port.

    python examples/grpc/client.py [grpc host:port] [http base URL]
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request

import greeter_pb2
import greeter_pb2_grpc
import grpc


async def native(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        greeter = greeter_pb2_grpc.GreeterStub(channel)
        print((await greeter.SayHello(greeter_pb2.HelloRequest(name="Ada"), timeout=5)).message)
        print([tick.value async for tick in greeter.Countdown(greeter_pb2.CountdownRequest(start=3))])
        numbers = (greeter_pb2.Number(value=n) for n in range(1, 11))
        total = await greeter.Sum(numbers)
        print(f"sum of {total.count} numbers: {total.total}")
        lines = (greeter_pb2.Line(text=text) for text in ("hello", "grpc"))
        print([line.text async for line in greeter.Chat(lines)])


def connect(base_url: str) -> None:
    """A Connect unary call: a POST of the request as JSON, the reply as JSON (curl can do the same)."""
    request = urllib.request.Request(f"{base_url}/greeter.v1.Greeter/SayHello", data=b'{"name": "Connect"}',
                                     headers={"content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as answer:
        print(json.loads(answer.read())["message"])


if __name__ == "__main__":
    asyncio.run(native(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
    connect(sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8000")
