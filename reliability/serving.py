"""Serving the target app (reliability/target_app.py) for the tests and the long runs, and reading its log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cello.testing import LiveServer

HERE = Path(__file__).resolve().parent
TARGET_ENV = {"PYTHONPATH": str(HERE)}


def serve_target(
    make: Callable[..., LiveServer] = LiveServer,
    face: str = "granian",
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    start: bool = True,
) -> LiveServer:
    """The target app on ``face`` (``make``: a live-test factory, or LiveServer itself), started unless asked."""
    options: dict[str, Any] = {"env": {**TARGET_ENV, **(env or {})}, "ready_path": "/__ready", "workers": workers}
    server = make("target_app:app", face, extra_args=extra_args, **options)
    return server.start() if start else server


def app_tracebacks(output: str) -> list[str]:
    """The tracebacks in a server's log that pass through Cello or the target app (an engine may log its own
    for input it refused, e.g. uvicorn for invalid UTF-8 in a WebSocket text frame, after closing with 1007)."""
    blocks = output.split("Traceback (most recent call last):")[1:]
    return [block[:2000] for block in blocks if "/cello/" in block or "target_app.py" in block]
