"""Circuit breakers: stop calling what keeps failing, answer fast, and try again after a while.

A circuit is **closed** (calls go through) until failures cross a threshold — ``failure_threshold`` consecutive
failures, or a ``failure_ratio`` of at least ``minimum_calls`` recent calls — then **open** (calls are refused
at once) for ``reset_timeout`` seconds, then **half-open**: up to ``half_open_max_calls`` trial calls go
through at a time; ``success_threshold`` successes (one by default) close the circuit, a failure opens it again.

Three ways to use one:

- as middleware around routes (``app.enable_circuit_breaker(...)``, or ``middleware=[CircuitBreaker(...)]``):
  a 5xx answer (or an exception) counts as a failure, and while open the route answers 503 problem+json with
  ``Retry-After``; ``per_route=True`` keeps one circuit per route template;
- as a decorator around an outbound call: ``@breaker`` on a sync or async function;
- as a context manager: ``async with breaker: await db.fetch(...)``.

Refused calls raise ``CircuitOpenError`` (a 503 ``HTTPException``), so an unhandled one becomes the same 503.
The state of every breaker is exported to Prometheus when that is installed. State is per worker process.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar

from .. import telemetry
from ..http.exceptions import HTTPException
from ..http.response import ProblemResponse, Response
from . import _metrics
from ._types import CallNext

F = TypeVar("F", bound=Callable[..., Any])

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


# the spans of the traced calls under way in this task, innermost last (see CircuitBreaker.__enter__)
_SPANS: ContextVar[tuple[Any, ...]] = ContextVar("cello_breaker_spans", default=())


def _end_span(error: BaseException | None) -> None:
    spans = _SPANS.get()
    _SPANS.set(spans[:-1])
    spans[-1].__exit__(type(error) if error is not None else None, error, error.__traceback__ if error else None)


class CircuitOpenError(HTTPException):
    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(
            503,
            f"The service behind {name!r} is failing; try again later.",
            headers={"retry-after": str(max(1, math.ceil(retry_after)))},
        )
        self.retry_after = retry_after


class _Circuit:
    """The state of one circuit."""

    __slots__ = ("breaker", "name", "state", "failures", "opened_at", "trials", "successes", "recent")

    def __init__(self, breaker: CircuitBreaker, name: str) -> None:
        self.breaker = breaker
        self.name = name
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self.trials = 0  # half-open: trial calls under way
        self.successes = 0  # half-open: trial calls that succeeded
        self.recent: deque[tuple[float, bool]] = deque()

    def allow(self) -> bool:
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if time.monotonic() - self.opened_at < self.breaker.reset_timeout:
                return False
            self._move(HALF_OPEN)
            self.trials = self.successes = 0
        if self.trials >= self.breaker.half_open_max_calls:
            return False
        self.trials += 1
        return True

    def retry_after(self) -> float:
        return max(0.0, self.breaker.reset_timeout - (time.monotonic() - self.opened_at))

    def record(self, success: bool) -> None:
        breaker = self.breaker
        if self.state == HALF_OPEN:
            self.trials = max(0, self.trials - 1)
            if not success:
                self._move(OPEN)
                self.opened_at = time.monotonic()
                return
            self.successes += 1
            if self.successes >= breaker.success_threshold:  # enough trials went through: close
                self._move(CLOSED)
                self.failures = 0
                self.recent.clear()
            return
        now = time.monotonic()
        if breaker.failure_ratio is not None:
            self.recent.append((now, success))
            while self.recent and now - self.recent[0][0] > breaker.window:
                self.recent.popleft()
        if success:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= breaker.failure_threshold or self._ratio_exceeded():
            self._move(OPEN)
            self.opened_at = now

    def _ratio_exceeded(self) -> bool:
        breaker = self.breaker
        if breaker.failure_ratio is None or len(self.recent) < breaker.minimum_calls:
            return False
        failed = sum(1 for _, ok in self.recent if not ok)
        return failed / len(self.recent) >= breaker.failure_ratio

    def _move(self, state: str) -> None:
        if state != self.state:
            self.state = state
            _metrics.breaker_state(self.name, state)


class CircuitBreaker:
    """``CircuitBreaker(name="payments", failure_threshold=5, reset_timeout=30)``; see the module for its uses.

    ``failure_statuses``: response statuses that count as failures (as middleware; default 5xx but not 503s the
    breaker produced itself). ``exceptions``: exception types that count as failures (others pass through
    without counting). ``traced``: calls through it get a span while telemetry is on (``cello.telemetry``).
    ``half_open_max_calls``: trial calls let through at once while half-open;
    ``success_threshold``: trial calls that must succeed before the circuit closes again.
    """

    # the framework's own endpoints (metrics, health, OpenAPI, static files) are left alone (cello.dispatch)
    framework_routes = False

    def __init__(
        self,
        name: str = "default",
        *,
        failure_threshold: int = 5,
        failure_ratio: float | None = None,
        minimum_calls: int = 10,
        window: float = 60.0,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        failure_statuses: Callable[[int], bool] = lambda status: status >= 500,
        exceptions: tuple[type[BaseException], ...] = (Exception,),
        per_route: bool = False,
        traced: bool = True,
    ) -> None:
        if failure_threshold < 1 or reset_timeout <= 0 or half_open_max_calls < 1 or success_threshold < 1:
            raise ValueError(
                "failure_threshold >= 1, reset_timeout > 0, half_open_max_calls >= 1 and success_threshold >= 1 "
                "are needed"
            )
        if failure_ratio is not None and not 0 < failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        self.name = name
        self.failure_threshold = failure_threshold
        self.failure_ratio = failure_ratio
        self.minimum_calls = minimum_calls
        self.window = window
        self.reset_timeout = reset_timeout
        self.half_open_max_calls = half_open_max_calls
        self.success_threshold = success_threshold
        self.failure_statuses = failure_statuses
        self.exceptions = exceptions
        self.per_route = per_route
        self.traced = traced
        self._circuits: dict[str, _Circuit] = {}
        self._main = self._circuit(name)

    def _circuit(self, name: str) -> _Circuit:
        circuit = self._circuits.get(name)
        if circuit is None:
            circuit = self._circuits[name] = _Circuit(self, name)
            _metrics.breaker_state(name, CLOSED)
        return circuit

    @property
    def state(self) -> str:
        return self._main.state

    def state_of(self, route_path: str) -> str:
        """The state of one route's circuit (``per_route=True``)."""
        return self._circuit(f"{self.name}:{route_path}").state

    # -- as middleware --------------------------------------------------------------------------------------

    uses_hooks = True  # as middleware: enter/leave (see cello.middleware.base)

    def enter(self, request: Any) -> Any:
        circuit = self._main
        if self.per_route and request.route is not None:
            circuit = self._circuit(f"{self.name}:{request.route.path}")
        if not circuit.allow():
            _metrics.breaker_rejected(circuit.name)
            return ProblemResponse.from_exception(CircuitOpenError(circuit.name, circuit.retry_after()), request.path)
        return circuit

    def leave(self, request: Any, response: Response, circuit: Any) -> Response:
        # exceptions have become responses inside the chain: a 5xx is how a failure shows here
        circuit.record(not self.failure_statuses(response.status))
        return response

    async def __call__(self, request: Any, call_next: CallNext) -> Response:
        state = self.enter(request)
        if isinstance(state, Response):
            return state
        try:
            response: Response = await call_next(request)
        except self.exceptions:
            state.record(False)
            raise
        return self.leave(request, response, state)

    # -- around outbound calls ------------------------------------------------------------------------------

    def __enter__(self) -> CircuitBreaker:
        traced = self.traced and telemetry.tracer is not None
        if traced:  # a client span around the call (cello.telemetry), ended in __exit__
            span = telemetry.client_span(
                f"circuit_breaker {self.name}",
                {"cello.circuit_breaker.name": self.name, "cello.circuit_breaker.state": self.state},
            )
            span.__enter__()
            _SPANS.set((*_SPANS.get(), span))
        if not self._main.allow():
            _metrics.breaker_rejected(self.name)
            error = CircuitOpenError(self.name, self._main.retry_after())
            if traced:
                _end_span(error)
            raise error
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self._main.record(True)
        elif issubclass(exc_type, self.exceptions) and not issubclass(exc_type, CircuitOpenError):
            self._main.record(False)
        if self.traced and _SPANS.get():
            _end_span(exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def protect(self, func: F) -> F:
        """Decorate a sync or async function so each call goes through the breaker."""
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await func(*args, **kwargs)

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    def reset(self) -> None:
        """Close every circuit (an operator's override)."""
        for circuit in self._circuits.values():
            circuit._move(CLOSED)
            circuit.failures = 0
            circuit.recent.clear()
