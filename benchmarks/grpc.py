#!/usr/bin/env python3
"""gRPC benchmarks: one unary method (``SayHello``, examples/grpc/greeter.proto) served four ways, one core each.

Usage:
    python benchmarks/grpc.py               # 3 rounds of 2 s warm-up + 5 s measured per target
    python benchmarks/grpc.py --quick       # short smoke run

- **native gRPC**: Cello's gRPC port (``cello run --grpc-port``: grpc.aio inside the worker, with Cello's
  interceptors) against a plain ``grpc.aio`` server with the same servicer (apps/grpc_greeter.py) on the same
  grpcio. Load: h2load (nghttp2) over HTTP/2, 16 connections x 4 streams, each request the same enveloped
  ``HelloRequest``; h2load counts HTTP statuses only, so each server's answer is checked with a grpcio client
  first. Goal: Cello >= 0.9x.
- **Connect unary**: Cello's own HTTP port (granian RSGI, what ``cello run`` picks) against connect-python
  (connectrpc, with code from its generator on google protobuf) under uvicorn (uvloop, httptools). Load: wrk, 64
  connections, ``POST /greeter.v1.Greeter/SayHello`` with ``{"name":"World"}`` as ``application/json``.
  Goal: Cello >= 1.5x.

Same harness as run.py (venvs, servers pinned to CPU 0, the load generator on CPU 1, rounds, medians). Needs wrk
and h2load (Debian: ``wrk``, ``nghttp2-client``). Results: benchmarks/results/grpc-<timestamp>.md and .json, and
grpc-latest.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # the shared harness: venvs, pinned servers, wrk, rounds

GENERATED = run.VENVS_DIR / "grpc-generated"  # the protoc output of both code generators
PROTO = run.REPO_ROOT / "examples" / "grpc" / "greeter.proto"
METHOD = "/greeter.v1.Greeter/SayHello"
H2LOAD_CLIENTS, H2LOAD_STREAMS = 16, 4
GOALS = {"native": 0.9, "connect": 1.5}

run.SCENARIOS["connect"] = run.Scenario(METHOD, method="POST", expect={"message": "Hello, World!"},
                                        lua="connect.lua", body=b'{"name":"World"}',
                                        headers={"Connect-Protocol-Version": "1"})  # fmt: skip


def with_path(*folders: Path) -> list[str]:
    return ["env", "PYTHONPATH=" + ":".join(str(folder) for folder in folders)]


def cello_grpc(venv: Path, port: int) -> list[str]:
    # the measured port is the gRPC one; the HTTP port beside it is another free one
    return [*with_path(GENERATED / "cello", run.APPS_DIR), str(venv / "bin" / "cello"), "run", "cello_grpc_app:app",
            "--host", run.HOST, "--port", str(run.free_port()), "--grpc-port", str(port), "--workers", "1"]  # fmt: skip


TARGETS = {
    "cello-grpc": run.Target("cello-grpc", "cello", "cello run (grpc.aio in the worker)", cello_grpc, ["native"],
                             main_package="cello"),
    "grpc-aio": run.Target("grpc-aio", "cello", "grpc.aio server",
                           lambda v, p: [*with_path(GENERATED / "cello", run.APPS_DIR),
                                         *run.python(v, str(run.APPS_DIR / "grpc_aio_app.py"))], ["native"],
                           main_package="grpcio"),
    "cello-connect": run.Target("cello-connect", "cello", "granian CLI (RSGI)",
                                lambda v, p: [*with_path(GENERATED / "cello"),
                                              *run.granian(v, "rsgi", "cello_grpc_app:app", p)], ["connect"],
                                main_package="cello"),
    "connect-python": run.Target("connect-python", "connect", "uvicorn (uvloop, httptools)",
                                 lambda v, p: [*with_path(GENERATED / "connect", run.APPS_DIR),
                                               *run.uvicorn(v, "connect_app:app", p)], ["connect"],
                                 main_package="connectrpc"),
}  # fmt: skip
PAIRS = [("native", "cello-grpc", "grpc-aio"), ("connect", "cello-connect", "connect-python")]


def generate() -> None:
    """greeter_pb2 / greeter_pb2_grpc for the cello venv (``cello grpc-compile``), and the connect-python package
    greeter_gen (google protobuf messages and the Connect service) for the connect venv."""
    shutil.rmtree(GENERATED, ignore_errors=True)
    (GENERATED / "cello").mkdir(parents=True)
    package = GENERATED / "connect" / "greeter_gen"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    cello = run.VENVS_DIR / "cello" / "bin"
    subprocess.run([str(cello / "cello"), "grpc-compile", str(PROTO), "--out", str(GENERATED / "cello")], check=True)
    connect = run.VENVS_DIR / "connect" / "bin"
    subprocess.run([str(connect / "python"), "-m", "grpc_tools.protoc", f"-I{PROTO.parent}", f"--python_out={package}",
                    f"--plugin=protoc-gen-connectrpc={connect / 'protoc-gen-connectrpc'}",
                    f"--connectrpc_out={package}", "--connectrpc_opt=protobuf=google", str(PROTO)],
                   check=True)  # fmt: skip
    # the request h2load sends: an enveloped HelloRequest(name="World")
    message = b"\x0a\x05World"
    (GENERATED / "hello.bin").write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)


def wait_grpc(proc: subprocess.Popen, port: int, log_path: Path) -> str | None:
    """None once the server answers SayHello rightly over native gRPC (checked from the cello venv), else why."""
    check = ("import sys, grpc, greeter_pb2 as pb, greeter_pb2_grpc as g\n"
             "stub = g.GreeterStub(grpc.insecure_channel(sys.argv[1]))\n"
             "print(stub.SayHello(pb.HelloRequest(name='World'), timeout=2, wait_for_ready=True).message)\n")  # fmt: skip
    deadline = time.monotonic() + run.START_TIMEOUT
    problem = "never answered"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"server exited with code {proc.returncode}:\n{run.tail(log_path)}"
        done = subprocess.run([str(run.VENVS_DIR / "cello" / "bin" / "python"), "-c", check, f"{run.HOST}:{port}"],
                              capture_output=True, text=True, cwd=GENERATED / "cello", timeout=30)  # fmt: skip
        if done.returncode == 0:
            return None if done.stdout.strip() == "Hello, World!" else f"unexpected answer {done.stdout!r}"
        problem = done.stderr.strip()[-300:]
        time.sleep(0.2)
    return problem


def run_h2load(port: int, seconds: float, warmup: float, pgid: int) -> dict:
    argv = ["taskset", "-c", run.CLIENT_CPU, "h2load", "-D", str(max(1, round(seconds))),
            "--warm-up-time", str(max(1, round(warmup))), "-c", str(H2LOAD_CLIENTS), "-m", str(H2LOAD_STREAMS),
            "-t", "1", "-d", str(GENERATED / "hello.bin"), "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"http://{run.HOST}:{port}{METHOD}"]  # fmt: skip
    before = (time.monotonic(), run.group_ticks(pgid))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + warmup + 60)
    after = (time.monotonic(), run.group_ticks(pgid))
    text = out.stdout + out.stderr
    found = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", text)
    statuses = re.search(r"status codes: (\d+) 2xx", text)
    if out.returncode != 0 or not found or not counts:
        raise RuntimeError(f"h2load failed ({out.returncode}): {text.strip()[-300:]}")
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    failed = int(counts.group(4))
    ok = int(statuses.group(1)) if statuses else 0
    notes = [f"{failed} failed"] if failed else []
    if ok < int(counts.group(3)):
        notes.append(f"only {ok}/{counts.group(3)} were 2xx")
    wall = after[0] - before[0]
    return {"rps": float(found.group(1)), "mean_us": float(mean.group(1)) * run.UNITS_US[mean.group(2)] if mean else None,
            "p50_us": None, "p99_us": None, "requests": int(counts.group(1)),
            "cpu": {"server": round((after[1] - before[1]) / run.CLK_TCK / wall, 3)}, "notes": "; ".join(notes)}  # fmt: skip


def measure_target(target: run.Target, rnd: int, args: argparse.Namespace) -> dict:
    scenario = target.scenarios[0]
    row: dict = {"target": target.name, "scenario": scenario, "round": rnd, "status": "failed"}
    port = run.free_port()
    log_path = run.LOG_DIR / f"server-grpc-{target.name}.log"
    proc = run.start_server(target, run.VENVS_DIR / target.venv, port, log_path)
    try:
        if scenario == "native":
            problem = wait_grpc(proc, port, log_path)
            if problem:
                row["error"] = problem
                return row
            row.update(run_h2load(port, args.duration, args.warmup, proc.pid), status="ok")
        else:
            run.wait_ready(proc, port, log_path)  # any HTTP answer: connect-python answers GET / with a 404
            problem = run.check_response(scenario, port)
            if problem:
                row["error"] = problem
                return row
            row.update(run.measure(scenario, port, args, proc.pid), status="ok")
        run.log(f"{target.name}: {row['rps']:.0f} RPCs/s, server {row['cpu']['server']:.0%} {row.get('notes', '')}")
        return row
    finally:
        run.stop_server(proc, port)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--working-tree", action="store_true", help="measure this checkout's src/ as it is")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = 2.0, 1.0, 1
    for program in ("wrk", "h2load", "taskset"):
        if shutil.which(program) is None:
            sys.exit(f"{program} is needed (Debian: wrk, nghttp2-client, util-linux)")
    venvs = run.prepare_venvs(("cello", "connect"), args.working_tree)
    generate()
    rows = []
    for rnd in range(1, args.rounds + 1):
        run.log(f"round {rnd} of {args.rounds}")
        for target in TARGETS.values():
            rows.append(measure_target(target, rnd, args))
    now = dt.datetime.now(dt.UTC)
    report = {
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": run.machine_info(venvs),
        "settings": {
            "duration": args.duration,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "wrk_connections": run.WRK_CONNECTIONS,
            "h2load": [H2LOAD_CLIENTS, H2LOAD_STREAMS],
        },
        "venvs": venvs,
        "cello_source": run.CELLO_SOURCE or run.source_revision(),
        "results": run.combine_rounds(rows),
    }
    run.save_report("grpc", report, render(report), now, latest=args.rounds >= 3)
    return 0


def render(report: dict) -> str:
    by = {row["target"]: row for row in report["results"]}
    lines = [
        f"# gRPC benchmarks — {report['timestamp']}",
        "",
        f"Cello source: {report['cello_source']}. Machine: {report['machine'].get('cpu')}; server on CPU "
        f"{run.SERVER_CPU}, the load generator on CPU {run.CLIENT_CPU}; {report['settings']['rounds']} rounds of "
        f"{report['settings']['duration']:g} s, median round; one unary method (SayHello), the same servicer for "
        "both native servers. Method: benchmarks/grpc.py.",
        "",
        "| Protocol | Cello RPCs/s | Baseline | Baseline RPCs/s | Cello / baseline | Goal |",
        "|---|--:|---|--:|--:|---|",
    ]
    labels = {"native": f"native gRPC (h2load, HTTP/2, {H2LOAD_CLIENTS}x{H2LOAD_STREAMS} streams)",
              "connect": f"Connect unary JSON (wrk, HTTP/1.1, {run.WRK_CONNECTIONS} connections)"}  # fmt: skip
    for kind, ours, theirs in PAIRS:
        cello, other = by.get(ours, {}), by.get(theirs, {})
        ratio = (cello.get("rps") or 0) / other["rps"] if other.get("rps") else 0
        cells = [f"{row['rps']:,.0f}" if row.get("status") == "ok" else "failed" for row in (cello, other)]
        goal = GOALS[kind]
        met = "met" if ratio >= goal else "not met"
        lines.append(f"| {labels[kind]} | {cells[0]} | {theirs} | {cells[1]} | {ratio:.2f}x | >= {goal}x: {met} |")
    lines += ["", "Server CPU (share of its core) and notes per target:", ""]
    for row in report["results"]:
        cpu = (row.get("cpu") or {}).get("server")
        lines.append(f"- {row['target']}: " + (f"server {cpu:.0%}" if cpu is not None else "")
                     + (f"; {row['notes']}" if row.get("notes") else "")
                     + (f"; {row['error']}" if row.get("error") else ""))  # fmt: skip
    versions = {name: v.get("packages") for name, v in report["venvs"].items()}
    lines += ["", f"Versions: {json.dumps(versions)}"]
    return "\n".join(lines)


if __name__ == "__main__":
    run.script(main)
