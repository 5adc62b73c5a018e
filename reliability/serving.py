"""Serving the target app (reliability/target_app.py) for the tests and the long runs, and reading its log."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cello
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
    """The tracebacks in a server's log that pass through Cello or the target app.

    An engine may log tracebacks of its own for input it refused (uvicorn does for invalid UTF-8 in a WebSocket
    text frame, after closing with 1007): those are the peer server's, not the app's. A traceback is the app's when
    one of its frames is a file of the Cello package or the target app itself; a path merely containing "cello"
    (a checkout named so, with the server's own files in a venv inside it) does not make it one.
    """
    blocks = output.split("Traceback (most recent call last):")[1:]
    return [block[:2000] for block in blocks if any(map(_is_app_file, _FRAME_FILE.findall(block)))]


_FRAME_FILE = re.compile(r'^\s*File "([^"]+)", line \d+', re.MULTILINE)
_CELLO_PACKAGE = str(Path(cello.__file__).resolve().parent) + os.sep
_TARGET_APP = str(HERE / "target_app.py")


def _is_app_file(path: str) -> bool:
    return path.startswith(_CELLO_PACKAGE) or path == _TARGET_APP
