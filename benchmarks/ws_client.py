"""The load side of benchmarks/ws.py: WebSocket clients (the websockets library on uvloop) in one process.

    ws_client.py echo URL --connections 32 --seconds 5 --warmup 1   -> {"round_trips": ..., "per_second": ...}
    ws_client.py idle URL --connections 10000                       -> prints "ready N", holds until stdin closes
    ws_client.py fanout URL --clients 1000 --messages 40            -> {"p50_ms": ..., "p99_ms": ..., ...}

Messages are small text frames; permessage-deflate is off (not every server offers it, and it would measure
zlib). Every result is one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time

import websockets


def connect(url: str):  # type: ignore[no-untyped-def]
    return websockets.connect(url, compression=None, max_size=None, open_timeout=30, ping_interval=None)


async def echo(url: str, connections: int, seconds: float, warmup: float) -> dict:
    counted = 0
    counting = False
    stop = False

    async def one() -> None:
        nonlocal counted
        async with connect(url) as ws:
            while not stop:
                await ws.send("hello")
                await ws.recv()
                if counting:
                    counted += 1

    tasks = [asyncio.ensure_future(one()) for _ in range(connections)]
    await asyncio.sleep(warmup)
    counting = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    counting = False
    elapsed = time.perf_counter() - started
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"round_trips": counted, "per_second": counted / elapsed, "connections": connections}


async def open_many(url: str, count: int) -> list:
    sockets: list = []
    batch = 200
    for start in range(0, count, batch):
        sockets += await asyncio.gather(*(connect(url).__aenter__() for _ in range(min(batch, count - start))))
    return sockets


async def idle(url: str, connections: int) -> None:
    started = time.perf_counter()
    sockets = await open_many(url, connections)
    print(json.dumps({"ready": len(sockets), "seconds": round(time.perf_counter() - started, 2)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the driver closes stdin
    for ws in sockets:
        ws.transport.abort()


async def fanout(url: str, clients: int, messages: int, interval: float) -> dict:
    sockets = await open_many(url, clients)
    latencies: list[float] = []
    expected = messages * (clients - 1)

    async def listen(ws) -> None:  # type: ignore[no-untyped-def]
        async for message in ws:
            latencies.append(time.perf_counter() - float(message))

    publisher, receivers = sockets[0], sockets[1:]
    listeners = [asyncio.ensure_future(listen(ws)) for ws in receivers]
    drain = asyncio.ensure_future(_discard(publisher))
    await asyncio.sleep(0.5)
    for _ in range(messages):
        await publisher.send(repr(time.perf_counter()))
        await asyncio.sleep(interval)
    deadline = time.perf_counter() + 10
    while len(latencies) < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    for task in [*listeners, drain]:
        task.cancel()
    for ws in sockets:
        ws.transport.abort()
    ordered = sorted(latencies)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "clients": clients,
        "messages": messages,
        "delivered": len(latencies),
        "expected": expected,
        "p50_ms": round(at(0.50), 3),
        "p99_ms": round(at(0.99), 3),
        "max_ms": round(max(ordered) * 1000, 3) if ordered else None,
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3) if ordered else None,
    }


async def _discard(ws) -> None:  # type: ignore[no-untyped-def]
    async for _ in ws:
        pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["echo", "idle", "fanout"])
    ap.add_argument("url")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=40)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.mode == "echo":
        print(json.dumps(asyncio.run(echo(args.url, args.connections, args.seconds, args.warmup))))
    elif args.mode == "idle":
        asyncio.run(idle(args.url, args.connections))
    else:
        print(json.dumps(asyncio.run(fanout(args.url, args.clients, args.messages, args.interval))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
