"""run(): serve an app with embedded granian (RSGI, or ASGI on request), or hypercorn when HTTP/3 is asked for.

granian's multi-process server is used exactly as its own CLI uses it, so ``app.run()`` is as fast as
``granian --interface rsgi module:app``. Workers are forked from this process, which hands each one the app
object directly; with a start method other than fork they import it by name instead, and with ``reload`` they
are spawned, so that each restart imports the edited code afresh.

HTTP/3 is served by hypercorn + aioquic. Its cluster mode is Cello's own small supervisor, because every worker
needs its own UDP socket (see ``_run_hypercorn``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..http.exceptions import ConfigurationError

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("cello.server")

HTTPMode = Literal["auto", "1", "2"]


def run(
    app: App | str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    http: HTTPMode = "auto",
    http3: bool = False,
    ssl_certfile: str | os.PathLike[str] | None = None,
    ssl_keyfile: str | os.PathLike[str] | None = None,
    ssl_keyfile_password: str | None = None,
    reload: bool = False,
    log_level: str = "info",
    access_log: bool = False,
    backpressure: int | None = None,
    interface: Literal["rsgi", "asgi"] | None = None,
    respawn_failed_workers: bool | None = None,
    workers_kill_timeout: int | None = None,
    max_header_size: int = 64 * 1024,
    header_timeout: float = 10.0,
    grpc_port: int | None = None,
) -> None:
    """Serve ``app`` (an App, or an import string ``"module:attr"``) until interrupted.

    ``workers`` > 1 is cluster mode: that many processes share the socket and a crashed one is respawned.
    ``http`` picks HTTP/1.1 ("1"), HTTP/2 ("2") or both ("auto": ALPN over TLS, h2c prior knowledge in clear).
    ``http3`` serves QUIC on the same port number through hypercorn + aioquic (TLS certificate required) and
    advertises it with ``Alt-Svc`` on the TCP responses; ``reload``, ``backpressure``, ``interface`` and the
    ``workers_*`` tuning do not apply there (a dead HTTP/3 worker is always respawned when ``workers`` > 1).
    ``interface``: granian's interface to the app — RSGI (the faster), unless the app has WebSocket routes that
    choose a subprotocol at the handshake (GraphQL subscriptions), which only ASGI can send.
    ``max_header_size``: bytes the request line and headers may take (HTTP/1.1; more: 431 or 414).
    ``header_timeout``: seconds a client has to send its request line and headers (slow clients are cut off);
    the body has ``App(body_timeout=)``. ``grpc_port``: where every worker serves the app's gRPC services
    (``app.grpc_service``), on ``host`` too.
    """
    if workers < 1:
        raise ConfigurationError("workers must be >= 1")
    if max_header_size < 8192 or header_timeout <= 0:
        raise ConfigurationError("max_header_size must be >= 8192 and header_timeout > 0")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigurationError("TLS needs both ssl_certfile and ssl_keyfile")
    if http not in ("auto", "1", "2"):
        raise ConfigurationError(f"http must be 'auto', '1' or '2', not {http!r}")
    if grpc_port is not None:
        if isinstance(grpc_port, bool) or not isinstance(grpc_port, int) or not 0 < grpc_port < 65536:
            raise ConfigurationError(f"grpc_port is a TCP port number, not {grpc_port!r}")
        # NOTE: the workers (forked or spawned) read the port from their environment at startup
        os.environ["CELLO_GRPC_PORT"] = str(grpc_port)
        os.environ["CELLO_GRPC_HOST"] = host
    if interface is None:
        interface = "asgi" if _chooses_subprotocols(app) else "rsgi"
        if interface == "asgi":
            # NOTE: a warning, so that it shows before granian sets up logging: the app is slower than on RSGI
            logger.warning("serving through granian's ASGI interface: WebSocket routes of the app choose a "
                           "subprotocol (GraphQL subscriptions), which RSGI cannot send")  # fmt: skip
    if http3:
        if reload:
            raise ConfigurationError("reload is not available with HTTP/3; run without http3 while developing")
        _run_hypercorn(
            app, host, port, workers, http, ssl_certfile, ssl_keyfile, ssl_keyfile_password, log_level, access_log
        )
        return
    _run_granian(
        app,
        host,
        port,
        workers=workers,
        http=http,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_keyfile_password=ssl_keyfile_password,
        reload=reload,
        log_level=log_level,
        access_log=access_log,
        backpressure=backpressure,
        interface=interface,
        respawn=workers > 1 if respawn_failed_workers is None else respawn_failed_workers,
        workers_kill_timeout=workers_kill_timeout,
        max_header_size=max_header_size,
        header_timeout=header_timeout,
    )


def _chooses_subprotocols(target: App | str) -> bool:
    """Whether the app has WebSocket routes that must send a subprotocol in their handshake."""
    app: Any = target
    if isinstance(target, str):
        from granian._internal import load_target

        app = load_target(target)
    return any(route.meta.get("websocket_subprotocols") for route in app.collect_routes())


def _run_granian(app: App | str, host: str, port: int, **options: Any) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    reload = options["reload"]
    if reload:
        # NOTE: a forked worker would inherit every module this process has imported (the CLI imports the app to
        # check it; a script has imported its own modules), so a reloaded worker would serve the old code. A
        # spawned worker imports everything afresh. This process only supervises from here on.
        multiprocessing.set_start_method("spawn", force=True)
    by_name = isinstance(app, str) or reload or multiprocessing.get_start_method() != "fork"
    target = app if isinstance(app, str) else import_string_of(app) if by_name else f"{__name__}:<app>"
    certfile, keyfile = options["ssl_certfile"], options["ssl_keyfile"]
    server = Server(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI if options["interface"] == "asgi" else Interfaces.RSGI,
        workers=options["workers"],
        http=HTTPModes(options["http"]),
        backpressure=options["backpressure"],
        http1_settings=HTTP1Settings(
            header_read_timeout=int(options["header_timeout"] * 1000), max_buffer_size=options["max_header_size"]
        ),
        log_level=LogLevels(options["log_level"]),
        log_access=options["access_log"],
        ssl_cert=Path(certfile) if certfile else None,
        ssl_key=Path(keyfile) if keyfile else None,
        ssl_key_password=options["ssl_keyfile_password"],
        respawn_failed_workers=options["respawn"],
        workers_kill_timeout=options["workers_kill_timeout"],
        reload=reload,
        reload_paths=_reload_paths(target) if reload else None,
        reload_filter=_source_files_filter() if reload else None,
    )
    # NOTE: forked workers inherit this process's memory, so the loader may simply hand over the object
    server.serve(target_loader=functools.partial(_load_in_worker, target if by_name else app), wrap_loader=False)


def _load_in_worker(target: App | str) -> Any:
    """Runs first in every granian worker: restore default signal handling, then load the app.

    NOTE: a forked worker inherits the main process's SIGTERM/SIGINT handler, which only flags the *main*
    process for shutdown. A stop requested while the worker is still importing the app was swallowed, and the
    worker went on to serve while the main process waited for it forever. With the defaults back, such a signal
    ends the worker; granian installs its own handlers once the worker's loop runs.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    app: Any = target
    if isinstance(target, str):
        from granian._internal import load_target

        app = load_target(target)
    from ..app import App

    if isinstance(app, App):
        _drain_before_stopping(app)
    return app


def _drain_before_stopping(app: App) -> None:
    """Make the worker's stop signals drain ``app`` first, and reach granian only once (``cello.engine.signals``).

    NOTE: granian's workers import ``set_loop_signals`` from ``granian._signals`` when they start, after this
    loader ran: replacing it there is the one place to step in. A granian without it keeps its own behaviour.
    """
    from granian import _signals

    from .signals import graceful_loop_signals

    original = getattr(_signals, "set_loop_signals", None)
    if original is not None:
        _signals.set_loop_signals = graceful_loop_signals(app, original)


def _reload_paths(target: str) -> list[Path]:
    """Watch the working directory and, for ``path/to/app.py:app``, the app file's own directory."""
    paths = [Path.cwd()]
    location = target.rpartition(":")[0] if ":" in target else target
    if location.endswith(".py") or os.sep in location:
        directory = Path(location).resolve().parent
        if not directory.is_relative_to(paths[0]):
            paths.append(directory)
    return paths


def _source_files_filter() -> Any:
    """What ``reload`` watches: Python source files only. NOTE: granian's default filter takes every file, so an
    app's own SQLite database (its -wal and -shm files change on every write) restarted the workers in a loop."""
    try:
        import watchfiles
    except ImportError:  # granian says what to install
        return None

    # NOTE: a class of our own: granian adds its ignore lists to the filter class it is given
    class SourceFiles(watchfiles.PythonFilter):  # type: ignore[misc]
        pass

    return SourceFiles


def import_string_of(app: App) -> str:
    """``module:attr`` naming ``app``, for workers that must import it themselves (reload, spawn)."""
    for name, module in list(sys.modules.items()):
        if module is None or name.startswith(("cello.", "granian")):
            continue
        for attr, value in list(vars(module).items()):
            if value is app:
                if name == "__main__":
                    main_file = getattr(module, "__file__", None)
                    if main_file is None:
                        break
                    return f"{os.path.abspath(main_file)}:{attr}"
                return f"{name}:{attr}"
    raise ConfigurationError(
        "cannot find a module-level name for this app; define it at module level, or use `cello run module:app`"
    )


def _run_hypercorn(
    app: App | str,
    host: str,
    port: int,
    workers: int,
    http: HTTPMode,
    certfile: Any,
    keyfile: Any,
    password: str | None,
    log_level: str,
    access_log: bool,
) -> None:
    try:
        from hypercorn.config import Config
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigurationError("HTTP/3 needs the http3 extra: pip install 'cello[http3]'") from None
    if certfile is None:
        raise ConfigurationError("HTTP/3 runs over QUIC, which needs ssl_certfile and ssl_keyfile")
    config = Config()
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    config.bind = [bind]  # TCP with TLS: HTTP/1.1 and HTTP/2, answering with Alt-Svc: h3=":<port>"
    config.quic_bind = [bind]
    config.certfile = os.fspath(certfile)
    config.keyfile = os.fspath(keyfile)
    config.keyfile_password = password
    config.alpn_protocols = {"auto": ["h2", "http/1.1"], "1": ["http/1.1"], "2": ["h2"]}[http]
    config.loglevel = log_level.upper()
    config.accesslog = "-" if access_log else None
    # NOTE: set for SO_REUSEPORT: every worker binds its own TCP and UDP sockets. hypercorn's own multi-worker
    # mode shares one UDP socket between processes, so a QUIC connection's packets land in workers that do not
    # know it; with a socket per worker the kernel keeps each client's datagrams on one worker.
    config.workers = workers
    if workers == 1:
        _hypercorn_worker(app, config)
        return
    by_name = isinstance(app, str) or multiprocessing.get_start_method() != "fork"
    target = app if isinstance(app, str) else import_string_of(app) if by_name else app
    _supervise(workers, target, config)


def _hypercorn_worker(app: App | str, config: Any) -> None:
    if isinstance(app, str):
        from granian._internal import load_target

        app = load_target(app)  # type: ignore[assignment]
    asyncio.run(_serve_hypercorn(app, config))


async def _serve_hypercorn(app: Any, config: Any) -> None:
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.utils import wrap_app

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waker: asyncio.Task[None] | None = None

    async def shutdown_trigger() -> None:
        nonlocal waker
        await stop.wait()
        waker = asyncio.create_task(_wake_quic_listeners(config.quic_bind))

    try:
        await worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config, shutdown_trigger=shutdown_trigger)
    finally:
        if waker is not None:
            waker.cancel()


async def _wake_quic_listeners(binds: list[str]) -> None:
    """Send empty datagrams to our own QUIC sockets until shutdown is over.

    NOTE: hypercorn's QUIC loop checks for shutdown only after a datagram arrives; without one every stop would
    wait out the whole graceful timeout (3 s) even with no connection open. Empty datagrams are dropped unparsed.
    """
    targets: list[tuple[socket.AddressFamily, str, int]] = []
    for bind in binds:
        bound, _, port_text = bind.rpartition(":")
        bound = bound.strip("[]")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bound, bound)
        targets.append((socket.AF_INET6 if ":" in host else socket.AF_INET, host, int(port_text)))
    while True:
        await asyncio.sleep(0.05)
        for family, address, port in targets:
            # a fresh source port each time: with SO_REUSEPORT the kernel picks the receiving worker by address
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                try:
                    sock.sendto(b"", (address, port))
                except OSError:
                    pass


def _supervise(workers: int, target: App | str, config: Any) -> None:
    """Run ``workers`` hypercorn processes; respawn one that dies, stop them all on SIGINT/SIGTERM."""
    context = multiprocessing.get_context("fork" if not isinstance(target, str) else None)
    stopping = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)

    def spawn(index: int) -> Any:
        process = context.Process(target=_supervised_worker, args=(target, config), name=f"cello-worker-{index + 1}")
        process.start()
        logger.info("started worker-%d (pid %s)", index + 1, process.pid)
        return process

    processes = [spawn(index) for index in range(workers)]
    respawned_at: dict[int, float] = {}
    exit_code = 0
    while not stopping.is_set():
        multiprocessing.connection.wait([process.sentinel for process in processes], timeout=0.2)
        for index, process in enumerate(processes):
            if process.is_alive() or stopping.is_set():
                continue
            # like granian: a worker that dies again right after being respawned will not get better
            if time.monotonic() - respawned_at.get(index, -_CRASH_LOOP_SECONDS) < _CRASH_LOOP_SECONDS:
                logger.error("worker-%d keeps exiting (last code %s); stopping", index + 1, process.exitcode)
                exit_code = 1
                stopping.set()
                break
            logger.warning("worker-%d (pid %s) exited with %s; respawning", index + 1, process.pid, process.exitcode)
            respawned_at[index] = time.monotonic()
            processes[index] = spawn(index)

    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + config.graceful_timeout + 5.0
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            logger.warning("worker pid %s did not stop in time; killing it", process.pid)
            process.kill()
            process.join()
    if exit_code:
        raise SystemExit(exit_code)


_CRASH_LOOP_SECONDS = 5.0


def _supervised_worker(target: App | str, config: Any) -> None:
    # a forked worker inherits the supervisor's handlers; it must die on SIGTERM until its loop takes over
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _hypercorn_worker(target, config)
    except KeyboardInterrupt:
        pass
