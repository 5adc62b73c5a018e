"""Helpers shared by the live tests and the reliability suite (each conftest.py holds its fixtures): the
environment every server gets, the server factory that proves no server outlives its test, a Redis server of a
test's own, curl, and the search for server processes left running."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _helpers import require_program
from cello.testing import LiveServer, free_port

APPS_DIR = Path(__file__).resolve().parent.parent / "apps"
TOKEN = uuid.uuid4().hex
LIVE_ENV = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS_DIR), os.environ.get("PYTHONPATH")])),
    "CELLO_LIVE_TOKEN": TOKEN,
}


@dataclass(frozen=True)
class Certs:
    ca: str
    cert: str
    key: str


def token_processes(exclude_groups: Collection[int] = ()) -> dict[int, str]:
    """Live processes (not zombies, not this one, not in ``exclude_groups``) carrying this session's token."""
    found = {}
    needle = f"CELLO_LIVE_TOKEN={TOKEN}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            if fields[0] in (b"Z", b"X") or int(fields[2]) in exclude_groups:
                continue
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                found[int(entry)] = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def curl(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run curl, bounded in time; skip when it is not installed (fail when CELLO_REQUIRE_SERVICES=1)."""
    program = shutil.which("curl")
    if program is None:
        if os.environ.get("CELLO_REQUIRE_SERVICES") == "1":
            pytest.fail("curl is not installed and CELLO_REQUIRE_SERVICES=1")
        pytest.skip("curl is not installed")
    return subprocess.run(
        [program, "-sS", "--max-time", str(int(timeout)), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
        check=False,
    )


def curl_get(url: str, *args: str) -> tuple[str, str]:
    """``(body, http_version)`` of a successful curl GET; the version as curl reports it: "1.1", "2"."""
    result = curl(*args, "-w", "\n--curl--%{http_version}", url)
    assert result.returncode == 0, f"curl failed ({result.returncode}): {result.stderr}"
    body, _, version = result.stdout.rpartition("\n--curl--")
    return body, version


Factory = Callable[..., LiveServer]
_ACTIVE: list[list[LiveServer]] = []


@contextlib.contextmanager
def live_servers() -> Iterator[Factory]:
    """``make(target, server="granian", **LiveServer options)``; every server made is stopped at the end, and the
    block fails if any process of theirs is still running then."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the live tests inspect /proc")
    created: list[LiveServer] = []
    _ACTIVE.append(created)

    def make(target: Any, server: str = "granian", **options: Any) -> LiveServer:
        options["env"] = {**LIVE_ENV, **options.get("env", {})}
        instance = LiveServer(target, server, **options)  # type: ignore[arg-type]
        created.append(instance)
        return instance

    try:
        yield make
    finally:
        _ACTIVE.remove(created)
        leftovers: dict[int, str] = {}
        for instance in created:
            instance.stop()
            leftovers.update(dict.fromkeys(instance.processes(), "(process group of a stopped server)"))
        # servers of an enclosing (module-scoped) factory are still meant to run
        running = {server.pgid for group in _ACTIVE for server in group if server.pid is not None}
        leftovers.update(token_processes(running))
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)  # so one leak does not spill into the next test
            except ProcessLookupError:
                pass
        assert not leftovers, f"server processes left running: {leftovers}"


class PostgresServer:
    """A PostgreSQL server of a test's own (initdb into a temporary directory, a free port): stopping it for real
    (``immediate``: like a crash) disturbs nothing else. Runs as the ``postgres`` user when the tests run as root,
    since PostgreSQL refuses to run as root."""

    def __init__(self) -> None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        self.bin = Path(require_program("PostgreSQL's initdb", candidates[-1] if candidates else None)).parent
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.directory = Path(tempfile.mkdtemp(prefix="cello-pg-"))
        self.data = self.directory / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = require_program("runuser", shutil.which("runuser"))
            self.as_user = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_user, str(self.bin / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    restart = start

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running ``PostgresServer``, always stopped and removed afterwards."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()
