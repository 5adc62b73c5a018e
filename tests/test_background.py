"""Background tasks: bounded concurrency, error logging with the request id, the shutdown drain."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from cello import App, BackgroundTasks, Depends, Response
from cello.testing import TestClient


def test_shutdown_waits_for_running_tasks():
    finished: list[str] = []
    app = App(shutdown_timeout=5)

    async def slow():
        await asyncio.sleep(0.3)
        finished.append("slow")

    @app.post("/")
    def handler(background: BackgroundTasks):
        background.add_task(slow)
        return "accepted", 202

    with TestClient(app) as client:
        assert client.post("/").status_code == 202
        assert finished == []  # the response did not wait for the task
    assert finished == ["slow"]  # shutdown did


def test_shutdown_cancels_tasks_past_the_deadline(caplog):
    state: list[str] = []
    app = App(shutdown_timeout=0.2)

    async def endless():
        try:
            await asyncio.sleep(30)
        finally:
            state.append("cancelled")

    @app.post("/")
    def handler(background: BackgroundTasks):
        background.add_task(endless)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "cello.background"), TestClient(app) as client:
        client.post("/")
    assert time.monotonic() - started < 5
    assert state == ["cancelled"]
    assert "cancelled" in caplog.text


def test_failures_are_logged_with_the_request_id(caplog):
    app = App()

    def broken():
        raise ValueError("task broke")

    @app.post("/")
    def handler(background: BackgroundTasks):
        background.add_task(broken)

    with caplog.at_level(logging.ERROR, "cello.background"), TestClient(app) as client:
        client.post("/", headers={"x-request-id": "req-42"})
        deadline = time.monotonic() + 5
        while "task broke" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert "failed (request req-42)" in caplog.text
    assert "task broke" in caplog.text


def test_concurrency_is_bounded():
    running = 0
    peak = 0
    lock = threading.Lock()
    app = App(background_limit=2)

    async def work():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        await asyncio.sleep(0.05)
        with lock:
            running -= 1

    @app.post("/")
    def handler(background: BackgroundTasks):
        background.add_task(work)

    with TestClient(app) as client:
        for _ in range(8):
            client.post("/")
    assert peak == 2


def test_tasks_attached_to_a_response():
    done: list[int] = []
    app = App()

    @app.get("/")
    def handler():
        tasks = BackgroundTasks()
        tasks.add_task(done.append, 1)
        return Response("ok", background=tasks)

    with TestClient(app) as client:
        client.get("/")
    assert done == [1]


def test_task_dependencies_are_resolved_in_their_own_scope():
    events: list[str] = []
    app = App()

    async def mailer():
        events.append("mailer open")
        yield "smtp"
        events.append("mailer closed")

    async def send(address: str, transport=Depends(mailer)):
        events.append(f"sent to {address} via {transport}")

    @app.post("/")
    def handler(background: BackgroundTasks):
        background.add_task(send, "ada@example.com")
        events.append("handler")

    with TestClient(app) as client:
        client.post("/")
    assert events == ["handler", "mailer open", "sent to ada@example.com via smtp", "mailer closed"]
