"""Fixtures of the reliability suite: the live-server factory and the helpers of the live tests, the target app
served on each engine face, and a Redis server of the suite's own (stopped on purpose by the fault tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "live")]

from _live import Factory, live_servers  # noqa: E402

TARGET_ENV = {"PYTHONPATH": str(HERE)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.live)


@pytest.fixture
def live() -> Iterator[Factory]:
    with live_servers() as make:
        yield make


@pytest.fixture(scope="module")
def live_module() -> Iterator[Factory]:
    with live_servers() as make:
        yield make


def serve_target(make: Factory, face: str = "granian", *, workers: int = 1, env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = ()):  # fmt: skip
    """The target app (reliability/target_app.py) on ``face``, started."""
    options = {"env": {**TARGET_ENV, **(env or {})}, "ready_path": "/__ready", "workers": workers}
    return make("target_app:app", face, extra_args=extra_args, **options).start()


def app_tracebacks(output: str) -> list[str]:
    """The tracebacks in a server's log that pass through Cello or the target app (an engine may log its own
    for input it refused, e.g. uvicorn for invalid UTF-8 in a WebSocket text frame, after closing with 1007)."""
    blocks = output.split("Traceback (most recent call last):")[1:]
    return [block[:2000] for block in blocks if "/cello/" in block or "target_app.py" in block]
