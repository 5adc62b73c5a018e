"""An app answering its VERSION: two of them on one port, for the restart test
(tests/live/test_reuseport_restart.py)."""

from __future__ import annotations

import os

from cello import App

app = App()


@app.get("/")
def index() -> dict[str, str]:
    return {"version": os.environ.get("VERSION", "?")}
