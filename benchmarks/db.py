#!/usr/bin/env python3
"""Database benchmarks: TechEmpower's shapes on the real PostgreSQL, and a cached query on Redis.

Usage:
    python benchmarks/db.py                 # 3 rounds of 2 s warm-up + 5 s measured per shape
    python benchmarks/db.py --quick         # short smoke run

Same harness as run.py (venvs, wrk, servers pinned to CPU 0, rounds, medians), with these shapes:

- **db**: one random ``world`` row by id, as JSON;
- **queries**: 20 such rows, one query each, pipelined on one connection (every framework the same way);
- **fortunes**: every ``fortune`` row plus one added at request time, sorted, rendered by a Jinja2 template
  (HTML-escaped);
- **updates**: 20 random rows read one query each (pipelined), given new random numbers, written back in one
  batch;
- **cached**: 20 random rows from Redis (cached as JSON), one round trip.

Cello (its own data layer: ``cello.enterprise.Database`` and ``Redis`` on granian), FastAPI (asyncpg and redis-py
with hiredis directly, orjson responses, uvicorn) and BlackSheep (the same, granian) are measured in the same
run, each with a pool of 32 connections. PostgreSQL is the machine's own server (``BENCH_DB_URL``; the data goes into
a database ``cello_bench``, created by benchmarks/db_setup.py); for the run its processes are moved to CPU 1,
with wrk, so that the server's core holds the framework alone, and moved back afterwards. Because the database
shares wrk's core by design, the harness's check for other load on the client core is off here.
Results: benchmarks/results/db-<timestamp>.md and .json, and db-latest.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # the shared harness: venvs, pinned servers, wrk, rounds

run.SCENARIOS.update(
    {
        "db": run.Scenario("/db"),
        "queries": run.Scenario("/queries?queries=20"),
        "fortunes": run.Scenario("/fortunes"),
        "updates": run.Scenario("/updates?queries=20"),
        "cached": run.Scenario("/cached-queries?count=20"),
    }
)
SHAPES = ["db", "queries", "fortunes", "updates", "cached"]
TARGETS = [
    run.Target("cello", "cello", "granian CLI (RSGI)",
               lambda v, p: run.granian(v, "rsgi", "cello_db_app:app", p), SHAPES, main_package="cello"),
    run.Target("fastapi", "fastapi", "uvicorn (uvloop, httptools)",
               lambda v, p: run.uvicorn(v, "fastapi_db_app:app", p), SHAPES, main_package="fastapi"),
    run.Target("blacksheep", "blacksheep", "granian (ASGI)",
               lambda v, p: run.granian(v, "asgi", "blacksheep_db_app:app", p), SHAPES, main_package="blacksheep"),
]  # fmt: skip
PEERS = ["fastapi", "blacksheep"]
GOAL = 1.3


def check_shape(name: str, port: int) -> str | None:
    """None when the answer has the shape TechEmpower asks for, else what is wrong."""
    sc = run.SCENARIOS[name]
    status, _, body, _ = run.http_request("GET", sc.path, port)
    if status != 200:
        return f"status {status}"
    if name == "fortunes":
        text = body.decode()
        if "Additional fortune added at request time." not in text or "&lt;script&gt;alert(" not in text:
            return f"fortunes page lacks the added or the escaped fortune: {text[:120]!r}"
        return None
    value = json.loads(body)
    rows = [value] if name == "db" else value
    if name != "db" and len(rows) != 20:
        return f"{len(rows)} rows, expected 20"
    if not all(set(row) == {"id", "randomNumber"} and isinstance(row["randomNumber"], int) for row in rows):
        return f"rows are not {{id, randomNumber}}: {body[:120]!r}"
    return None


def postgres_pids() -> list[str]:
    out = subprocess.run(["ps", "-C", "postgres", "-o", "pid="], capture_output=True, text=True, check=False)
    return out.stdout.split()


def pin_postgres(cpus: str) -> None:
    # NOTE: backends forked later inherit the postmaster's affinity, so one pass covers the whole run
    for pid in postgres_pids():
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, pid], capture_output=True, check=False)


def measure_rounds(targets: list, shapes: list[str], args, check, label: str) -> list[dict]:
    """Every target's shapes, ``args.rounds`` times, with PostgreSQL on the client's core: each server started,
    its answers checked with ``check(shape, port)`` (None, or what is wrong), then measured; rounds combined."""
    rows: list[dict] = []
    all_cpus = f"0-{(run.os.cpu_count() or 2) - 1}"
    pin_postgres(run.CLIENT_CPU)
    try:
        for rnd in range(args.rounds):
            run.log(f"round {rnd + 1} of {args.rounds}")
            for target in targets:
                port = run.free_port()
                log_path = run.LOG_DIR / f"server-{label}-{target.name}.log"
                proc = run.start_server(target, run.VENVS_DIR / target.venv, port, log_path)
                try:
                    run.wait_ready(proc, port, log_path)
                    for name in (name for name in target.scenarios if name in shapes):
                        row = {"target": target.name, "scenario": name, "round": rnd + 1, "status": "failed"}
                        rows.append(row)
                        problem = check(name, port)
                        if problem:
                            row["error"] = problem
                            run.log(f"{target.name}/{name}: {problem}")
                            continue
                        row.update(run.measure(name, port, args, proc.pid), status="ok")
                        run.log(f"{target.name}/{name}: {row['rps']:.0f} req/s, p50 {run.fmt_lat(row['p50_us'])}, "
                                f"p99 {run.fmt_lat(row['p99_us'])}, server {row['cpu']['server']:.0%}")  # fmt: skip
                finally:
                    run.stop_server(proc, port)
    finally:
        pin_postgres(all_cpus)
    return run.combine_rounds(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--shapes",
        help=f"comma list of shapes to measure (default all: {', '.join(SHAPES)}); a partial "
        "run does not replace db-latest.md",
    )
    ap.add_argument("--working-tree", action="store_true", help="measure this checkout's src/ as it is")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = 2.0, 1.0, 1
    shapes = args.shapes.split(",") if args.shapes else SHAPES
    if not set(shapes) <= set(SHAPES):
        sys.exit(f"unknown shapes: {sorted(set(shapes) - set(SHAPES))}")
    run.NOISE_SHARE = 10.0  # the database shares the client's core on purpose (see the module docstring)
    venvs = run.prepare_venvs(("cello", "fastapi", "blacksheep"), args.working_tree)
    run.log("creating the benchmark data (PostgreSQL cello_bench, Redis)")
    subprocess.run([str(run.VENVS_DIR / "cello" / "bin" / "python"), "db_setup.py"], cwd=run.BENCH_DIR, check=True)
    rows = measure_rounds(TARGETS, shapes, args, check_shape, "db")
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
    }
    run.save_report("db", report, render(report), now, latest=shapes == SHAPES)
    return 0


def render(report: dict) -> str:
    by = {(r["target"], r["scenario"]): r for r in report["results"]}
    lines = [
        f"# Database benchmarks — {report['timestamp']}",
        "",
        f"Cello source: {report['cello_source']}. Machine: {report['machine'].get('cpu')}; server on CPU "
        f"{run.SERVER_CPU}, wrk ({run.WRK_CONNECTIONS} connections) and PostgreSQL on CPU {run.CLIENT_CPU}; "
        f"{report['settings']['rounds']} rounds of {report['settings']['duration']:g} s, median round; pool of 32 "
        "connections per framework. Method: benchmarks/db.py.",
        "",
        "| Shape | Cello req/s | FastAPI req/s | BlackSheep req/s | Cello / best peer | Cello p50 / p99 | Goal |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for shape in (shape for shape in SHAPES if any(key[1] == shape for key in by)):  # the shapes measured
        cello = by.get(("cello", shape), {})
        peers = [by.get((peer, shape), {}).get("rps") or 0 for peer in PEERS]
        best = max(peers)
        ratio = (cello.get("rps") or 0) / best if best else 0
        cells = [f"{row.get('rps', 0):,.0f}" if row.get("status") == "ok" else "failed"
                 for row in (cello, by.get(("fastapi", shape), {}), by.get(("blacksheep", shape), {}))]  # fmt: skip
        latency = f"{run.fmt_lat(cello.get('p50_us'))} / {run.fmt_lat(cello.get('p99_us'))}"
        goal = "met" if ratio >= GOAL else "not met"
        lines.append(f"| {shape} | {' | '.join(cells)} | {ratio:.2f}x | {latency} | >= {GOAL}x: {goal} |")
    lines += ["", "Server CPU (share of its core) and notes per run:", ""]
    for row in report["results"]:
        cpu = row.get("cpu", {}).get("server")
        lines.append(f"- {row['target']}/{row['scenario']}: " + (f"server {cpu:.0%}" if cpu is not None else "")
                     + (f"; {row.get('notes')}" if row.get("notes") else "") + (f"; {row['error']}" if row.get("error")
                                                                                 else ""))  # fmt: skip
    versions = {name: v.get("packages") for name, v in report["venvs"].items()}
    lines += ["", f"Versions: {json.dumps(versions)}"]
    return "\n".join(lines)


if __name__ == "__main__":
    run.script(main)
