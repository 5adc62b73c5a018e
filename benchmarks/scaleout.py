#!/usr/bin/env python3
"""Scale-out benchmarks: what the load balancer and the shared state cost a host (the scale-out tests' cluster,
tests/live/_cluster.py: network namespaces, HAProxy, a Redis of their own; tests/apps/scaleout_app.py with two
workers per host).

Usage (as root, with iproute2, haproxy and redis-server; run with the project's own venv):
    .venv/bin/python benchmarks/scaleout.py            # 3 rounds of 5 s
    .venv/bin/python benchmarks/scaleout.py --quick    # 1 round of 2 s

Requests per second through the balancer with one, two or three hosts on this two-core machine would measure the
machine, not the design, so it reports per-host efficiency instead, the host pinned to CPU 0 and everything else
(balancer, Redis, wrk) to CPU 1 — sharing a core with the balancer, a host would look less efficient only because
it is less loaded:

- **efficiency**: one host's requests per CPU-second of its own processes, loaded through the balancer, against
  the same host loaded directly (``GET /plain``, wrk, 16 connections); goal >= 0.9;
- **shared state**: the median latency of ``GET /stateful`` (a rate-limit hit and a session read, both in Redis)
  less that of ``GET /plain``, with one connection straight to a host: what the shared state adds to a request.

Results: benchmarks/results/scaleout-<timestamp>.md and .json, and scaleout-latest.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "live"))

from _cluster import Cluster, unavailable

import run  # the shared harness: CPU accounting, reports

GOAL = 0.9


def pin(made: Cluster, name: str, cpus: str) -> None:
    """Move every process of ``name`` (and every thread) to ``cpus``."""
    for pid in run.group_members(made.processes[name].pid):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=False)


def wrk(url: str, seconds: float, connections: int) -> dict[str, float]:
    argv = [
        "taskset",
        "-c",
        run.CLIENT_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        url,
    ]
    text = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    median = re.search(r"^\s+50(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p50 = float(median.group(1)) * run.UNITS_US[median.group(2)] if median else 0.0
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_us": p50, "requests": requests}


def host_cpu_seconds(made: Cluster, host: str) -> float:
    return run.group_ticks(made.processes[host].pid) / run.CLK_TCK


def per_cpu_second(made: Cluster, url: str, seconds: float) -> float:
    """Requests the host answered per CPU-second of its own processes, under wrk at ``url``."""
    wrk(url, 1.0, 16)  # warm-up
    before = host_cpu_seconds(made, "h1")
    done = wrk(url, seconds, 16)
    used = host_cpu_seconds(made, "h1") - before
    return done["requests"] / used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 2.0, 1
    reason = unavailable()
    if reason:
        sys.exit(f"cannot make the hosts: {reason}")
    figures: dict[str, list[float]] = {"direct": [], "balanced": [], "efficiency": [], "plain_us": [],
                                       "stateful_us": [], "added_us": []}  # fmt: skip
    with Cluster(hosts=1) as made:
        redis_url = made.start_redis()
        env = {"REDIS_URL": redis_url, "TRUSTED_PROXIES": made.address("lb"), "RATE_LIMIT": "1000000000",
               "PROMETHEUS_MULTIPROC_DIR": str(made.folder / "metrics")}  # fmt: skip
        (made.folder / "metrics").mkdir()
        made.start_app("h1", "scaleout_app:app", env)
        balancer = made.start_balancer()
        # the host on a core of its own; the balancer, Redis and wrk on the other
        pin(made, "h1", run.SERVER_CPU)
        for other in ("lb", "redis"):
            pin(made, other, run.CLIENT_CPU)
        host = f"http://{made.address('h1')}:8000"
        for rnd in range(1, args.rounds + 1):
            direct = per_cpu_second(made, host + "/plain", args.duration)
            balanced = per_cpu_second(made, balancer + "/plain", args.duration)
            plain = wrk(host + "/plain", args.duration, 1)["p50_us"]
            stateful = wrk(host + "/stateful", args.duration, 1)["p50_us"]
            for name, value in (("direct", direct), ("balanced", balanced), ("efficiency", balanced / direct),
                                ("plain_us", plain), ("stateful_us", stateful), ("added_us", stateful - plain)):  # fmt: skip
                figures[name].append(value)
            run.log(f"round {rnd}: {direct:,.0f} req per CPU-second direct, {balanced:,.0f} through the balancer "
                    f"({balanced / direct:.2f}); p50 {plain:.0f} µs plain, {stateful:.0f} µs with Redis state")  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    report = {"timestamp": now.strftime("%Y-%m-%d %H:%M:%S UTC"), "settings": vars(args), "figures": figures,
              "medians": medians, "cello_source": run.source_revision()}  # fmt: skip
    met = "met" if medians["efficiency"] >= GOAL else "not met"
    text = "\n".join([
        f"# Scale-out benchmarks — {report['timestamp']}",
        "",
        f"Cello source: {report['cello_source']}. One host (two workers) in its own network namespace on CPU "
        f"{run.SERVER_CPU}; HAProxy and Redis in theirs and wrk in the root namespace, on CPU {run.CLIENT_CPU}; "
        f"{args.rounds} rounds of {args.duration:g} s, median. Method: benchmarks/scaleout.py.",
        "",
        "| Figure | Value |",
        "|---|--:|",
        f"| requests per host CPU-second, direct | {medians['direct']:,.0f} |",
        f"| requests per host CPU-second, through the balancer | {medians['balanced']:,.0f} |",
        f"| per-host efficiency (goal >= {GOAL}: {met}) | {medians['efficiency']:.2f} |",
        f"| p50 latency, no shared state (`/plain`, one connection) | {medians['plain_us']:.0f} µs |",
        f"| p50 latency, rate limit + session in Redis (`/stateful`) | {medians['stateful_us']:.0f} µs |",
        f"| added by the shared state | {medians['added_us']:.0f} µs |",
        "",
        f"Every round: {json.dumps({name: [round(v, 2) for v in values] for name, values in figures.items()})}",
    ])  # fmt: skip
    run.save_report("scaleout", report, text, now, latest=args.rounds >= 3)
    return 0


if __name__ == "__main__":
    run.script(main)
