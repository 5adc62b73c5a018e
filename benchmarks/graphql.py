#!/usr/bin/env python3
"""GraphQL benchmarks: the same Strawberry schema (apps/graphql_schema.py) served by Cello, by FastAPI with
Strawberry's FastAPI integration (uvicorn), and by Litestar with Strawberry's Litestar integration (granian).

Usage:
    python benchmarks/graphql.py               # 3 rounds of 2 s warm-up + 5 s measured per shape
    python benchmarks/graphql.py --quick       # short smoke run

Same harness as run.py (venvs, wrk, servers pinned to CPU 0, wrk on CPU 1, rounds, medians). Operations are sent
as GET requests with the document in the query string (every integration answers queries over GET), shapes:

- **small**: ``{ hello }``, one field;
- **list**: ``{ items { id name price quantity available } }``, 100 objects of 5 fields;
- **db**: ``{ world { id randomNumber } }``, an async resolver reading one random row from PostgreSQL through an
  asyncpg pool of 32 (the database of benchmarks/db.py, created by db_setup.py; PostgreSQL moved to CPU 1).

Cello runs with its defaults (depth, alias, token and cost limits, caches, error masking) on granian's RSGI
interface, what ``cello run`` picks for a schema without subscriptions. The goal (issue: GraphQL) is Cello >= 1.5x
the best peer on **small**. ``--profile`` adds where Cello's request CPU goes: per shape, the Cello server under
wrk is sampled by py-spy (``--native``, so the engine's Rust frames count too) and each busy sample goes to the
package of its innermost frame that belongs to one — Strawberry, graphql-core, Cello, or the engine and its event
loop (granian); Cello's share is all that a faster Cello could take off a request. Results:
benchmarks/results/graphql-<timestamp>.md and .json, and graphql-latest.md.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime as dt
import json
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import db  # PostgreSQL pinning and the measuring rounds

import run  # the shared harness: venvs, pinned servers, wrk, rounds


def operation(document: str) -> str:
    return "/graphql?" + urllib.parse.urlencode({"query": document})


ITEM_FIELDS = "id name price quantity available"
run.SCENARIOS.update(
    {
        "small": run.Scenario(operation("{ hello }"), expect={"data": {"hello": "Hello, World!"}}),
        "list": run.Scenario(operation(f"{{ items {{ {ITEM_FIELDS} }} }}")),
        "db": run.Scenario(operation("{ world { id randomNumber } }")),
    }
)
SHAPES = ["small", "list", "db"]
TARGETS = [
    run.Target("cello", "cello", "granian CLI (RSGI)",
               lambda v, p: run.granian(v, "rsgi", "cello_graphql_app:app", p), SHAPES, main_package="cello"),
    run.Target("fastapi", "fastapi", "uvicorn (uvloop, httptools)",
               lambda v, p: run.uvicorn(v, "fastapi_graphql_app:app", p), SHAPES, main_package="fastapi"),
    run.Target("litestar", "litestar", "granian (ASGI)",
               lambda v, p: run.granian(v, "asgi", "litestar_graphql_app:app", p), SHAPES, main_package="litestar"),
]  # fmt: skip
PEERS = ["fastapi", "litestar"]
GOAL = 1.5

# --profile: py-spy samples per second and seconds sampled per shape; the innermost frame that names a package
# decides whose a sample is (py-spy writes paths relative to sys.path, native frames as the shared object's). A
# sample naming none is the event loop's own work, under granian's worker, so it counts as the engine's.
PROFILE_RATE, PROFILE_SECONDS = 100, 15
ENGINE = "engine and event loop"
OWNERS = {"cello": "Cello", "strawberry": "Strawberry", "graphql": "graphql-core", "granian": ENGINE}
# a sample whose innermost native function is one of these is a thread waiting (granian's Rust runtime threads
# parked, the event loop polling), not CPU spent
WAITS = {"pthread_cond_timedwait", "pthread_cond_wait", "syscall", "sched_yield", "epoll_wait", "epoll_pwait"}
FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^():]+)(?::\d+)?\)$")


def check_shape(name: str, port: int) -> str | None:
    """None when the answer is right, else what is wrong."""
    status, _, body, _ = run.http_request("GET", run.SCENARIOS[name].path, port)
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    value = json.loads(body)
    if name == "small" and value != {"data": {"hello": "Hello, World!"}}:
        return f"unexpected answer {value}"
    if name == "list":
        items = value.get("data", {}).get("items") or []
        if len(items) != 100 or set(items[0]) != set(ITEM_FIELDS.split()):
            return f"not 100 items of 5 fields: {body[:200]!r}"
    if name == "db":
        world = (value.get("data") or {}).get("world") or {}
        if set(world) != {"id", "randomNumber"} or not isinstance(world["randomNumber"], int):
            return f"not a world row: {body[:200]!r}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shapes", help=f"comma list (default all: {', '.join(SHAPES)}); a partial run does not "
                                     "replace graphql-latest.md")  # fmt: skip
    ap.add_argument("--working-tree", action="store_true", help="measure this checkout's src/ as it is")
    ap.add_argument("--profile", action="store_true", help="also sample the Cello server's CPU per shape (py-spy)")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = 2.0, 1.0, 1
    shapes = args.shapes.split(",") if args.shapes else SHAPES
    if not set(shapes) <= set(SHAPES):
        sys.exit(f"unknown shapes: {sorted(set(shapes) - set(SHAPES))}")
    run.NOISE_SHARE = 10.0  # PostgreSQL shares the client's core on purpose (as in db.py)
    venvs = run.prepare_venvs(("cello", "fastapi", "litestar"), args.working_tree)
    run.log("creating the benchmark data (PostgreSQL cello_bench)")
    subprocess.run([str(run.VENVS_DIR / "cello" / "bin" / "python"), "db_setup.py"], cwd=run.BENCH_DIR, check=True)
    rows = db.measure_rounds(TARGETS, shapes, args, check_shape, "graphql")
    profile = where_the_time_goes(shapes, args.warmup) if args.profile else None
    now = dt.datetime.now(dt.UTC)
    report = {
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": run.machine_info(venvs),
        "settings": {
            "duration": args.duration,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "connections": run.WRK_CONNECTIONS,
            "pool": 32,
        },
        "venvs": venvs,
        "cello_source": run.CELLO_SOURCE or run.source_revision(),
        "results": rows,
        "profile": profile,
    }
    run.save_report("graphql", report, render(report), now, latest=shapes == SHAPES and args.rounds >= 3)
    return 0


def where_the_time_goes(shapes: list[str], warmup: float) -> dict:
    """Per shape: the Cello server's busy CPU under wrk, as shares per owner (OWNERS), with the rate while sampled
    (lower than unsampled: py-spy stops the process to read each sample) and the server's CPU per request."""
    spy = run.VENVS_DIR / "cello" / "bin" / "py-spy"
    target = TARGETS[0]
    port = run.free_port()
    log_path = run.LOG_DIR / "server-graphql-profile.log"
    all_cpus = f"0-{(run.os.cpu_count() or 2) - 1}"
    profile = {}
    db.pin_postgres(run.CLIENT_CPU)
    proc = run.start_server(target, run.VENVS_DIR / target.venv, port, log_path)
    try:
        run.wait_ready(proc, port, log_path)
        worker = next(pid for pid in run.group_members(proc.pid) if pid != proc.pid)  # granian's one worker
        for shape in shapes:
            problem = check_shape(shape, port)
            if problem:
                sys.exit(f"profile: cello/{shape}: {problem}")
            run.run_wrk(shape, port, warmup)
            samples = run.LOG_DIR / f"graphql-profile-{shape}.txt"
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                load = pool.submit(run.run_wrk, shape, port, PROFILE_SECONDS + 3, proc.pid)
                time.sleep(1)
                sampled = subprocess.run([str(spy), "record", "--pid", str(worker), "--native", "--format", "raw",
                                          "--rate", str(PROFILE_RATE), "--duration", str(PROFILE_SECONDS),
                                          "--output", str(samples)], capture_output=True, text=True)  # fmt: skip
                res = load.result()
            if sampled.returncode != 0:  # py-spy needs ptrace rights over the server (root, or ptrace_scope 0)
                sys.exit(f"profile: py-spy failed ({sampled.returncode}): {sampled.stderr.strip()[-500:]}")
            shares, busy = owners_of(samples)
            profile[shape] = {"rps": res["rps"], "server_cpu": res["cpu"]["server"], "samples": busy,
                              "cpu_us_per_request": res["cpu"]["server"] / res["rps"] * 1e6, "shares": shares}  # fmt: skip
            run.log(f"profile cello/{shape}: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    finally:
        run.stop_server(proc, port)
        db.pin_postgres(all_cpus)
    return profile


def owners_of(samples: Path) -> tuple[dict[str, float], int]:
    """py-spy's raw output (``frame;frame;... count``, outermost first) as shares of the busy samples per owner."""
    counts: collections.Counter[str] = collections.Counter()
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [FRAME.match(frame) for frame in stack.split(";")]
        named = [frame["function"] for frame in frames if frame and not frame["function"].startswith("0x")]
        if named and named[-1] in WAITS:
            continue
        owner = ENGINE
        for frame in reversed(frames):
            package = frame["path"].split("/", 1)[0] if frame and "/" in frame["path"] else None
            if package in OWNERS:
                owner = OWNERS[package]
                break
        counts[owner] += int(count)
    busy = sum(counts.values())
    return {owner: counts[owner] / busy for owner in dict.fromkeys(OWNERS.values())}, busy


def render(report: dict) -> str:
    by = {(r["target"], r["scenario"]): r for r in report["results"]}
    lines = [
        f"# GraphQL benchmarks — {report['timestamp']}",
        "",
        f"Cello source: {report['cello_source']}. Machine: {report['machine'].get('cpu')}; server on CPU "
        f"{run.SERVER_CPU}, wrk ({run.WRK_CONNECTIONS} connections) and PostgreSQL on CPU {run.CLIENT_CPU}; "
        f"{report['settings']['rounds']} rounds of {report['settings']['duration']:g} s, median round; the same "
        "Strawberry schema everywhere, operations over GET. Method: benchmarks/graphql.py.",
        "",
        "| Shape | Cello req/s | FastAPI + Strawberry req/s | Litestar + Strawberry req/s | Cello / best peer "
        "| Cello p50 / p99 | Goal |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for shape in (shape for shape in SHAPES if any(key[1] == shape for key in by)):
        cello = by.get(("cello", shape), {})
        best = max(by.get((peer, shape), {}).get("rps") or 0 for peer in PEERS)
        ratio = (cello.get("rps") or 0) / best if best else 0
        cells = [f"{row.get('rps', 0):,.0f}" if row.get("status") == "ok" else "failed"
                 for row in (cello, by.get(("fastapi", shape), {}), by.get(("litestar", shape), {}))]  # fmt: skip
        latency = f"{run.fmt_lat(cello.get('p50_us'))} / {run.fmt_lat(cello.get('p99_us'))}"
        goal = (f">= {GOAL}x: " + ("met" if ratio >= GOAL else "not met")) if shape == "small" else "-"
        lines.append(f"| {shape} | {' | '.join(cells)} | {ratio:.2f}x | {latency} | {goal} |")
    lines += ["", "Server CPU (share of its core) and notes per run:", ""]
    for row in report["results"]:
        cpu = row.get("cpu", {}).get("server")
        lines.append(f"- {row['target']}/{row['scenario']}: " + (f"server {cpu:.0%}" if cpu is not None else "")
                     + (f"; {row.get('notes')}" if row.get("notes") else "") + (f"; {row['error']}" if row.get("error")
                                                                                 else ""))  # fmt: skip
    if report.get("profile"):
        owners = list(dict.fromkeys(OWNERS.values()))
        lines += ["", f"Where Cello's request CPU goes (py-spy --native, {PROFILE_RATE} Hz for {PROFILE_SECONDS} s per "
                  "shape under wrk; busy samples by the package of their innermost frame that names one):", "",
                  f"| Shape | req/s sampled | CPU µs per request | {' | '.join(owners)} |",
                  "|---|--:|--:|" + "--:|" * len(owners)]  # fmt: skip
        for shape, p in report["profile"].items():
            cells = " | ".join(f"{p['shares'][o]:.0%} ({p['shares'][o] * p['cpu_us_per_request']:,.0f} µs)"
                               for o in owners)  # fmt: skip
            lines.append(f"| {shape} | {p['rps']:,.0f} | {p['cpu_us_per_request']:,.0f} | {cells} |")
    versions = {name: v.get("packages") for name, v in report["venvs"].items()}
    lines += ["", f"Versions: {json.dumps(versions)}"]
    return "\n".join(lines)


if __name__ == "__main__":
    run.script(main)
