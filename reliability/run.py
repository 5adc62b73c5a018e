#!/usr/bin/env python3
"""The long runs of the reliability suite; the bounded runs are the pytest files beside this one.

Usage (from the repository root, with the project's venv):
    .venv/bin/python reliability/run.py fuzz --cases 1000000        # hostile requests through a live server
    .venv/bin/python reliability/run.py slow                        # slowloris: cut-offs, others' latency
    .venv/bin/python reliability/run.py soak --minutes 10           # realistic load on Redis: errors, RSS growth

Each run writes a Markdown report to reliability/results/ (<kind>-<UTC time>.md and <kind>-latest.md) and exits
non-zero when it found a defect. docs/reliability.md explains the method and quotes the latest figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import random
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BATCH = 400
sys.path.insert(0, str(HERE))

import httpx  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from cello.testing import LiveServer  # noqa: E402
from mutate import mutate  # noqa: E402
from serving import app_tracebacks, serve_target  # noqa: E402
from slow import latencies, percentiles, slow_clients  # noqa: E402
from soak import run_soak  # noqa: E402
from strategies import FuzzRequest, http_requests  # noqa: E402
from wire import exchange, judge  # noqa: E402


def write_report(kind: str, lines: list[str]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    header = [
        f"# Reliability: {kind} — {stamp}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}",
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    path = RESULTS / f"{kind}-{stamp}.md"
    path.write_text(text)
    (RESULTS / f"{kind}-latest.md").write_text(text)
    return path


# -- fuzz -------------------------------------------------------------------------------------------------------


def draw_seeds(
    count: int, server: LiveServer, kinds: Counter[str], defects: list[str], random_seed: int
) -> list[FuzzRequest]:
    """``count`` structured requests from hypothesis, each also sent and judged (reproducible by seed)."""
    seeds: list[FuzzRequest] = []

    @seed(random_seed)
    @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(http_requests())
    def collect(request: FuzzRequest) -> None:
        seeds.append(request)
        check(server, request, kinds, defects)

    collect()
    return seeds


def check(server: LiveServer, request: FuzzRequest, kinds: Counter[str], defects: list[str]) -> None:
    record(request, send(server, request), kinds, defects)


def send(server: LiveServer, request: FuzzRequest) -> tuple[str, str | None]:
    return judge(exchange(server.host, server.port, request.raw, method=request.method, complete=request.complete))


def record(request: FuzzRequest, verdict: tuple[str, str | None], kinds: Counter[str], defects: list[str]) -> None:
    kind, defect = verdict
    kinds[kind] += 1
    if defect is not None:
        kinds["defects"] += 1
        if len(defects) < 50:
            defects.append(f"{defect}\n    request: {request!r}")
            print(f"DEFECT {defects[-1]}", flush=True)  # a long run shows what it found as it goes


def fuzz(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    lines = [
        f"Command: `reliability/run.py fuzz --cases {args.cases} --seeds {args.seeds} --face {args.face} "
        f"--seed {args.seed} --connections {args.connections}`",
        "",
        "| Face | Cases | Seconds | Cases/s | Defects | Worker restarts | Answers by kind |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    failed = False
    all_defects: list[str] = []
    for face in args.face.split(","):
        kinds: Counter[str] = Counter()
        defects: list[str] = []
        started = time.monotonic()
        with serve_target(face=face, start=False) as server:
            pid = httpx.get(server.url + "/pid", timeout=5).json()["pid"]
            seeds = draw_seeds(args.seeds, server, kinds, defects, args.seed)
            restarts = 0
            # NOTE: a request whose framing lies waits a moment before the server is told it ended; several
            # connections at once keep those waits from setting the pace
            with ThreadPoolExecutor(args.connections) as pool:
                for done in range(len(seeds), args.cases, BATCH):
                    batch = [mutate(rng.choice(seeds), seeds, rng) for _ in range(min(BATCH, args.cases - done))]
                    for request, verdict in zip(batch, pool.map(functools.partial(send, server), batch), strict=True):
                        record(request, verdict, kinds, defects)
                    if (done // BATCH) % 50 == 0:
                        now = httpx.get(server.url + "/pid", timeout=5).json()["pid"]
                        restarts += now != pid
                        pid = now
                        rate = done / (time.monotonic() - started)
                        print(f"{face}: {done} cases, {rate:.0f}/s, {kinds['defects']} defects", flush=True)
            restarts += httpx.get(server.url + "/pid", timeout=5).json()["pid"] != pid
            tracebacks = len(app_tracebacks(server.output()))
        seconds = time.monotonic() - started
        total = sum(count for kind, count in kinds.items() if kind != "defects")
        by_kind = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()) if kind != "defects")
        lines.append(
            f"| {face} | {total:,} | {seconds:.0f} | {total / seconds:,.0f} | {kinds['defects']} | {restarts} | "
            f"{by_kind} |"
        )
        if tracebacks:
            defects.append(f"{tracebacks} tracebacks in the server's log")
        failed |= bool(defects) or restarts > 0
        all_defects += [f"[{face}] {d}" for d in defects]
    lines += ["", "Kinds: 2xx/3xx answered; app-4xx refused by Cello with problem+json; engine-4xx / engine-closed"]
    lines += ["refused by the engine before the app (unparsable HTTP); 5xx and hang would be defects.", ""]
    lines += ["## Defects", ""] + ([f"- {d}" for d in all_defects] or ["None."])
    path = write_report("fuzz", lines)
    print("\n".join(lines))
    print(f"report: {path}")
    return 1 if failed else 0


def slow(args: argparse.Namespace) -> int:
    lines = [
        f"Command: `reliability/run.py slow --connections {args.connections} --requests {args.requests}` "
        "(header timeout 2 s via cello run --header-timeout 2; App(body_timeout=2))",
        "",
        "| Face | Attack | Slow clients | Cut off after | Their answer | Others: failures | p50 | p99 |",
        "|---|---|--:|--:|---|--:|--:|--:|",
    ]
    passed = True
    for face, mode in (("granian", None), ("granian", "headers"), ("granian", "body"), ("uvicorn", None),
                       ("uvicorn", "body")):  # fmt: skip
        extra = ("--header-timeout", "2") if face == "granian" else ()
        env = {"RELIABILITY_BODY_TIMEOUT": "2"}
        with serve_target(face=face, env=env, extra_args=extra, start=False) as server:
            if mode is None:
                failures, times = latencies(server.url + "/", args.requests)
                cut, answers, opened = "-", "-", 0
            else:
                with slow_clients(server.host, server.port, args.connections, mode) as attack:
                    time.sleep(0.5)  # every slow client is connected and trickling
                    failures, times = latencies(server.url + "/", args.requests, seconds=3)  # the whole attack
                    deadline = time.monotonic() + 30
                    while len(attack.cut_after) < attack.opened and time.monotonic() < deadline:
                        time.sleep(0.2)
                opened = attack.opened
                cut = f"{min(attack.cut_after, default=0):.1f}-{max(attack.cut_after, default=0):.1f} s"
                answers = ", ".join(sorted({a.decode(errors="replace") or "closed" for a in attack.answers}))
                passed &= len(attack.cut_after) == attack.opened
        p50, p99 = percentiles(times)
        passed &= failures == 0
        lines.append(f"| {face} | {mode or 'none'} | {opened} | {cut} | {answers} | {failures} | {p50:.2f} ms | "
                     f"{p99:.2f} ms |")  # fmt: skip
    path = write_report("slow", lines)
    print("\n".join(lines))
    print(f"report: {path}")
    return 0 if passed else 1


def soak(args: argparse.Namespace) -> int:
    lines, passed = run_soak(args.minutes, args.rate, args.redis, args.database)
    path = write_report("soak", lines)
    print("\n".join(lines))
    print(f"report: {path}")
    return 0 if passed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fuzz_parser = commands.add_parser("fuzz", help="hostile requests through a live server")
    fuzz_parser.add_argument("--cases", type=int, default=1_000_000, help="requests per face")
    fuzz_parser.add_argument("--seeds", type=int, default=3000, help="structured requests drawn by hypothesis")
    fuzz_parser.add_argument("--face", default="granian", help="granian, uvicorn, hypercorn (comma-separated)")
    fuzz_parser.add_argument("--seed", type=int, default=1, help="the mutator's random seed")
    fuzz_parser.add_argument("--connections", type=int, default=16, help="requests in flight at once")
    fuzz_parser.set_defaults(func=fuzz)
    slow_parser = commands.add_parser("slow", help="slowloris: who is cut off, what everyone else sees")
    slow_parser.add_argument("--connections", type=int, default=500, help="slow clients at once")
    slow_parser.add_argument("--requests", type=int, default=2000, help="requests of the normal client")
    slow_parser.set_defaults(func=slow)
    soak_parser = commands.add_parser("soak", help="a realistic app on Redis under steady load: errors, RSS growth")
    soak_parser.add_argument("--minutes", type=float, default=10.0)
    soak_parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    soak_parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="the Redis the stores use")
    soak_parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL")
    soak_parser.set_defaults(func=soak)
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the server under test is stopped too, not left running
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
