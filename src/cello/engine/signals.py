"""Shutdown signals: say goodbye to long-lived connections before the server stops.

Servers stop on SIGTERM or SIGINT, and each treats open connections its own way: uvicorn closes every WebSocket
itself (code 1012) and then waits — without end unless told otherwise — for responses still streaming, such as
event streams; granian and hypercorn drop them. The app learns of its shutdown only afterwards. So the app drains
first (``Dispatcher.drain``: WebSockets get 1001, event streams end), bounded by ``DRAIN_DEADLINE``, and only then
lets the server stop. Asked again with the same signal while draining (a second Ctrl-C), it stops at once.

- Under ``app.run()`` / ``cello run`` (embedded granian) the worker's own stop handlers on the event loop are
  replaced (``graceful_loop_signals``): drain, then tell granian once. NOTE: granian's stop call blocks for ever
  when made a third time (a bounded channel nobody reads any more), and a worker hears SIGINT from the terminal,
  SIGTERM from its main process and perhaps a second Ctrl-C: calling it on every signal hung Ctrl-C for good.
- Under other servers the app, at startup in the main thread, puts its own handler in front of the server's
  (``chain_shutdown_signals``): drain, then hand the signal on. A server that takes signals through its event loop
  (the granian CLI, hypercorn) hears them anyway: there the drain only races its teardown, and the signal is never
  handed on a second time (uvloop's handler would run the server's callbacks again).
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
CLOSE_FLUSH = 0.25  # seconds granian is given to write the close frames of the WebSockets a drain closed
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_loop_handlers_installed = False  # this process's event loop already drains on the signals (graceful_loop_signals)


def graceful_loop_signals(app: App, set_loop_signals: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """granian's ``set_loop_signals(loop) -> stop event``, with the stop handlers on the loop replaced by ones that
    drain the app first and set the event once."""

    def install(loop: Any) -> Any:
        global _loop_handlers_installed
        event = set_loop_signals(loop)
        stop = _GracefulStop(app, loop, event.set)
        try:
            for sig in SHUTDOWN_SIGNALS:
                loop.add_signal_handler(sig, stop, sig)
        except NotImplementedError:  # a loop without signal support: granian's own handlers stay
            return event
        _loop_handlers_installed = True
        return event

    return install


class _GracefulStop:
    """The loop's handler of the shutdown signals: drain, then stop the server exactly once."""

    def __init__(self, app: App, loop: asyncio.AbstractEventLoop, stop_server: Callable[[], Any]) -> None:
        self.app = app
        self.loop = loop
        self.stop_server = stop_server
        self.heard: set[int] = set()
        self.stopped = False

    def __call__(self, signum: int) -> None:
        if self.stopped:
            return
        if signum in self.heard:  # asked again: stop now
            self.stop()
            return
        first = not self.heard
        self.heard.add(signum)
        if first:
            self.loop.create_task(self._drain_then_stop())

    async def _drain_then_stop(self) -> None:
        try:
            sockets = self.app.dispatcher.websockets
            closing = bool(sockets)
            await _drain(self.app)
            if closing:
                # NOTE: an RSGI close returns before granian has written the close frame, and a worker that stops
                # at once drops it: let the handlers end, then give the engine a moment to flush
                deadline = self.loop.time() + DRAIN_DEADLINE
                while sockets and self.loop.time() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(CLOSE_FLUSH)
        finally:
            self.stop()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.stop_server()


def chain_shutdown_signals(app: App) -> Callable[[], None] | None:
    """Put the drain in front of the current SIGTERM/SIGINT handlers; returns how to undo it (None: nothing
    done — not the main thread, the loop drains already, or no handler to hand the signal on to)."""
    if _loop_handlers_installed or threading.current_thread() is not threading.main_thread():
        return None
    loop = asyncio.get_running_loop()
    installed: dict[int, tuple[Any, Any]] = {}
    for sig in SHUTDOWN_SIGNALS:
        previous = signal.getsignal(sig)
        # NOTE: without a server's handler (a plain script, the default KeyboardInterrupt) there is nobody to hand
        # the signal on to after draining: leave it alone
        if not callable(previous) or previous is signal.default_int_handler:
            continue
        relay = _relay(app, loop, None if _loop_owned(previous) else previous)
        signal.signal(sig, relay)
        installed[sig] = (previous, relay)

    def undo() -> None:
        for sig, (previous, relay) in installed.items():
            if signal.getsignal(sig) is relay:
                signal.signal(sig, previous)

    return undo if installed else None


def _loop_owned(handler: Any) -> bool:
    """asyncio's and uvloop's own handler: the loop runs what was registered with ``add_signal_handler`` by itself
    (through its wakeup file descriptor), whatever Python-level handler is in place."""
    return getattr(handler, "__name__", None) == "_sighandler_noop" or isinstance(
        getattr(handler, "__self__", None), asyncio.AbstractEventLoop
    )


def _relay(app: App, loop: asyncio.AbstractEventLoop, previous: Callable[..., Any] | None) -> Callable[..., None]:
    draining = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal draining
        if draining:  # asked again: stop now
            if previous is not None:
                previous(signum, frame)
            return
        draining = True
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_drain_then(app, previous, signum, frame)))

    return on_signal


async def _drain_then(app: App, previous: Callable[..., Any] | None, signum: int, frame: Any) -> None:
    try:
        await _drain(app)
    finally:
        if previous is not None:
            previous(signum, frame)


async def _drain(app: App) -> None:
    try:
        await asyncio.wait_for(app.dispatcher.drain(), DRAIN_DEADLINE)
    except Exception:
        logger.warning("draining connections before shutdown did not finish", exc_info=True)
