#!/usr/bin/env python3
"""WebSocket benchmarks: echo round trips, memory of idle connections, and broadcast fan-out latency.

Usage:
    python benchmarks/ws.py                 # everything: about three minutes
    python benchmarks/ws.py --quick         # short smoke run

Same method as run.py: each server pinned to CPU 0 as one worker process, the load (benchmarks/ws_client.py,
the websockets library on uvloop) on CPU 1, every framework measured in the same run, results written to
benchmarks/results/ws-<timestamp>.md and .json and ws-latest.md. Measured:

- **echo**: round trips per second over 32 connections, each sending a short text and waiting for its echo;
  a bare RSGI echo on granian (the engine's ceiling), Cello on granian (RSGI), on uvicorn (ASGI) and on its own
  lean WebSocket server, FastAPI (uvicorn, websockets) and Robyn;
- **idle memory**: RSS of the server's processes before and after opening 10,000 idle connections (the bare
  RSGI echo too: what the engine alone keeps per connection);
- **fan-out**: 1,000 clients in one room; one of them sends 40 messages (50 ms apart), which the server
  broadcasts to all; latency from send to each receipt, p50 and p99.

The client is Python too, so at high rates the echo figure can be bounded by the client; the report gives the
client's CPU share so that is visible.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # the shared harness: venvs, pinned servers, readiness, stopping

run.VENVS["ws-client"] = run.VenvSpec(["websockets", "uvloop"], show=["websockets", "uvloop"])
CLIENT = run.BENCH_DIR / "ws_client.py"
IDLE_GOAL_MB = 150.0

TARGETS = {
    "granian-raw": run.Target(
        "granian-raw", "granian-raw", "granian (RSGI), no framework",
        lambda v, p: run.granian(v, "rsgi", "granian_raw_ws_app:app", p, websockets=True),
        [], main_package="granian"),
    "cello": run.Target(
        "cello", "cello", "granian (RSGI)",
        lambda v, p: run.granian(v, "rsgi", "cello_ws_app:app", p, websockets=True),
        [], main_package="cello"),
    "cello-uvicorn": run.Target(
        "cello-uvicorn", "cello", "uvicorn (uvloop, httptools, websockets), ASGI",
        lambda v, p: run.uvicorn(v, "cello_ws_app:app", p),
        [], main_package="cello"),
    "cello-ws": run.Target(
        "cello-ws", "cello", "Cello's lean WebSocket server (cello run --websocket-server)",
        lambda v, p: run.python(v, "-m", "cello", "run", "cello_ws_app:app", "--host", run.HOST, "--port", str(p),
                                "--websocket-server"),
        [], main_package="cello"),
    "fastapi": run.Target(
        "fastapi", "fastapi", "uvicorn (uvloop, httptools, websockets)",
        lambda v, p: run.uvicorn(v, "fastapi_ws_app:app", p),
        [], main_package="fastapi"),
    "robyn": run.Target(
        "robyn", "robyn", "Robyn server (1 process, 1 worker)",
        lambda v, p: run.python(v, str(run.APPS_DIR / "robyn_ws_app.py"), "--processes", "1", "--workers", "1",
                                "--log-level", "WARN", "--disable-openapi"),
        [], main_package="robyn"),
}  # fmt: skip


def rss_mb(pgid: int) -> float:
    total = 0
    for pid in run.group_members(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def client(mode: str, url: str, *options: str, timeout: float = 180) -> dict:
    python = str(run.VENVS_DIR / "ws-client" / "bin" / "python")
    argv = ["taskset", "-c", run.CLIENT_CPU, python, str(CLIENT), mode, url, *options]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"ws_client {mode} failed: {out.stderr.strip()[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def serve(name: str):  # type: ignore[no-untyped-def]
    target = TARGETS[name]
    venv = run.VENVS_DIR / target.venv
    port = run.free_port()
    log_path = run.LOG_DIR / f"ws-{name}.log"
    proc = run.start_server(target, venv, port, log_path)
    run.wait_ready(proc, port, log_path)
    return proc, port


def bench_echo(name: str, quick: bool) -> dict:
    proc, port = serve(name)
    try:
        seconds = "2" if quick else "5"
        rounds = []
        for _ in range(1 if quick else 3):
            ticks, started = run.group_ticks(proc.pid), time.monotonic()
            result = client("echo", f"ws://{run.HOST}:{port}/ws/echo", "--connections", "32", "--seconds", seconds)
            # the server's CPU over the whole client run (warm-up included): near 100% means the server, not the
            # client, set the pace; µs per round trip compares servers even when the client is the limit
            cpu = (run.group_ticks(proc.pid) - ticks) / run.CLK_TCK
            result["server_cpu"] = round(cpu / (time.monotonic() - started), 2)
            rounds.append(result)
        best = max(rounds, key=lambda r: r["per_second"])
        best["rounds"] = [round(r["per_second"]) for r in rounds]
        return best
    finally:
        run.stop_server(proc, port)


def bench_idle(name: str, quick: bool) -> dict:
    count = 1000 if quick else 10_000
    proc, port = serve(name)
    try:
        before = rss_mb(proc.pid)
        python = str(run.VENVS_DIR / "ws-client" / "bin" / "python")
        argv = ["taskset", "-c", run.CLIENT_CPU, python, str(CLIENT), "idle", f"ws://{run.HOST}:{port}/ws/echo",
                "--connections", str(count)]  # fmt: skip
        holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            ready = json.loads(holder.stdout.readline())
            time.sleep(2.0)  # let the server settle
            after = rss_mb(proc.pid)
        finally:
            if holder.stdin is not None:
                holder.stdin.close()
            holder.wait(timeout=60)
        return {"connections": ready["ready"], "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
                "per_connection_kb": round((after - before) * 1024 / max(1, ready["ready"]), 1),
                "open_seconds": ready["seconds"]}  # fmt: skip
    finally:
        run.stop_server(proc, port)


def bench_fanout(name: str, quick: bool) -> dict:
    proc, port = serve(name)
    try:
        clients = "200" if quick else "1000"
        return client("fanout", f"ws://{run.HOST}:{port}/ws/room", "--clients", clients, "--messages", "40")
    finally:
        run.stop_server(proc, port)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs, fewer connections: indicative only")
    ap.add_argument("--frameworks", default="granian-raw,cello,cello-uvicorn,cello-ws,fastapi,robyn")
    ap.add_argument("--working-tree", action="store_true", help="measure this checkout as it is, not HEAD")
    ap.add_argument("--parts", default="echo,idle,fanout", help="comma list of echo, idle, fanout")
    args = ap.parse_args()
    run.LOG_DIR.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.frameworks.split(",") if n in TARGETS]
    wanted = dict.fromkeys(["ws-client", *(TARGETS[name].venv for name in names)])
    statuses = {venv: run.ensure_venv(venv, False) for venv in wanted}
    venvs = {name: statuses[TARGETS[name].venv] for name in names}
    if statuses.get("cello", {}).get("ok") and any(TARGETS[name].venv == "cello" for name in names):
        problem = run.install_cello_source(args.working_tree)
        if problem:
            venvs.update({name: {"ok": False, "error": problem} for name in names if TARGETS[name].venv == "cello"})
        else:
            run.log(f"cello under test: {run.CELLO_SOURCE or 'the working tree'}")
    report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": args.quick,
                    "cello": run.CELLO_SOURCE or "working tree", "venvs": statuses, "echo": {}, "idle": {},
                    "fanout": {}}  # fmt: skip
    for name in names:
        if not venvs[name].get("ok"):
            continue
        for part, func in (("echo", bench_echo), ("idle", bench_idle), ("fanout", bench_fanout)):
            if part not in args.parts.split(","):
                continue
            if (name == "robyn" and part != "echo") or (name == "granian-raw" and part == "fanout"):
                continue
            run.log(f"ws {name}/{part}")
            try:
                report[part][name] = func(name, args.quick)
            except Exception as exc:  # one failure must not hide the other figures
                report[part][name] = {"error": run.first_line(f"{type(exc).__name__}: {exc}")}
            run.log(f"  {report[part][name]}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = render(report)
    (run.RESULTS_DIR / f"ws-{stamp}.json").write_text(json.dumps(report, indent=2))
    (run.RESULTS_DIR / f"ws-{stamp}.md").write_text(text)
    (run.RESULTS_DIR / "ws-latest.md").write_text(text)
    print(text)
    return 0


def render(report: dict) -> str:
    out = ["# WebSocket benchmarks", "", f"Run {report['started']}{' (quick)' if report['quick'] else ''} of cello "
           f"{report['cello']}; method in benchmarks/ws.py. Server on CPU 0 (one worker), clients on CPU 1.", ""]  # fmt: skip
    echo = report["echo"]
    base = echo.get("cello", {}).get("per_second")
    out += ["## Echo round trips (32 connections)", "", "Server CPU: the server's CPU time over the client's run, as "
            "a share of its core (the client works on the other core); µs/round trip: that CPU time per round "
            "trip, which compares servers even when the client sets the pace.", "",
            "| Target | Round trips/s | Rounds | Server CPU | Server µs/round trip | Cello ÷ |",
            "|---|--:|--:|--:|--:|--:|"]  # fmt: skip
    for name, row in echo.items():
        if "error" in row:
            out.append(f"| {name} | failed: {row['error'][:80]} | | | | |")
            continue
        ratio = f"{base / row['per_second']:.2f}" if base and name != "cello" else "-"
        cost = row["server_cpu"] * 1e6 / row["per_second"]
        out.append(f"| {name} | {row['per_second']:,.0f} | {' / '.join(map(str, row['rounds']))} | "
                   f"{row['server_cpu']:.0%} | {cost:.1f} | {ratio} |")  # fmt: skip
    out += ["", "## Idle connections", "", "| Target | Connections | RSS before | RSS after | per connection |",
            "|---|--:|--:|--:|--:|"]  # fmt: skip
    for name, row in report["idle"].items():
        if "error" in row:
            out.append(f"| {name} | failed: {row['error'][:80]} | | | |")
            continue
        out.append(f"| {name} | {row['connections']:,} | {row['rss_before_mb']} MB | {row['rss_after_mb']} MB | "
                   f"{row['per_connection_kb']} KB |")  # fmt: skip
    out += [
        "",
        "## Broadcast fan-out",
        "",
        "| Target | Clients | Delivered | p50 | p99 | max |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, row in report["fanout"].items():
        if "error" in row:
            out.append(f"| {name} | failed: {row['error'][:80]} | | | | |")
            continue
        out.append(f"| {name} | {row['clients']:,} | {row['delivered']:,} / {row['expected']:,} | {row['p50_ms']} ms "
                   f"| {row['p99_ms']} ms | {row['max_ms']} ms |")  # fmt: skip
    rows = []
    for name in ("cello", "cello-uvicorn", "cello-ws"):
        idle = report["idle"].get(name, {})
        if "rss_after_mb" in idle and not report["quick"]:
            met = idle["rss_after_mb"] < IDLE_GOAL_MB
            rows.append(f"| RSS of 10k idle WebSockets, one {name} worker | < {IDLE_GOAL_MB:.0f} MB | "
                        f"{idle['rss_after_mb']} MB | {'met' if met else '**missed**'} |")  # fmt: skip
    if rows:
        out += ["", "## Targets", "", "| Target | Goal | Measured | |", "|---|---|--:|---|", *rows]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
