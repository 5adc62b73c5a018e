"""Fixtures for the live tests: a throwaway CA and server certificate, and a LiveServer factory that proves, after
every test, that no server process it started is still running.

Every server started here carries ``CELLO_LIVE_TOKEN`` in its environment (forked ones are tracked by process
group), so a leftover is found even if it escaped its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _live import LIVE_ENV, Certs, token_processes

from cello.testing import LiveServer


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    trustme = pytest.importorskip("trustme")
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    paths = Certs(str(directory / "ca.pem"), str(directory / "cert.pem"), str(directory / "key.pem"))
    ca.cert_pem.write_to_path(paths.ca)
    server.cert_chain_pems[0].write_to_path(paths.cert)
    server.private_key_pem.write_to_path(paths.key)
    return paths


Factory = Callable[..., LiveServer]
_ACTIVE: list[list[LiveServer]] = []


@contextlib.contextmanager
def _factory() -> Iterator[Factory]:
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


@pytest.fixture
def live() -> Iterator[Factory]:
    """``live(target, server="granian", **LiveServer options)`` — stopped, and checked for leftovers, afterwards."""
    with _factory() as make:
        yield make


@pytest.fixture(scope="module")
def live_module() -> Iterator[Factory]:
    """``live`` for servers shared by the tests of one module."""
    with _factory() as make:
        yield make
