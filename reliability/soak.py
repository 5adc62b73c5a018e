"""Soak: the target app on PostgreSQL (the database layer), its stores on Redis, the whole middleware stack, under
a steady, moderate load of mixed requests for minutes on end. Counts every answer that is not the expected one,
and samples the server's memory (RSS of all its processes) to see whether it keeps growing once warm.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from cello.testing import LiveServer
from serving import app_tracebacks, serve_target

# (method, path, JSON body, expected status): what a realistic client of the target app does
MIX = [
    ("GET", "/", None, 200),
    ("GET", "/items/7?q=cello&limit=5", None, 200),
    ("GET", "/users/ada/posts/3f2504e0-4f89-11d3-9a0c-0305e82c3301?tag=a&tag=b", None, 200),
    ("POST", "/people", {"name": "Ada", "age": 36, "tags": ["math"], "address": {"street": "1", "city": "L"}}, 201),
    ("PUT", "/people/9", {"name": "Grace", "age": 85}, 200),
    ("POST", "/echo", {"deep": {"list": [1, 2, 3], "text": "é"}}, 200),
    ("GET", "/headers", None, 200),
    ("POST", "/counter/visits", None, 200),
    ("GET", "/counter/visits", None, 200),
    ("GET", "/stream?chunks=5", None, 200),
    ("GET", "/events?count=3", None, 200),
    ("GET", "/items/abc", None, 404),  # a client mistake (no such item path), answered as one
    ("GET", "/users/1", None, 200),  # PostgreSQL, through the database layer
    ("GET", "/health/ready", None, 200),
]


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def rss_kib(server: LiveServer) -> int:
    """Resident memory of every process of the server, in KiB."""
    total = 0
    for pid in server.processes():
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


async def _one(client: httpx.AsyncClient, request: tuple[str, str, object, int], tally: Tally) -> None:
    method, path, body, expected = request
    started = time.perf_counter()
    try:
        response = await client.request(method, path, json=body)
        status = response.status_code
    except httpx.HTTPError as exc:
        tally.errors.append(f"{method} {path}: {type(exc).__name__}")
        tally.answers["exception"] += 1
        return
    tally.latencies.append(time.perf_counter() - started)
    tally.answers[str(status)] += 1
    if status != expected and len(tally.errors) < 50:
        tally.errors.append(f"{method} {path}: {status} (expected {expected}): {response.text[:200]}")
    elif status != expected:
        tally.errors.append("...")


async def _load(server: LiveServer, seconds: float, rate: float, samples: list[tuple[float, int]]) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as client:
        started = time.monotonic()
        next_sample = started
        pending: set[asyncio.Task[None]] = set()
        for index, request in enumerate(itertools.cycle(MIX)):
            at = started + index / rate
            now = time.monotonic()
            if now - started >= seconds:  # wall time: a client that falls behind its schedule still stops
                break
            if now >= next_sample:
                samples.append((now - started, rss_kib(server)))
                next_sample += 10
            if at > now:
                await asyncio.sleep(at - now)
            if len(pending) >= 256:  # the server fell far behind: wait rather than pile up
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.ensure_future(_one(client, request, tally))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    samples.append((time.monotonic() - started, rss_kib(server)))
    return tally


def run_soak(minutes: float, rate: float, redis_url: str, database_url: str) -> tuple[list[str], bool]:
    """Serve, load, and report: (Markdown lines, passed)."""
    env = {"RELIABILITY_REDIS_URL": redis_url, "RELIABILITY_PREFIX": f"soak-{uuid.uuid4().hex}:",
           "RELIABILITY_DATABASE_URL": database_url}  # fmt: skip
    samples: list[tuple[float, int]] = []
    with serve_target(face="granian", env=env, start=False) as server:
        tally = asyncio.run(_load(server, minutes * 60, rate, samples))
        tracebacks = len(app_tracebacks(server.output()))
    warm = [kib for at, kib in samples if at >= 60] or [kib for _, kib in samples]
    first, last = warm[0], warm[-1]
    growth = (last - first) / first * 100
    total = sum(tally.answers.values())
    elapsed = samples[-1][0] if samples else minutes * 60
    unexpected = len([e for e in tally.errors if e != "..."]) + tally.errors.count("...")
    ordered = sorted(tally.latencies)
    p50 = ordered[len(ordered) // 2] * 1000 if ordered else 0
    p99 = ordered[int(len(ordered) * 0.99)] * 1000 if ordered else 0
    passed = unexpected == 0 and tracebacks == 0 and growth < 5
    lines = [
        f"Command: `reliability/run.py soak --minutes {minutes:g} --rate {rate:g}` (PostgreSQL through the "
        "database layer: /users; Redis: stores, cache, rate limiter and /counter; middleware: request id, CORS, "
        "security headers, rate limit, cache, timeout, JWT)",
        "",
        "| Requests | Rate | Unexpected answers | p50 | p99 | RSS warm (1 min) | RSS end | Growth |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
        f"| {total:,} | {total / elapsed:,.0f}/s | {unexpected} | {p50:.2f} ms | {p99:.2f} ms | "
        f"{first / 1024:.1f} MiB | {last / 1024:.1f} MiB | {growth:+.2f}% |",
        "",
        "Answers: " + ", ".join(f"{status}: {count:,}" for status, count in sorted(tally.answers.items())),
        "",
        "RSS samples (s: MiB): " + ", ".join(f"{at:.0f}: {kib / 1024:.1f}" for at, kib in samples),
        "",
        "## Unexpected answers",
        "",
    ]
    lines += [f"- {error}" for error in tally.errors[:50]] or ["None."]
    if tracebacks:
        lines.append(f"- {tracebacks} tracebacks in the server's log")
    return lines, passed
