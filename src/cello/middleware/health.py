"""Health endpoints: ``/health/live`` (the process answers) and ``/health/ready`` (its dependencies answer).

``app.enable_health_checks()`` adds both; ``@app.health_check("database")`` (or ``checks={...}``) registers a
readiness check: a sync or async callable that returns normally when healthy and raises (or returns False)
otherwise. Checks run concurrently, each bounded by its timeout; readiness is 200 when all pass and 503 with
each check's result when one fails, so a load balancer takes the instance out of rotation.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

from ..http.response import JSONResponse
from ..routing.router import Route

Check = Callable[[], Any]


class HealthChecks:
    """The checks and the two routes. ``timeout``: seconds each check may take."""

    def __init__(
        self,
        live_path: str = "/health/live",
        ready_path: str = "/health/ready",
        checks: dict[str, Check] | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.live_path = live_path
        self.ready_path = ready_path
        self.timeout = timeout
        self.checks: dict[str, tuple[Check, float]] = {}
        for name, check in (checks or {}).items():
            self.add(name, check)

    def add(self, name: str, check: Check, timeout: float | None = None) -> None:
        self.checks[name] = (check, self.timeout if timeout is None else timeout)

    def routes(self) -> list[Route]:
        meta = {"include_in_schema": True, "tags": ["health"]}
        return [
            Route(self.live_path, ["GET"], self.live, name="health_live", meta=dict(meta)),
            Route(self.ready_path, ["GET"], self.ready, name="health_ready", meta=dict(meta)),
        ]

    async def live(self) -> JSONResponse:
        """The process is up and its event loop answers."""
        return JSONResponse({"status": "pass"}, headers={"cache-control": "no-store"})

    async def ready(self) -> JSONResponse:
        """Every registered readiness check passes."""
        results = await asyncio.gather(*(self._run(name, check, timeout) for name, (check, timeout) in
                                         self.checks.items()))  # fmt: skip
        report = dict(results)
        healthy = all(result["status"] == "pass" for result in report.values())
        body = {"status": "pass" if healthy else "fail", "checks": report}
        return JSONResponse(body, status=200 if healthy else 503, headers={"cache-control": "no-store"})

    async def _run(self, name: str, check: Check, timeout: float) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                if inspect.iscoroutinefunction(check):
                    outcome = await check()
                else:  # a blocking check must not stall the loop (nor escape its timeout)
                    outcome = await asyncio.to_thread(check)
                    if inspect.isawaitable(outcome):
                        outcome = await outcome
            status = "fail" if outcome is False else "pass"
            error = None if status == "pass" else "the check returned False"
        except TimeoutError:
            status, error = "fail", f"timed out after {timeout:g}s"
        except Exception as exc:  # a failing dependency is the point of the check, not a crash
            # only the kind of failure: messages can carry addresses or credentials from connection strings
            status, error = "fail", type(exc).__name__
        result: dict[str, Any] = {"status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 2)}
        if error is not None:
            result["error"] = error
        return name, result
