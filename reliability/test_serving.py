"""Which tracebacks in a server's log are the app's: those through Cello's package or the target app, never a peer
server's own, wherever the checkout and its venv live (a checkout named "cello" puts "/cello/" in every path)."""

from __future__ import annotations

from pathlib import Path

import cello
from serving import HERE, app_tracebacks

CELLO_FILE = str(Path(cello.__file__).resolve().parent / "engine" / "asgi.py")


def traceback(*files: str) -> str:
    frames = "".join(f'  File "{file}", line 1, in f\n    x()\n' for file in files)
    return f"ERROR: something\nTraceback (most recent call last):\n{frames}ValueError: boom\n"


def test_a_peer_servers_own_traceback_is_not_the_apps():
    uvicorn = "/home/ada/cello/.venv/lib/python3.11/site-packages/uvicorn/protocols/websockets/impl.py"
    assert app_tracebacks(traceback(uvicorn)) == []
    assert app_tracebacks("INFO: nothing went wrong in /home/ada/cello/\n") == []


def test_a_traceback_through_cello_or_the_target_app_is_the_apps():
    uvicorn = "/srv/venv/lib/python3.11/site-packages/uvicorn/protocols/http/h11_impl.py"
    log = traceback(uvicorn) + traceback(uvicorn, CELLO_FILE) + traceback(str(HERE / "target_app.py"))
    found = app_tracebacks(log)
    assert len(found) == 2
    assert CELLO_FILE in found[0] and "target_app.py" in found[1]
