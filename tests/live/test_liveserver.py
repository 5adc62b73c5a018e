"""LiveServer always tears down: a server that dies at start, one that never answers, an exception inside the
``with`` block, a server whose shutdown hangs, and cluster workers — after stop() no process of it is left."""

from __future__ import annotations

import os
import sys
import time

import httpx
import pytest
from _live import APPS_DIR

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]


def alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped by its new parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


def test_a_server_that_dies_at_start_raises_with_its_output(live):
    server = live("no_such_module_anywhere:app", ready_path="/__ready")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with") as error:
        server.start()
    assert time.monotonic() - started < 15
    assert "no_such_module_anywhere" in str(error.value)  # the traceback is in the message
    assert server.pid is None
    assert server.processes() == []


def test_a_server_that_never_answers_is_stopped_after_the_timeout(live):
    # a process that listens on nothing, and a child of it that ignores SIGTERM
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "child = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'\n"
        "subprocess.Popen([sys.executable, '-c', child])\n"
        "time.sleep(60)\n"
    )
    server = live([sys.executable, "-c", stubborn], timeout=1.0, stop_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer"):
        server.start()
    assert time.monotonic() - started < 10
    assert server.pgid is not None
    assert server.processes() == []


def test_an_exception_in_the_with_block_still_stops_every_worker(live):
    server = live("core_app:app", workers=2, ready_path="/__ready")
    pids: list[int] = []

    def failing_test() -> None:
        with server:
            pids.extend(server.processes())
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        failing_test()
    assert len(pids) == 3  # main + two workers
    assert server.processes() == []
    assert not any(alive(pid) for pid in pids)


def test_stop_leaves_no_worker_and_runs_shutdown_hooks(live, tmp_path):
    server = live("lifecycle_app:app", workers=2, ready_path="/__ready", env={"CELLO_MARKS_DIR": str(tmp_path)}).start()
    pids = server.processes()
    assert len(pids) == 3
    # one answering worker makes the server ready; wait until the other has started too (a worker stopped while
    # it is still loading exits at once, without startup having run, so without a shutdown to run either)
    deadline = time.monotonic() + 10
    while len(list(tmp_path.glob("startup-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    output = server.stop()
    assert server.returncode == 0, output
    assert server.processes() == []
    assert not any(alive(pid) for pid in pids)
    workers = set(pids) - {server.pgid}
    assert {int(path.name.split("-")[1]) for path in tmp_path.glob("shutdown-*")} == workers
    assert server.stop() == output  # stopping again is harmless


def test_a_server_whose_shutdown_hangs_is_killed_within_stop_timeout(live, tmp_path):
    server = live(
        [sys.executable, str(APPS_DIR / "lifecycle_app.py"), "{port}"],
        ready_path="/__ready",
        stop_timeout=2.0,
        env={"CELLO_MARKS_DIR": str(tmp_path), "CELLO_SHUTDOWN_SLEEP": "120"},
    ).start()
    pids = server.processes()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 10
    assert server.returncode is not None and server.returncode < 0  # killed, not exited
    assert list(tmp_path.glob("shutdown-*")), "the shutdown hook had started"
    assert server.processes() == []
    assert not any(alive(pid) for pid in pids)


def test_an_app_object_is_served_by_a_forked_app_run(live, tmp_path):
    """An App target runs ``app.run(**run_options)`` in a forked process; its cluster stops with it."""
    import core_app

    server = live(core_app.app, workers=2, ready_path="/__ready").start()
    assert server.pgid == server.pid and server.pid != os.getpid()
    seen = set()
    for _ in range(300):
        response = httpx.get(server.url + "/state", headers={"connection": "close"}, timeout=3.0, trust_env=False)
        seen.add(response.json()["pid"])
        if len(seen) == 2:
            break
    assert len(seen) == 2
    pids = server.processes()
    assert seen <= set(pids)
    server.stop()
    assert server.returncode == 0
    assert server.processes() == []
    assert not any(alive(pid) for pid in pids)
