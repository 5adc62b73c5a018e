"""A worker for the real-broker tests (tests/live/test_brokers.py), served with several workers: its subscriber
takes ``CELLO_BROKER_TOPIC`` jobs as group ``CELLO_BROKER_GROUP`` (default ``workers``) on the broker at
``CELLO_BROKER_URL`` (``Broker`` options as JSON in ``CELLO_BROKER_OPTIONS``), sleeps ``CELLO_BROKER_DELAY`` seconds
on each, and writes what it does to ``CELLO_BROKER_OUT/<pid>.log``: ``ready 0`` once subscribed, ``start <n>`` and
``done <n>``, a line each, written at once — so the test sees every worker's progress, and what survives a SIGTERM
or a kill -9."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import msgspec
import orjson

from cello import App
from cello.messaging import Broker, Message

app = App()
broker = Broker(
    os.environ["CELLO_BROKER_URL"],
    drain_timeout=float(os.environ.get("CELLO_BROKER_DRAIN", "10")),
    **orjson.loads(os.environ.get("CELLO_BROKER_OPTIONS", "{}")),
)
app.include_broker(broker)
OUT = Path(os.environ["CELLO_BROKER_OUT"])
DELAY = float(os.environ.get("CELLO_BROKER_DELAY", "0"))


class Job(msgspec.Struct):
    n: int


def record(event: str, job: Job) -> None:
    with open(OUT / f"{os.getpid()}.log", "a") as log:
        log.write(f"{event} {job.n}\n")


@broker.subscriber(
    os.environ["CELLO_BROKER_TOPIC"], group=os.environ.get("CELLO_BROKER_GROUP", "workers"), concurrency=4
)
async def work(job: Job, message: Message) -> None:
    record("start", job)
    await asyncio.sleep(DELAY)
    record("done", job)


@app.on_startup
async def subscribed() -> None:  # after the broker's own startup: its consumers are running
    with open(OUT / f"{os.getpid()}.log", "a") as log:
        log.write("ready 0\n")


@app.get("/")
async def ready() -> dict[str, int]:
    return {"pid": os.getpid()}
