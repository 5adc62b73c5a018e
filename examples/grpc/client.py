"""Calls each method of examples/grpc/service.py with grpcio: python examples/grpc/client.py [host:port]."""

from __future__ import annotations

import asyncio
import sys

import greeter_pb2
import greeter_pb2_grpc
import grpc


async def main(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        greeter = greeter_pb2_grpc.GreeterStub(channel)
        print((await greeter.SayHello(greeter_pb2.HelloRequest(name="Ada"), timeout=5)).message)
        print([tick.value async for tick in greeter.Countdown(greeter_pb2.CountdownRequest(start=3))])
        numbers = (greeter_pb2.Number(value=n) for n in range(1, 11))
        total = await greeter.Sum(numbers)
        print(f"sum of {total.count} numbers: {total.total}")
        lines = (greeter_pb2.Line(text=text) for text in ("hello", "grpc"))
        print([line.text async for line in greeter.Chat(lines)])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
