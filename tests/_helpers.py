"""Helpers for tests that need something outside Python: a service on a port, or a program on PATH.

They skip with a clear reason when it is missing, and fail instead when ``CELLO_REQUIRE_SERVICES=1`` (as in CI),
so a missing dependency can never pass for a green run there.
"""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_SERVICES = os.environ.get("CELLO_REQUIRE_SERVICES") == "1"


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, with CELLO_REQUIRE_SERVICES=1, fail) when an outside service is not reachable."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and CELLO_REQUIRE_SERVICES=1")
    pytest.skip(message)


def require_program(name: str, path: str | None) -> str:
    if path:
        return path
    message = f"the program {name!r} is not installed"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and CELLO_REQUIRE_SERVICES=1")
    pytest.skip(message)
