"""The CSRF attacks (tests/test_csrf.py) again, against a server of two
worker processes: forged, tampered and replayed tokens and cookies must fail whichever worker answers."""

from __future__ import annotations

import pytest

from test_csrf import *  # noqa: F403 - the same tests, collected here with the face below


@pytest.fixture(params=["granian-workers"])
def face(request: pytest.FixtureRequest) -> str:
    return str(request.param)
