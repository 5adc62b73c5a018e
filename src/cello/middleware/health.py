"""Health endpoints for load balancers and orchestrators (Kubernetes probes).

``app.enable_health_checks()`` serves, below ``base_path`` (``/health``):

- ``/health/live``: the process answers (liveness);
- ``/health/ready``: every registered readiness check passes (readiness): 200, else 503 with each check's result,
  so a load balancer takes the instance out of rotation;
- ``/health/startup``: the app has finished starting (its startup hooks ran);
- ``/health``: the full report: readiness, and the version and process facts when configured.

``@app.health_check("database")`` (or ``checks={...}``) registers a readiness check: a sync or async callable that
returns normally when healthy and raises (or returns False) otherwise. Checks run concurrently, each bounded by its
timeout. The endpoints are the framework's own: rate limits, caches, circuit breakers, timeouts, sessions and CSRF
never apply to them, and an app-wide authenticator lets them through.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..http.response import JSONResponse
from ..routing.router import Route

Check = Callable[[], Any]

_STARTED = time.time()


@dataclass
class HealthCheckConfig:
    """``base_path``: where the endpoints live. ``include_details``: each check's result in the readiness answers.
    ``include_system_info``: the full report adds process facts (pid, uptime, memory, Python). ``version``: the
    app's version in the full report. ``timeout_secs``: seconds each check may take. ``cache_secs``: reuse a
    readiness result for that long (None: run the checks on every probe)."""

    base_path: str = "/health"
    include_details: bool = True
    include_system_info: bool = False
    version: str | None = None
    timeout_secs: float = 5.0
    cache_secs: float | None = None


class HealthChecks:
    """The checks and their routes (``HealthCheckConfig``; ``timeout``: seconds each check may take)."""

    def __init__(
        self,
        config: HealthCheckConfig | None = None,
        *,
        checks: dict[str, Check] | None = None,
        timeout: float | None = None,
    ) -> None:
        config = config or HealthCheckConfig()
        if timeout is not None:
            config.timeout_secs = timeout
        self.config = config
        self.checks: dict[str, tuple[Check, float]] = {}
        self._cached: tuple[float, dict[str, Any], bool] | None = None
        for name, check in (checks or {}).items():
            self.add(name, check)

    @property
    def timeout(self) -> float:
        return self.config.timeout_secs

    def add(self, name: str, check: Check, timeout: float | None = None) -> None:
        self.checks[name] = (check, self.timeout if timeout is None else timeout)

    def routes(self) -> list[Route]:
        base = self.config.base_path.rstrip("/")
        # NOTE: "framework": the app's own endpoint, passed by the middleware that could make it fail;
        # "public": readable without credentials behind an app-wide authenticator, as probes are
        meta = {"include_in_schema": True, "tags": ["health"], "framework": True, "public": True}
        return [
            Route(f"{base}/live", ["GET"], self.live, name="health_live", meta=dict(meta)),
            Route(f"{base}/ready", ["GET"], self.ready, name="health_ready", meta=dict(meta)),
            Route(f"{base}/startup", ["GET"], self.startup, name="health_startup", meta=dict(meta)),
            Route(base or "/", ["GET"], self.report, name="health", meta=dict(meta)),
        ]

    async def live(self) -> JSONResponse:
        """The process is up and its event loop answers."""
        return _answer({"status": "pass"}, healthy=True)

    async def ready(self) -> JSONResponse:
        """Every registered readiness check passes."""
        report, healthy = await self._checked()
        body: dict[str, Any] = {"status": "pass" if healthy else "fail"}
        if self.config.include_details:
            body["checks"] = report
        return _answer(body, healthy)

    async def startup(self, request: Any) -> JSONResponse:
        """The app has finished starting: its startup hooks ran."""
        started = bool(request.app.started)
        return _answer({"status": "pass" if started else "fail"}, started)

    async def report(self) -> JSONResponse:
        """Readiness with every check's result, the version, and process facts when configured."""
        report, healthy = await self._checked()
        body: dict[str, Any] = {"status": "pass" if healthy else "fail", "checks": report}
        if self.config.version is not None:
            body["version"] = self.config.version
        if self.config.include_system_info:
            body["system"] = _system_info()
        return _answer(body, healthy)

    async def _checked(self) -> tuple[dict[str, Any], bool]:
        cache = self.config.cache_secs
        now = time.monotonic()
        if cache and self._cached is not None and now - self._cached[0] < cache:
            return self._cached[1], self._cached[2]
        results = await asyncio.gather(*(self._run(name, check, timeout) for name, (check, timeout) in
                                         self.checks.items()))  # fmt: skip
        report = dict(results)
        healthy = all(result["status"] == "pass" for result in report.values())
        if cache:
            self._cached = (now, report, healthy)
        return report, healthy

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


def _answer(body: dict[str, Any], healthy: bool) -> JSONResponse:
    return JSONResponse(body, status=200 if healthy else 503, headers={"cache-control": "no-store"})


def _system_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "pid": os.getpid(),
        "uptime_seconds": round(time.time() - _STARTED, 1),
        "python": platform.python_version(),
    }
    try:
        import resource
    except ImportError:  # not on Windows
        return info
    info["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return info
