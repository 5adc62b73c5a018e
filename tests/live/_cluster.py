"""Several hosts on one machine, for the scale-out tests: network namespaces joined by veth pairs to a bridge, one
per app host, one for Redis and one for the load balancer (HAProxy, from Debian's package), on a /24 of their own.
The test process reaches the balancer through the bridge, where the harness gives it an address too.

Needs root, iproute2 and haproxy: without them the tests skip with the reason (and fail with
CELLO_REQUIRE_SERVICES=1). Everything the harness makes — namespaces, links, processes — is named with a random
suffix and removed at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from _helpers import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for program in ("ip", "haproxy", "redis-server"):
        if shutil.which(program) is None and not Path(f"/usr/sbin/{program}").exists():
            return f"the program {program!r} is not installed"
    probe = f"cello-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"network namespaces cannot be made here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def require_namespaces() -> None:
    reason = unavailable()
    if reason is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(reason + " and CELLO_REQUIRE_SERVICES=1")
    pytest.skip(reason)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Cluster:
    """The namespaces and their processes; ``with Cluster(hosts=2) as cluster:``."""

    def __init__(self, hosts: int = 2, subnet: int | None = None) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.subnet = subnet if subnet is not None else 100 + int(self.tag, 16) % 150
        self.bridge = f"cb{self.tag}"
        self.hosts = [f"h{n}" for n in range(1, hosts + 1)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.folder = Path(f"/tmp/cello-cluster-{self.tag}")

    # -- addresses ------------------------------------------------------------------------------------------------

    def address(self, name: str) -> str:
        """The address of ``name``: "client" (the test process), "lb", "redis", or a host ("h1", "h2", ...)."""
        fixed = {"client": 1, "lb": 2, "redis": 3}
        last = fixed.get(name) or 10 + int(name.removeprefix("h"))
        return f"10.77.{self.subnet}.{last}"

    def namespace(self, name: str) -> str:
        return f"cello-{self.tag}-{name}"

    # -- making and removing --------------------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.folder.mkdir(parents=True)
            _ip("link", "add", self.bridge, "type", "bridge")
            self.links.append(self.bridge)
            _ip("addr", "add", f"{self.address('client')}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for name in ("lb", "redis", *self.hosts):
                self._join(name)
        except BaseException:
            self.close()
            raise
        return self

    def _join(self, name: str) -> None:
        namespace, outside = self.namespace(name), f"cv{self.tag}{name}"
        _ip("netns", "add", namespace)
        self.namespaces.append(namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        self.links.append(outside)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", namespace, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        for namespace in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        for link in reversed(self.links):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        self.namespaces.clear()
        self.links.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def link(self, name: str, *, up: bool) -> None:
        """Cut ``name`` off the network (its interface down: its packets vanish), or connect it again."""
        _ip("-n", self.namespace(name), "link", "set", "eth0", "up" if up else "down")

    # -- processes ------------------------------------------------------------------------------------------------

    def start(self, name: str, where: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        """Run ``argv`` in namespace ``where`` as process ``name`` (its own process group, its output logged)."""
        log = self.folder / f"{name}.log"
        self.logs[name] = log
        with open(log, "wb") as out:
            self.processes[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace(where), *argv], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, start_new_session=True,
            )  # fmt: skip

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def log(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def wait_http(self, url: str, timeout: float = 30.0, what: str = "") -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} never answered; {what}: {self.log(what)}")
            time.sleep(0.1)

    # -- the usual pieces -----------------------------------------------------------------------------------------

    def start_redis(self) -> str:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.start("redis", "redis", [server, "--bind", self.address("redis"), "--port", "6379", "--save", "",
                                      "--appendonly", "no", "--protected-mode", "no"])  # fmt: skip
        url = f"redis://{self.address('redis')}:6379/0"
        deadline = time.monotonic() + 15
        while subprocess.run(["ip", "netns", "exec", self.namespace("redis"), "redis-cli", "-h", self.address("redis"),
                              "ping"], capture_output=True, text=True).stdout.strip() != "PONG":  # fmt: skip
            assert time.monotonic() < deadline, self.log("redis")
            time.sleep(0.1)
        return url

    def start_app(self, host: str, target: str, env: dict[str, str], workers: int = 2) -> None:
        python_path = os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")])
        self.start(host, host, [sys.executable, "-m", "cello", "run", target, "--host", self.address(host),
                                "--port", "8000", "--workers", str(workers)],
                   env={**env, "PYTHONPATH": python_path, "CELLO_HOST_NAME": host})  # fmt: skip
        self.wait_http(f"http://{self.address(host)}:8000/health/ready", what=host)

    def start_balancer(self, hosts: Sequence[str] | None = None) -> str:
        """HAProxy in front of the hosts: round robin, health checks on /health/ready every 300 ms, a request that
        cannot reach its host (or gets no answer within the server timeout) retried on another, WebSocket upgrades
        passed through, X-Forwarded-For added; returns its base URL."""
        servers = "\n".join(f"    server {host} {self.address(host)}:8000 check inter 300 fall 2 rise 2"
                            for host in hosts or self.hosts)  # fmt: skip
        config = self.folder / "haproxy.cfg"
        config.write_text(f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout check 1s
    timeout client 60s
    timeout server 20s
    timeout tunnel 1h
    option forwardfor
frontend web
    bind {self.address("lb")}:8080
    default_backend app
backend app
    balance roundrobin
    option httpchk GET /health/ready
    retry-on conn-failure empty-response response-timeout
    retries 2
    option redispatch
{servers}
""")
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.start("lb", "lb", [haproxy, "-f", str(config), "-db"])
        url = f"http://{self.address('lb')}:8080"
        self.wait_http(url + "/health/ready", what="lb")
        return url


def hosts_answering(responses: Sequence[Any]) -> set[str]:
    """The hosts (``X-Served-By``) that answered ``responses``."""
    return {response.headers.get("x-served-by", "?") for response in responses}


@contextlib.contextmanager
def cluster(hosts: int = 2) -> Iterator[Cluster]:
    require_namespaces()
    with Cluster(hosts) as made:
        yield made
