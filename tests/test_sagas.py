"""Orchestrated sagas (cello.patterns.sagas) on the real databases: the happy path, a failure at each step with
the completed steps compensated in reverse order once each, a timeout, retries, a compensation that keeps failing,
an idempotent start, and a worker killed with SIGKILL mid-step whose saga another worker completes — each step's
effect once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cello.enterprise.database import Database
from cello.patterns import Saga, SagaContext, Sagas

APPS = Path(__file__).resolve().parent / "apps"


def payment(journal: list[str], fail_at: str | None = None, *, flaky: dict[str, int] | None = None) -> Saga:
    """reserve -> charge -> ship, each compensable; ``fail_at`` fails for good, ``flaky`` fails n times first."""
    saga = Saga("payment")

    def make(name: str) -> None:
        @saga.step(name, timeout=1.0, retries=2, backoff=0.01)
        async def act(context: SagaContext) -> None:
            if flaky and flaky.get(name, 0) > 0:
                flaky[name] -= 1
                raise ConnectionError("the participant hiccuped")
            if name == fail_at:
                raise RuntimeError(f"{name} refused")
            journal.append(f"{name} {context.key} #{context.attempt}")
            context.data[name] = True

        @act.compensate
        async def undo(context: SagaContext) -> None:
            journal.append(f"undo {name} {context.key}")

    for name in ("reserve", "charge", "ship"):
        make(name)
    return saga


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with Database(database_url, pool_size=4) as database:
        yield database


async def test_the_happy_path(db: Database) -> None:
    journal: list[str] = []
    sagas = Sagas(db, payment(journal))
    await sagas.open()
    try:
        saga_id = await sagas.start("payment", {"order": "1"})
        state = await sagas.wait(saga_id)
    finally:
        await sagas.close()
    assert (state.status, state.step, state.error) == ("completed", 3, None)
    assert state.data == {"order": "1", "reserve": True, "charge": True, "ship": True}
    assert journal == [f"{name} {saga_id}:{name} #1" for name in ("reserve", "charge", "ship")]
    assert [saga.id for saga in await sagas.list()] == [saga_id] and sagas.counts["completed"] == 1


@pytest.mark.parametrize("failing", ["reserve", "charge", "ship"])
async def test_a_failure_compensates_what_was_done_in_reverse(db: Database, failing: str) -> None:
    journal: list[str] = []
    sagas = Sagas(db, payment(journal, fail_at=failing))
    await sagas.open()
    try:
        saga_id = await sagas.start("payment")
        state = await sagas.wait(saga_id)
    finally:
        await sagas.close()
    done = ["reserve", "charge", "ship"][: ["reserve", "charge", "ship"].index(failing)]
    assert state.status == "compensated" and f"step {failing} failed" in (state.error or "")
    assert journal == [f"{name} {saga_id}:{name} #1" for name in done] + [
        f"undo {name} {saga_id}:{name}:compensate" for name in reversed(done)]  # fmt: skip


async def test_retries_and_a_timeout(db: Database) -> None:
    journal: list[str] = []
    flaky = {"charge": 2}
    sagas = Sagas(db, payment(journal, flaky=flaky))
    slow = Saga("slow")

    @slow.step(timeout=0.05, retries=1, backoff=0.01)
    async def wait_forever(context: SagaContext) -> None:
        journal.append("waiting")
        await asyncio.sleep(10)

    sagas.definitions["slow"] = slow
    await sagas.open()
    try:
        retried = await sagas.wait(await sagas.start("payment"))
        timed_out = await sagas.wait(await sagas.start("slow"))
    finally:
        await sagas.close()
    assert retried.status == "completed" and any(entry.endswith("#3") for entry in journal)  # third attempt
    assert timed_out.status == "compensated" and "timed out" in (timed_out.error or "")
    assert journal.count("waiting") == 2  # the first attempt and one retry


async def test_a_compensation_that_keeps_failing_leaves_the_saga_failed(db: Database) -> None:
    saga = Saga("stuck")

    @saga.step(retries=0)
    async def reserve(context: SagaContext) -> None:
        pass

    @reserve.compensate
    async def release(context: SagaContext) -> None:
        raise RuntimeError("the stock service is gone")

    @saga.step(retries=0)
    async def charge(context: SagaContext) -> None:
        raise RuntimeError("card declined")

    sagas = Sagas(db, saga)
    await sagas.open()
    try:
        state = await sagas.wait(await sagas.start("stuck"))
        again = await sagas.start("stuck", saga_id=state.id)  # an idempotent start: no second saga
    finally:
        await sagas.close()
    assert state.status == "failed" and "card declined" in (state.error or "") and "stock" in (state.error or "")
    assert again == state.id and len(await sagas.list()) == 1


def test_a_killed_worker_s_saga_is_finished_by_another(tmp_path: Path) -> None:
    """The first worker is killed (SIGKILL) inside the second step; the next one takes the saga over when its
    lease runs out and completes it: every step's effect once, the interrupted step run again with its key."""
    env = {**os.environ, "SAGA_DB": str(tmp_path / "sagas.db"),
           "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    first = subprocess.Popen([sys.executable, str(APPS / "saga_worker.py"), "start"], env={**env, "HANG": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _rows(tmp_path, "SELECT count(*) FROM attempts"):
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the first worker never reached the second step"
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    second = subprocess.run([sys.executable, str(APPS / "saga_worker.py"), "resume"], env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert second.returncode == 0, second.stderr
    state: dict[str, Any] = json.loads(second.stdout.strip().splitlines()[-1])
    assert state["status"] == "completed"
    effects = _rows(tmp_path, "SELECT key, what FROM effects ORDER BY what", every=True)
    assert effects == [("saga-42:charge", "charged"), ("saga-42:reserve", "reserved"), ("saga-42:ship", "shipped")]
    assert _rows(tmp_path, "SELECT count(*) FROM attempts") == 2  # the killed attempt, and the one that finished


def _rows(folder: Path, query: str, every: bool = False) -> Any:
    import sqlite3

    path = folder / "sagas.db"
    if not path.exists():
        return [] if every else 0
    connection = sqlite3.connect(path)
    try:
        found = connection.execute(query).fetchall()
    except sqlite3.OperationalError:  # the table is not there yet
        return [] if every else 0
    finally:
        connection.close()
    return found if every else found[0][0]


def test_the_sagas_command_lists_and_shows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cello.cli import main

    database = tmp_path / "shop.db"
    (tmp_path / "saga_shop.py").write_text(
        "from cello import App\n"
        "from cello.enterprise.database import Database\n"
        "from cello.patterns import Sagas\n"
        "from test_sagas import payment\n"
        f"db = Database('sqlite:///{database}')\n"
        "app = App()\n"
        "Sagas(db, payment([], fail_at='ship')).attach(app)\n"
    )

    async def one_saga() -> str:
        async with Database(f"sqlite:///{database}") as db:
            sagas = Sagas(db, payment([], fail_at="ship"))
            await sagas.open()
            try:
                return (await sagas.wait(await sagas.start("payment", saga_id="s-1"))).status
            finally:
                await sagas.close()

    assert asyncio.run(one_saga()) == "compensated"
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["sagas", "list", "saga_shop:app"]) == 0
        listed = capsys.readouterr().out
        assert listed.startswith("s-1\tpayment\tcompensated\tstep -1\tstep ship failed")
        assert main(["sagas", "show", "saga_shop:app", "s-1"]) == 0
        assert json.loads(capsys.readouterr().out)["data"] == {"reserve": True, "charge": True}
    finally:
        sys.path.remove(str(tmp_path))


async def test_sagas_and_their_steps_are_counted(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import REGISTRY

    from cello import App
    from cello.testing import AsyncTestClient

    watched = [("cello_sagas_total", {"saga": "payment", "status": "compensated"}),
               ("cello_saga_steps_total", {"step": "charge", "kind": "action", "outcome": "error"}),
               ("cello_saga_steps_total", {"step": "reserve", "kind": "compensation", "outcome": "ok"})]  # fmt: skip

    def counts() -> list[float]:  # NOTE: the process's: other tests count too
        return [REGISTRY.get_sample_value(name, labels) or 0.0 for name, labels in watched]

    async with Database(f"sqlite:///{tmp_path / 'counted.db'}") as db:
        app = App()
        app.enable_prometheus()
        sagas = Sagas(db, payment([], fail_at="ship", flaky={"charge": 1})).attach(app)
        before = counts()
        async with AsyncTestClient(app) as client:
            assert (await sagas.wait(await sagas.start("payment"))).status == "compensated"
            assert "cello_sagas_total" in (await client.get("/metrics")).text
        after = counts()
    assert [later - earlier for later, earlier in zip(after, before, strict=True)] == [1.0, 1.0, 1.0]
