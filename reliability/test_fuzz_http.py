"""Hostile HTTP requests through a live server: no 5xx, no hang, no dead worker, every error a problem+json.

The bounded run here draws ``RELIABILITY_FUZZ_EXAMPLES`` requests (default 300) per engine face; the long run
(``python reliability/run.py fuzz``) draws a million and more.
"""

from __future__ import annotations

import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from serving import app_tracebacks, serve_target
from strategies import FuzzRequest, http_requests
from wire import exchange, judge

EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "300"))
FACES = ["granian", "uvicorn"]


@pytest.fixture(scope="module", params=FACES)
def target(request, live_module):
    server = serve_target(live_module, request.param)
    pid = httpx.get(server.url + "/pid", timeout=5).json()["pid"]
    yield server
    # the same worker is alive and still answers after everything it was sent
    assert httpx.get(server.url + "/pid", timeout=5).json()["pid"] == pid
    assert not app_tracebacks(server.output())


def test_hostile_requests_get_proper_answers(target):
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(http_requests())
    def check(request: FuzzRequest) -> None:
        answer = exchange(target.host, target.port, request.raw, method=request.method, complete=request.complete)
        _, defect = judge(answer)
        assert defect is None, defect

    check()
