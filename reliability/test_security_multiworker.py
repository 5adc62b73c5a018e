"""The security attack suite (tests/test_security.py) again, against a server of two worker processes: forged,
tampered and replayed credentials, guard bypasses and path tricks must fail the same way whichever worker a
connection lands on. (CSRF and sessions: test_sessions_multiworker.py.)"""

from __future__ import annotations

import pytest

from test_security import *  # noqa: F403 - the same tests, collected here with the face below


@pytest.fixture(params=["granian-workers"])
def face(request: pytest.FixtureRequest) -> str:
    return str(request.param)
