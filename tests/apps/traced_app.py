"""A service for the telemetry tests (tests/live/test_telemetry_otlp.py): it exports to the OTLP/HTTP endpoint in
``CELLO_TEST_OTLP``, as service ``CELLO_TEST_SERVICE``; ``/call`` calls ``CELLO_TEST_DOWNSTREAM/work`` with the
trace in its headers, ``/work`` runs a statement on its database."""

from __future__ import annotations

import logging
import os
import sys

import httpx

from cello import App, OpenTelemetryConfig
from cello.enterprise import Database
from cello.telemetry import inject

access = logging.getLogger("cello.access")  # the access records, one JSON line each, to the server's output
access.addHandler(logging.StreamHandler(sys.stderr))
access.setLevel(logging.INFO)

app = App()
app.enable_logging()
app.enable_telemetry(
    OpenTelemetryConfig(
        service_name=os.environ.get("CELLO_TEST_SERVICE", "traced"), otlp_endpoint=os.environ["CELLO_TEST_OTLP"]
    )
)
db = Database("sqlite:///:memory:")


@app.get("/__ready")
def ready():
    return "ok"


@app.get("/call")
async def call():
    async with httpx.AsyncClient() as client:
        answer = await client.get(os.environ["CELLO_TEST_DOWNSTREAM"] + "/work", headers=inject())
    return {"downstream": answer.json()}


@app.get("/work")
async def work():
    return {"answer": await db.fetch_val("SELECT 41 + 1")}
