"""Fixtures of the reliability suite: the live-server factory of the live tests (tests/live/_live.py), and the
reliability marker on everything collected here. Helpers the tests import live in serving.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "live")]

import importlib.util  # noqa: E402

from _live import Factory, live_servers  # noqa: E402


def _tests_conftest():  # type: ignore[no-untyped-def]
    """tests/conftest.py, under a name of its own (both files are "conftest" to Python)."""
    spec = importlib.util.spec_from_file_location("cello_tests_conftest", HERE.parent / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the fixtures the attack suites re-run here need (their ``face`` is set by each module)
_shared = _tests_conftest()
servers = _shared.servers
sec_client = _shared.sec_client
session_client = _shared.session_client


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
