"""Orchestrated sagas: steps with compensations, their state in the app's database after every step, resumed by
any worker after a crash.

    payment = Saga("payment")

    @payment.step(timeout=5.0, retries=3)
    async def reserve(saga: SagaContext) -> None:
        saga.data["reservation"] = await stock.reserve(saga.data["order_id"], key=saga.key)

    @reserve.compensate
    async def release(saga: SagaContext) -> None:
        await stock.release(saga.data["reservation"], key=saga.key)

    @payment.step(timeout=10.0, retries=2)
    async def charge(saga: SagaContext) -> None:
        saga.data["charge"] = await payments.charge(saga.data["amount"], key=saga.key)

    sagas = Sagas(db, payment)
    sagas.attach(app)                                   # the table, and resuming what a dead worker left
    saga_id = await sagas.start("payment", {"order_id": "42", "amount": 250})
    state = await sagas.wait(saga_id)                   # completed, or compensated (with the failure's text)

**Steps.** Each step's action runs with a timeout and a number of retries (exponential backoff between them).
``saga.key`` is the step's idempotency key — ``<saga id>:<step>`` for the action, ``<saga id>:<step>:compensate``
for its compensation — for the participant to recognise a repeated call: a step interrupted by a crash runs again
after it, with the same key. ``saga.data`` is the saga's state (JSON), saved with every step.

**Failure.** When a step fails for good, the completed steps are compensated in reverse order (each with its own
retries); the saga ends ``compensated``. A compensation that keeps failing leaves it ``failed`` — stuck, for a
person to look at (``cello sagas list``).

**Metrics.** With ``app.enable_prometheus()``: ``cello_sagas_total{saga, status}`` and
``cello_saga_steps_total{step, kind, outcome}`` (kind: action or compensation; outcome: ok, error or timeout).

**Crashes.** A saga being run is leased to its runner for ``lease`` seconds, renewed while it runs. The runner of
every worker looks for sagas whose lease ran out — their worker died — and takes them over, resuming at the step
they were in (forwards, or compensating). So after ``kill -9`` a saga completes or compensates once a worker runs
again, each step's effect once where the participant honours the key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ..enterprise.database import Database
from ..http.exceptions import ConfigurationError, NotFound
from .store import Poller, create_tables, lock_key

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Saga", "SagaContext", "SagaState", "Sagas"]

logger = logging.getLogger("cello.patterns")

RUNNING, COMPENSATING = "running", "compensating"
COMPLETED, COMPENSATED, FAILED = "completed", "compensated", "failed"
ENDED = (COMPLETED, COMPENSATED, FAILED)

_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    step INTEGER NOT NULL,
    data TEXT NOT NULL,
    error TEXT,
    owner TEXT,
    lease_until DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL)"""
_STATEMENTS = {
    "insert": "INSERT INTO {table} (id, name, status, step, data, owner, lease_until, started_at, updated_at) "
    "VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $7)",
    "claim": "UPDATE {table} SET owner = $2, lease_until = $3 WHERE id = $1 AND status IN ('running', 'compensating') "
    "AND (lease_until < $4 OR owner = $2)",
    "save": "UPDATE {table} SET status = $3, step = $4, data = $5, error = $6, lease_until = $7, updated_at = $8 "
    "WHERE id = $1 AND owner = $2",
    "renew": "UPDATE {table} SET lease_until = $3 WHERE id = $1 AND owner = $2",
    "orphans": "SELECT id FROM {table} WHERE status IN ('running', 'compensating') AND lease_until < $1 "
    "ORDER BY started_at LIMIT 50",
    "get": "SELECT id, name, status, step, data, error, started_at, updated_at FROM {table} WHERE id = $1",
    "list": "SELECT id, name, status, step, data, error, started_at, updated_at FROM {table} ORDER BY started_at DESC "
    "LIMIT $1",
}


@dataclasses.dataclass
class SagaContext:
    """What a step's action or compensation gets: the saga's id, its ``data`` (kept with every step), the step's
    name, its idempotency ``key`` and the ``attempt`` (from 1)."""

    saga_id: str
    data: dict[str, Any]
    step: str
    key: str
    attempt: int


class _Step:
    __slots__ = ("name", "action", "compensation", "timeout", "retries", "backoff")

    def __init__(self, name: str, action: Callable[[SagaContext], Awaitable[Any]], timeout: float | None,
                 retries: int, backoff: float) -> None:  # fmt: skip
        self.name = name
        self.action = action
        self.compensation: Callable[[SagaContext], Awaitable[Any]] | None = None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff


class StepHandle:
    """What ``@saga.step`` returns: the action, and ``@handle.compensate`` to give it a compensation."""

    def __init__(self, step: _Step) -> None:
        self._step = step

    def compensate(self, compensation: Callable[[SagaContext], Awaitable[Any]]) -> Callable[..., Any]:
        self._step.compensation = compensation
        return compensation

    async def __call__(self, saga: SagaContext) -> Any:
        return await self._step.action(saga)


class Saga:
    """A saga's definition: its steps in order, each with its action and, optionally, its compensation."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps: list[_Step] = []

    def step(self, name: str | None = None, *, timeout: float | None = 30.0, retries: int = 0,
             backoff: float = 0.5) -> Callable[[Callable[[SagaContext], Awaitable[Any]]], StepHandle]:  # fmt: skip
        """Add the decorated action as the next step: ``timeout`` seconds per attempt (None: none), ``retries``
        after the first attempt, ``backoff`` seconds before the first retry (doubling)."""

        def add(action: Callable[[SagaContext], Awaitable[Any]]) -> StepHandle:
            step = _Step(name or action.__name__, action, timeout, retries, backoff)
            if any(known.name == step.name for known in self.steps):
                raise ConfigurationError(f"saga {self.name!r} already has a step {step.name!r}")
            self.steps.append(step)
            return StepHandle(step)

        return add


class SagaState(msgspec.Struct):
    """A saga as stored: its status (running, compensating, completed, compensated, failed), the step it is at,
    its data, the failure that turned it back (if any), and when it started and last moved (epoch seconds)."""

    id: str
    name: str
    status: str
    step: int
    data: dict[str, Any]
    error: str | None
    started_at: float
    updated_at: float


class StepFailed(Exception):
    """A step (or compensation) that failed after its retries."""


class Sagas:
    """Runs sagas and keeps their state in ``table`` of ``db``; see the module."""

    def __init__(self, db: Database, *sagas: Saga, table: str = "cello_sagas", lease: float = 30.0,
                 interval: float = 1.0) -> None:  # fmt: skip
        if not table.replace("_", "").isalnum():
            raise ConfigurationError(f"table is a plain SQL name, not {table!r}")
        if lease <= 0 or interval <= 0:
            raise ConfigurationError("lease and interval are seconds above 0")
        self.db = db
        self.table = table
        self.definitions = {saga.name: saga for saga in sagas}
        self.lease = lease
        self.interval = interval
        self.owner = uuid.uuid4().hex  # this runner, in the lease column
        self.sql = {name: template.format(table=table) for name, template in _STATEMENTS.items()}
        self._running: dict[str, asyncio.Task[None]] = {}
        # every interval: the sagas whose runner's lease ran out (it died, or stopped), resumed here
        self._watcher = Poller(self._resume_orphans, interval, _resume_failed)
        self._closed = False  # after close(): a saga started is stored, not run (a subscriber draining may start one)
        self.counts = dict.fromkeys(ENDED, 0)  # sagas this runner ended, by how
        self._metrics: tuple[Any, Any] | None = None  # with app.enable_prometheus(): sagas ended, steps run

    async def setup(self) -> None:
        """Create the table when it is missing (one worker at a time on PostgreSQL)."""
        await create_tables(self.db, lock_key(f"sagas:{self.table}"), _TABLE.format(table=self.table))

    def attach(self, app: App) -> Sagas:
        """Create the table at startup, then take over the sagas dead workers left, every ``interval`` seconds;
        at shutdown, stop running them (another worker resumes them when their lease runs out, as it does a saga
        started after that, by a subscriber still draining)."""
        app.startup_hooks.append(self.open)
        app.drain_hooks.append(self.close)
        app.state.setdefault("sagas", []).append(self)
        from ..middleware.metrics import Prometheus

        if any(isinstance(layer, Prometheus) for layer in app.middleware):
            self._metrics = _metrics()
        return self

    async def open(self) -> None:
        await self.setup()
        self._closed = False
        self._watcher.start()

    async def close(self) -> None:
        self._closed = True
        await self._watcher.stop()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- starting and reading ---------------------------------------------------------------------------------

    async def start(self, name: str, data: dict[str, Any] | None = None, *, saga_id: str | None = None) -> str:
        """Store a new saga of definition ``name`` and start running it in the background; returns its id. With
        ``saga_id`` given, starting it again is a no-op (the id is the saga's idempotency key)."""
        if name not in self.definitions:
            raise ConfigurationError(f"no saga {name!r} here: {sorted(self.definitions)}")
        saga_id = saga_id or uuid.uuid4().hex
        now = time.time()
        try:
            await self.db.execute(self.sql["insert"], saga_id, name, RUNNING, msgspec.json.encode(data or {}).decode(),
                                  self.owner, now + self.lease, now)  # fmt: skip
        except Exception as exc:
            if type(exc).__name__ in ("UniqueViolationError", "IntegrityError"):
                return saga_id  # started already
            raise
        self._launch(saga_id)
        return saga_id

    async def get(self, saga_id: str) -> SagaState:
        """The saga's stored state; ``NotFound`` (a 404) when there is none."""
        row = await self.db.fetch_one(self.sql["get"], saga_id)
        if row is None:
            raise NotFound("No saga has this id.")
        return _state(row)

    async def list(self, limit: int = 100) -> list[SagaState]:
        """The newest sagas first."""
        return [_state(row) for row in await self.db.fetch_all(self.sql["list"], limit)]

    async def wait(self, saga_id: str, timeout: float = 60.0) -> SagaState:
        """The saga's state once it has ended (completed, compensated or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.get(saga_id)
            if state.status in ENDED:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"saga {saga_id} has not ended within {timeout} s (it is {state.status})")
            await asyncio.sleep(0.02)

    # -- running -----------------------------------------------------------------------------------------------

    def _launch(self, saga_id: str) -> None:
        if self._closed or saga_id in self._running:
            return  # closed: its lease runs out, and the next worker to look takes it over
        task = asyncio.get_running_loop().create_task(self._run(saga_id))
        self._running[saga_id] = task
        task.add_done_callback(lambda _: self._running.pop(saga_id, None))

    async def _resume_orphans(self) -> int:
        for row in await self.db.fetch_all(self.sql["orphans"], time.time()):
            self._launch(row["id"])
        return 0  # NOTE: polled every interval however many it found: each runs in a task of its own

    async def _run(self, saga_id: str) -> None:
        now = time.time()
        if not await self.db.execute(self.sql["claim"], saga_id, self.owner, now + self.lease, now):
            return  # another runner holds it
        state = await self.get(saga_id)
        definition = self.definitions.get(state.name)
        if definition is None:
            logger.warning("saga %s is a %r, which this runner does not define", saga_id, state.name)
            return
        renewing = asyncio.get_running_loop().create_task(self._renew(saga_id))
        try:
            await self._drive(definition, state)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("saga %s could not be saved; it resumes when its lease runs out", saga_id)
        finally:
            renewing.cancel()

    async def _renew(self, saga_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            await self.db.execute(self.sql["renew"], saga_id, self.owner, time.time() + self.lease)

    async def _drive(self, definition: Saga, state: SagaState) -> None:
        steps, data = definition.steps, state.data
        step, status, error = state.step, state.status, state.error
        while status == RUNNING and step < len(steps):
            current = steps[step]
            try:
                await self._attempts(current, current.action, state.id, data, f"{state.id}:{current.name}")
                step += 1
            except StepFailed as failed:
                status, error = COMPENSATING, str(failed)
                step -= 1  # NOTE: the failed step left nothing to undo: compensate those before it
            await self._save(state.id, status, step, data, error)
        while status == COMPENSATING and step >= 0:
            current = steps[step]
            if current.compensation is not None:
                try:
                    await self._attempts(current, current.compensation, state.id, data,
                                         f"{state.id}:{current.name}:compensate")  # fmt: skip
                except StepFailed as failed:
                    status, error = FAILED, f"{error}; then {failed}"
                    await self._save(state.id, status, step, data, error)
                    break
            step -= 1
            await self._save(state.id, status, step, data, error)
        if status in (RUNNING, COMPENSATING):
            status = COMPLETED if status == RUNNING else COMPENSATED
            await self._save(state.id, status, step, data, error)
        self.counts[status] += 1
        if self._metrics is not None:
            self._metrics[0].labels(definition.name, status).inc()
        logger.info("saga %s (%s) %s", state.id, definition.name, status)

    async def _attempts(self, step: _Step, call: Callable[[SagaContext], Awaitable[Any]], saga_id: str,
                        data: dict[str, Any], key: str) -> None:  # fmt: skip
        kind = "compensation" if key.endswith(":compensate") else "action"
        for attempt in range(1, step.retries + 2):
            context = SagaContext(saga_id, data, step.name, key, attempt)
            try:
                async with asyncio.timeout(step.timeout):
                    await call(context)
                if self._metrics is not None:
                    self._metrics[1].labels(step.name, kind, "ok").inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a timeout among them
                timed_out = isinstance(exc, TimeoutError)
                reason = "timed out" if timed_out else f"{type(exc).__name__}: {exc}"
                if self._metrics is not None:
                    self._metrics[1].labels(step.name, kind, "timeout" if timed_out else "error").inc()
                if attempt > step.retries:
                    raise StepFailed(f"step {step.name} failed ({reason})") from exc
                logger.info("saga %s: step %s failed (%s), attempt %d of %d", saga_id, step.name, reason, attempt,
                            step.retries + 1)  # fmt: skip
                await asyncio.sleep(step.backoff * 2 ** (attempt - 1))

    async def _save(self, saga_id: str, status: str, step: int, data: dict[str, Any], error: str | None) -> None:
        now = time.time()
        saved = await self.db.execute(self.sql["save"], saga_id, self.owner, status, step,
                                      msgspec.json.encode(data).decode(), error, now + self.lease, now)  # fmt: skip
        if not saved:
            raise RuntimeError(f"saga {saga_id} is no longer this runner's")


_counters: dict[str, Any] = {}


def _metrics() -> tuple[Any, Any]:
    """``cello_sagas_total{saga, status}`` (sagas ended) and ``cello_saga_steps_total{step, kind, outcome}`` (each
    attempt of an action or compensation), made once per process."""
    if not _counters:
        import prometheus_client

        _counters["sagas"] = prometheus_client.Counter("cello_sagas", "Sagas ended, by how.", ["saga", "status"])
        _counters["steps"] = prometheus_client.Counter(
            "cello_saga_steps", "Attempts of saga steps' actions and compensations.", ["step", "kind", "outcome"]
        )
    return _counters["sagas"], _counters["steps"]


def _state(row: Any) -> SagaState:
    return SagaState(row["id"], row["name"], row["status"], row["step"], msgspec.json.decode(row["data"]),
                     row["error"], row["started_at"], row["updated_at"])  # fmt: skip


def _resume_failed(exc: Exception) -> None:
    logger.exception("looking for sagas to resume failed; trying again")
