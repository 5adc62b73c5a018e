"""Shutdown signals: say goodbye to long-lived connections before the server stops.

Servers stop on SIGTERM or SIGINT, and each treats open connections its own way: uvicorn closes every WebSocket
itself (code 1012) and then waits — without end unless told otherwise — for responses still streaming, such as
event streams; granian and hypercorn drop them. The app learns of its shutdown only afterwards. So at startup, in
the main thread, the app puts its own handler in front of the server's: on the signal it first drains
(``Dispatcher.drain``: WebSockets get 1001, event streams end), bounded by ``DRAIN_DEADLINE``, and then hands the
signal on. A second signal is handed on at once.

A server that takes signals through its event loop (granian, hypercorn) starts stopping at the same moment; there
the drain races the server's own teardown and is best effort.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("cello.engine")

DRAIN_DEADLINE = 5.0
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def chain_shutdown_signals(app: App) -> Callable[[], None] | None:
    """Put the drain in front of the current SIGTERM/SIGINT handlers; returns how to undo it (None: nothing
    done — not the main thread, or no handler to hand the signal on to)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    loop = asyncio.get_running_loop()
    installed: dict[int, tuple[Any, Any]] = {}
    for sig in SHUTDOWN_SIGNALS:
        previous = signal.getsignal(sig)
        # NOTE: without a server's handler (a plain script, the default KeyboardInterrupt) there is nobody to hand
        # the signal on to after draining: leave it alone
        if not callable(previous) or previous is signal.default_int_handler:
            continue
        relay = _relay(app, loop, previous)
        signal.signal(sig, relay)
        installed[sig] = (previous, relay)

    def undo() -> None:
        for sig, (previous, relay) in installed.items():
            if signal.getsignal(sig) is relay:
                signal.signal(sig, previous)

    return undo if installed else None


def _relay(app: App, loop: asyncio.AbstractEventLoop, previous: Callable[..., Any]) -> Callable[..., None]:
    draining = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal draining
        if draining:  # asked again: stop now
            previous(signum, frame)
            return
        draining = True
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_drain_then(app, previous, signum, frame)))

    return on_signal


async def _drain_then(app: App, previous: Callable[..., Any], signum: int, frame: Any) -> None:
    try:
        await asyncio.wait_for(app.dispatcher.drain(), DRAIN_DEADLINE)
    except Exception:
        logger.warning("draining connections before shutdown did not finish", exc_info=True)
    finally:
        previous(signum, frame)
