"""The benchmark's Greeter (grpc_greeter.py) on a plain ``grpc.aio`` server: what grpcio alone does, the
baseline of Cello's native gRPC (benchmarks/grpc.py). Port from BENCH_PORT."""

from __future__ import annotations

import asyncio
import os

import greeter_pb2_grpc
import grpc
from grpc_greeter import Greeter


async def main() -> None:
    server = grpc.aio.server()
    greeter_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    server.add_insecure_port(f"{os.environ.get('BENCH_HOST', '127.0.0.1')}:{os.environ['BENCH_PORT']}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
