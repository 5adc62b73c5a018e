#!/usr/bin/env python3
"""Patterns benchmarks: the event store's appends on PostgreSQL against raw asyncpg and the ``eventsourcing``
library, projection catch-up, and saga steps.

Usage:
    python benchmarks/patterns.py            # 3 rounds, 5 s per append figure
    python benchmarks/patterns.py --quick    # 1 round of 2 s

- **appends**: events appended per second, 1 or 10 events per transaction, 1 or 8 concurrent writers (a stream
  each), by Cello's ``EventStore.append`` (expected-version checks, the commit-order lock, metadata, typed events)
  against the same statements written with asyncpg directly (goal: Cello >= 0.8x) and against the ``eventsourcing``
  library's PostgreSQL persistence on the same database (goal: Cello >= 3x; the library is synchronous, so its
  writers are threads); and the lock-free design beside it (no commit-order lock, rows tagged with their
  transaction's id for gap-aware readers), as raw asyncpg, to show what the lock costs;
- **catch-up**: events per second a ``Projector`` applies to a read model (one upsert each), from 20,000 stored;
- **sagas**: saga steps per second, 300 sagas of three steps started together.

The measuring process is pinned to CPU 0 and PostgreSQL to CPU 1 (moved back afterwards), as in db.py. The database
is ``cello_patterns_bench``, created and dropped by the run. Results: benchmarks/results/patterns-<timestamp>.md
and .json, and patterns-latest.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import db  # PostgreSQL pinning

import run  # the shared harness: venvs, rounds

DATABASE = "cello_patterns_bench"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
SHAPES = [(1, 1), (1, 10), (8, 1), (8, 10)]  # (writers, events per transaction)
GOALS = {"raw": 0.8, "eventsourcing": 3.0}

run.VENVS["eventsourcing"] = run.VenvSpec(["eventsourcing[postgres]"], show=["eventsourcing", "psycopg"])


def admin(statement: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", statement], check=True,
                   capture_output=True)  # fmt: skip


def measure(venv: str, script: str, *args: object) -> dict:
    argv = ["taskset", "-c", run.SERVER_CPU, str(run.VENVS_DIR / venv / "bin" / "python"),
            str(run.APPS_DIR / script), *map(str, args)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env={**run.os.environ,
                          "BENCH_DB_URL": URL}, cwd=run.APPS_DIR)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{script} {args} failed: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--working-tree", action="store_true", help="measure this checkout's src/ as it is")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 2.0, 1
    venvs = run.prepare_venvs(("cello", "eventsourcing"), args.working_tree)
    admin(f"DROP DATABASE IF EXISTS {DATABASE}")
    admin(f"CREATE DATABASE {DATABASE}")
    figures: dict[str, list[float]] = {}
    db.pin_postgres(run.CLIENT_CPU)
    try:
        for rnd in range(1, args.rounds + 1):
            run.log(f"round {rnd} of {args.rounds}")
            for writers, events in SHAPES:
                for name, venv, script, extra in (
                    ("cello", "cello", "patterns_bench.py", ["appends", "cello"]),
                    ("raw", "cello", "patterns_bench.py", ["appends", "raw"]),
                    ("lockfree", "cello", "patterns_bench.py", ["appends", "lockfree"]),
                    ("eventsourcing", "eventsourcing", "eventsourcing_bench.py", []),
                ):
                    found = measure(venv, script, *extra, writers, events, args.duration)["events_per_s"]
                    figures.setdefault(f"{name} {writers}x{events}", []).append(found)
                    run.log(f"{name}: {writers} writers x {events} events: {found:,.0f} events/s")
            figures.setdefault("catch-up", []).append(measure("cello", "patterns_bench.py", "catchup", 20_000)
                                                     ["events_per_s"])  # fmt: skip
            figures.setdefault("sagas", []).append(measure("cello", "patterns_bench.py", "sagas", 300)["steps_per_s"])
            run.log(f"catch-up {figures['catch-up'][-1]:,.0f} events/s, sagas {figures['sagas'][-1]:,.0f} steps/s")
    finally:
        db.pin_postgres(f"0-{(run.os.cpu_count() or 2) - 1}")
        admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    now = dt.datetime.now(dt.UTC)
    report = {
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": run.machine_info(venvs),
        "settings": {"duration": args.duration, "rounds": args.rounds},
        "venvs": venvs,
        "cello_source": run.CELLO_SOURCE or run.source_revision(),
        "figures": figures,
        "medians": {name: statistics.median(values) for name, values in figures.items()},
    }
    run.save_report("patterns", report, render(report), now, latest=args.rounds >= 3)
    return 0


def render(report: dict) -> str:
    medians = report["medians"]
    lines = [
        f"# Patterns benchmarks — {report['timestamp']}",
        "",
        f"Cello source: {report['cello_source']}. Machine: {report['machine'].get('cpu')}; the measuring process on "
        f"CPU {run.SERVER_CPU}, PostgreSQL on CPU {run.CLIENT_CPU}; {report['settings']['rounds']} rounds of "
        f"{report['settings']['duration']:g} s per append figure, median. Method: benchmarks/patterns.py.",
        "",
        "| Writers x events per transaction | Cello events/s | raw asyncpg | Cello / raw | eventsourcing "
        "| Cello / eventsourcing | lock-free raw | raw with the lock / lock-free |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for writers, events in SHAPES:
        shape = f"{writers}x{events}"
        cello, raw, library, free = (medians[f"{name} {shape}"] for name in ("cello", "raw", "eventsourcing",
                                                                              "lockfree"))  # fmt: skip
        lines.append(f"| {writers} x {events} | {cello:,.0f} | {raw:,.0f} | {cello / raw:.2f}x | {library:,.0f} "
                     f"| {cello / library:.2f}x | {free:,.0f} | {raw / free:.2f}x |")  # fmt: skip
    worst_raw = min(medians[f"cello {w}x{e}"] / medians[f"raw {w}x{e}"] for w, e in SHAPES)
    worst_library = min(medians[f"cello {w}x{e}"] / medians[f"eventsourcing {w}x{e}"] for w, e in SHAPES)
    lines += [
        "",
        f"Goals: Cello >= {GOALS['raw']}x raw asyncpg ({'met' if worst_raw >= GOALS['raw'] else 'not met'}: worst "
        f"{worst_raw:.2f}x); Cello >= {GOALS['eventsourcing']}x the eventsourcing library ("
        f"{'met' if worst_library >= GOALS['eventsourcing'] else 'not met'}: worst {worst_library:.2f}x).",
        "",
        "The lock-free column is the other design for a global order — no commit-order lock, rows tagged with "
        "their transaction's id for readers to stop before transactions in flight — as raw asyncpg: what the lock "
        "costs appends.",
        "",
        f"Projection catch-up: {medians['catch-up']:,.0f} events/s (one upsert each, batches of 500). Sagas: "
        f"{medians['sagas']:,.0f} steps/s (300 sagas of three steps, state saved after each).",
        "",
        f"Every round: {json.dumps({name: [round(v) for v in values] for name, values in report['figures'].items()})}",
        "",
        f"Versions: {json.dumps({name: v.get('packages') for name, v in report['venvs'].items()})}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run.script(main)
