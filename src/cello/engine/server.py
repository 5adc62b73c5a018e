"""run(): serve an app with embedded granian (RSGI, or ASGI on request), or hypercorn when HTTP/3 is asked for.

granian's multi-process server is used exactly as its own CLI uses it, so ``app.run()`` is as fast as
``granian --interface rsgi module:app``. Workers are forked from this process, which hands each one the app
object directly; with a start method other than fork they import it by name instead, and with ``reload`` they
are spawned, so that each restart imports the edited code afresh.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import signal
import sys
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
    interface: Literal["rsgi", "asgi"] = "rsgi",
    respawn_failed_workers: bool | None = None,
    workers_kill_timeout: int | None = None,
) -> None:
    """Serve ``app`` (an App, or an import string ``"module:attr"``) until interrupted.

    ``workers`` > 1 is cluster mode: that many processes share the socket and a crashed one is respawned.
    ``http`` picks HTTP/1.1 ("1"), HTTP/2 ("2") or both ("auto": ALPN over TLS, h2c prior knowledge in clear).
    ``http3`` serves QUIC on the same port number through hypercorn + aioquic (TLS certificate required) and
    advertises it with ``Alt-Svc`` on the TCP responses.
    """
    if workers < 1:
        raise ConfigurationError("workers must be >= 1")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigurationError("TLS needs both ssl_certfile and ssl_keyfile")
    if http not in ("auto", "1", "2"):
        raise ConfigurationError(f"http must be 'auto', '1' or '2', not {http!r}")
    if http3:
        _run_hypercorn(app, host, port, workers, ssl_certfile, ssl_keyfile, ssl_keyfile_password, log_level)
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
    )


def _run_granian(app: App | str, host: str, port: int, **options: Any) -> None:
    from granian.constants import HTTPModes, Interfaces
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
        log_level=LogLevels(options["log_level"]),
        log_access=options["access_log"],
        ssl_cert=Path(certfile) if certfile else None,
        ssl_key=Path(keyfile) if keyfile else None,
        ssl_key_password=options["ssl_keyfile_password"],
        respawn_failed_workers=options["respawn"],
        workers_kill_timeout=options["workers_kill_timeout"],
        reload=reload,
        reload_paths=_reload_paths(target) if reload else None,
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
    if isinstance(target, str):
        from granian._internal import load_target

        return load_target(target)
    return target


def _reload_paths(target: str) -> list[Path]:
    """Watch the working directory and, for ``path/to/app.py:app``, the app file's own directory."""
    paths = [Path.cwd()]
    location = target.rpartition(":")[0] if ":" in target else target
    if location.endswith(".py") or os.sep in location:
        directory = Path(location).resolve().parent
        if not directory.is_relative_to(paths[0]):
            paths.append(directory)
    return paths


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
    certfile: Any,
    keyfile: Any,
    password: str | None,
    log_level: str,
) -> None:
    try:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigurationError("HTTP/3 needs the http3 extra: pip install 'cello[http3]'") from None
    if certfile is None:
        raise ConfigurationError("HTTP/3 runs over QUIC, which needs ssl_certfile and ssl_keyfile")
    config = Config()
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    config.bind = [bind]
    config.quic_bind = [bind]
    config.certfile = os.fspath(certfile)
    config.keyfile = os.fspath(keyfile)
    config.keyfile_password = password
    config.loglevel = log_level.upper()
    config.workers = workers
    if workers > 1:
        from hypercorn.run import run as hypercorn_run

        config.application_path = app if isinstance(app, str) else import_string_of(app)
        hypercorn_run(config)
        return
    if isinstance(app, str):
        from granian._internal import load_target

        app = load_target(app)  # type: ignore[assignment]
    asyncio.run(serve(app, config))  # type: ignore[arg-type]
