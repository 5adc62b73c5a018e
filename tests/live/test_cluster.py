"""Cluster mode: ``workers=2`` is two processes answering on one port; a worker killed with SIGKILL is respawned
while the other keeps serving; SIGTERM to the main process stops everything cleanly."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from cello.testing import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]


def worker_pid(url: str) -> int | None:
    """The pid answering one request on a fresh connection, or None when the request failed."""
    try:
        response = httpx.get(url + "/state", headers={"connection": "close"}, timeout=3.0, trust_env=False)
    except httpx.HTTPError:
        return None
    assert response.status_code == 200
    body = response.json()
    assert body["started"] is True  # the startup hook ran in this worker
    return int(body["pid"])


def pids_seen(url: str, want: int, attempts: int = 300) -> set[int]:
    seen: set[int] = set()
    for _ in range(attempts):
        pid = worker_pid(url)
        if pid is not None:
            seen.add(pid)
        if len(seen) >= want:
            break
    return seen


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def test_two_workers_respawn_after_kill_and_stop_on_sigterm(live):
    server: LiveServer = live(
        "core_app:app", workers=2, ready_path="/__ready", extra_args=["--log-level", "info"]
    ).start()
    main = server.pid
    assert main is not None

    first = pids_seen(server.url, want=2)
    assert len(first) == 2, f"fresh connections were all answered by {first}"
    assert main not in first
    assert first <= set(server.processes()), "the workers run in the server's process group"

    victim, survivor = sorted(first)
    os.kill(victim, signal.SIGKILL)

    # the server keeps answering while the victim is replaced, until both the survivor and a new pid have
    answered_by: list[int | None] = []
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        answered_by.append(worker_pid(server.url))
        if survivor in answered_by and set(answered_by) - {victim, survivor, None}:
            break
    replacement = set(answered_by) - {victim, survivor, None}
    assert replacement, f"no respawned worker answered; answers: {answered_by}\n{server.output()}"
    assert len(replacement) == 1
    assert survivor in answered_by, "the surviving worker stopped answering"
    assert victim not in answered_by
    failures = answered_by.count(None)
    assert failures <= len(answered_by) // 2, f"{failures} of {len(answered_by)} requests failed"
    assert "Respawning worker-" in server.output()
    assert victim not in server.processes()

    # both the survivor and the replacement serve from now on
    assert pids_seen(server.url, want=2) == {survivor, *replacement}

    # SIGTERM to the main process alone: it stops its workers and exits 0
    group = set(server.processes())
    assert group == {main, survivor, *replacement}
    os.kill(main, signal.SIGTERM)
    assert wait_until(lambda: not server.processes(), timeout=20.0), f"still running: {server.processes()}"
    server.stop()
    assert server.returncode == 0, server.output()
    assert "Unexpected exit" not in server.output().split("Respawning worker-")[-1]
