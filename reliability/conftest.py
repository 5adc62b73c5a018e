"""Fixtures of the reliability suite, borrowed from the test suite's conftest files (the live-server factory of
tests/live, the server pool and app clients of tests/), and the reliability marker on everything collected here.
Helpers the tests import live in serving.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "live")]


def _conftest(path: Path, name: str) -> ModuleType:
    """A conftest.py of the test suite, under a name of its own (every such file is "conftest" to Python)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_live = _conftest(TESTS / "live" / "conftest.py", "cello_live_conftest")
live = _live.live
live_module = _live.live_module
# the fixtures the attack suites re-run here need (their ``face`` is set by each module)
_shared = _conftest(TESTS / "conftest.py", "cello_tests_conftest")
servers = _shared.servers
sec_client = _shared.sec_client
session_client = _shared.session_client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.live)
