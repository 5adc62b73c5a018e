"""The ``cello`` command: ``cello run module:app``, ``cello routes module:app``, ``cello openapi module:app``,
``cello asyncapi module:app``, ``cello graphql-schema module:app``, ``cello grpc-compile service.proto``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .app import App
from .http.exceptions import ConfigurationError


def load_app(target: str) -> App:
    """Import ``module:attr`` (or ``path/to/file.py:attr``) from the current directory."""
    module_name, _, attr = target.partition(":")
    attr = attr or "app"
    if module_name.endswith(".py") or os.sep in module_name:
        directory, filename = os.path.split(os.path.abspath(module_name))
        sys.path.insert(0, directory)
        module_name = filename.removesuffix(".py")
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise  # a module the app itself imports is missing: its traceback says where
        raise SystemExit(f"cannot find the module {module_name!r} (looked from {os.getcwd()})") from None
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise SystemExit(f"{module_name} has no attribute {attr!r}: name the App as module:attribute")
        value = getattr(value, part)
    if not isinstance(value, App):
        raise SystemExit(f"{target} is a {type(value).__name__}, not a cello App")
    return value


def _run(args: argparse.Namespace) -> int:
    if args.websocket_server:
        from .engine.wsserver import run as run_websockets

        # granian sets up logging for itself; the lean server has only this, so that it says where it listens
        logging.basicConfig(level=args.log_level.upper(), format="[%(levelname)s] %(message)s")

        run_websockets(load_app(args.target), host=args.host, port=args.port, ping_interval=args.ping_interval or None,
                       ping_timeout=args.ping_timeout, send_timeout=args.send_timeout,
                       handshake_timeout=args.handshake_timeout)  # fmt: skip
        return 0
    from .engine.server import run

    if args.http3 and not args.ssl_certfile:
        raise SystemExit("--http3 needs --ssl-certfile and --ssl-keyfile")
    load_app(args.target)  # fail here, with a clear message, rather than inside every worker
    run(
        args.target,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http=args.http,
        http3=args.http3,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        reload=args.reload,
        log_level=args.log_level,
        access_log=args.access_log,
        backpressure=args.backpressure,
        interface=args.interface,
        max_header_size=args.max_header_size,
        header_timeout=args.header_timeout,
        grpc_port=args.grpc_port,
    )
    return 0


def _document(args: argparse.Namespace) -> int:
    import orjson

    app = load_app(args.target)
    document = app.asyncapi() if args.command == "asyncapi" else app.openapi()
    options = orjson.OPT_INDENT_2 if args.indent else 0
    sys.stdout.write(orjson.dumps(document, option=options | orjson.OPT_APPEND_NEWLINE).decode())
    return 0


def _graphql_schema(args: argparse.Namespace) -> int:
    app = load_app(args.target)
    endpoints = {route.path: route.meta["graphql"] for route in app.router if "graphql" in route.meta}
    if not endpoints:
        raise ConfigurationError(f"{args.target} serves no GraphQL endpoint (app.graphql)")
    if args.path is None and len(endpoints) > 1:
        raise ConfigurationError(f"{args.target} serves GraphQL at {', '.join(sorted(endpoints))}: choose with --path")
    path = args.path or next(iter(endpoints))
    if path not in endpoints:
        raise ConfigurationError(f"no GraphQL endpoint at {path}; there are: {', '.join(sorted(endpoints))}")
    sys.stdout.write(endpoints[path].as_str() + "\n")
    return 0


def _projections(args: argparse.Namespace) -> int:
    """List an app's projections with their checkpoints, or rebuild one (``Projector.attach(app)``)."""
    import asyncio

    app = load_app(args.target)
    projectors = app.state.get("projectors", [])
    if not projectors:
        raise ConfigurationError(f"{args.target} runs no projector (Projector(...).attach(app))")

    async def act() -> int:
        if args.action == "list":
            for projector in projectors:
                for name in projector.projections:
                    sys.stdout.write(f"{name}\t{await projector.position(name)}\n")
            return 0
        chosen = [projector for projector in projectors if args.name in projector.projections]
        if not chosen:
            names = sorted(name for projector in projectors for name in projector.projections)
            raise ConfigurationError(f"no projection {args.name!r}; there are: {', '.join(names)}")
        applied = await chosen[0].rebuild(args.name)
        sys.stdout.write(f"{args.name}: rebuilt from {applied} events\n")
        return 0

    return asyncio.run(act())


def _sagas(args: argparse.Namespace) -> int:
    """List an app's sagas, newest first, or show one (``Sagas(...).attach(app)``)."""
    import asyncio

    import msgspec

    app = load_app(args.target)
    runners = app.state.get("sagas", [])
    if not runners:
        raise ConfigurationError(f"{args.target} runs no sagas (Sagas(...).attach(app))")

    async def act() -> int:
        runner = runners[0]
        if args.action == "show":
            sys.stdout.write(msgspec.json.encode(await runner.get(args.id)).decode() + "\n")
            return 0
        for state in await runner.list(args.limit):
            failure = f"\t{state.error}" if state.error else ""
            sys.stdout.write(f"{state.id}\t{state.name}\t{state.status}\tstep {state.step}{failure}\n")
        return 0

    return asyncio.run(act())


def _grpc_compile(args: argparse.Namespace) -> int:
    try:
        from grpc_tools import protoc
    except ImportError:
        raise ConfigurationError("cello grpc-compile needs grpcio-tools: pip install 'cello[grpc]'") from None
    import importlib.resources

    for proto in args.protos:
        if not os.path.isfile(proto):
            raise ConfigurationError(f"no such .proto file: {proto}")
    out = args.out or os.path.dirname(os.path.abspath(args.protos[0]))
    includes = {os.path.dirname(os.path.abspath(proto)) for proto in args.protos} | set(args.include or ())
    bundled = str(importlib.resources.files("grpc_tools") / "_proto")  # google/protobuf/*.proto
    argv = ["protoc", f"-I{bundled}", *(f"-I{path}" for path in sorted(includes)), f"--python_out={out}",
            f"--pyi_out={out}", f"--grpc_python_out={out}",
            *(os.path.abspath(proto) for proto in args.protos)]  # fmt: skip
    code = protoc.main(argv)
    if code != 0:
        raise ConfigurationError(f"protoc failed (exit status {code}); its message is above")
    return 0


def _routes(args: argparse.Namespace) -> int:
    app = load_app(args.target)
    rows = [("METHODS", "PATH", "NAME", "HANDLER")]
    for route in app.router:
        handler = route.handler
        where = f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', route.name)}"
        rows.append((",".join(route.methods), route.path, str(route.name), where))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cello", description="Run and inspect Cello applications.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="serve an app: cello run module:app", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    run.add_argument("target", help="module:attribute of the App (default attribute: app)")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    run.add_argument("--port", type=int, default=8000, help="port to listen on")
    run.add_argument("--workers", type=int, default=1, help="worker processes (cluster mode when > 1)")
    run.add_argument("--http", choices=["auto", "1", "2"], default="auto", help="HTTP/1.1, HTTP/2 or both")
    run.add_argument("--http3", action="store_true", help="also serve HTTP/3 over QUIC (hypercorn + aioquic)")
    run.add_argument("--ssl-certfile")
    run.add_argument("--ssl-keyfile")
    run.add_argument("--reload", action="store_true", help="restart workers when source files change")
    run.add_argument("--grpc-port", type=int, default=None, help="serve the app's gRPC services on this port")
    run.add_argument("--interface", choices=["rsgi", "asgi"], default=None,
                     help="granian's interface to the app (default: rsgi, or asgi for an app whose WebSocket routes "
                     "choose a subprotocol, such as GraphQL subscriptions)")  # fmt: skip
    run.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"], help="log level"
    )
    run.add_argument("--access-log", action="store_true")
    run.add_argument("--backpressure", type=int, default=None, help="max concurrent requests per worker")
    run.add_argument(
        "--max-header-size", type=int, default=64 * 1024, help="bytes of request line and headers (more: 431/414)"
    )
    run.add_argument("--header-timeout", type=float, default=10.0, help="seconds a client has to send its headers")
    run.add_argument(
        "--websocket-server", action="store_true", help="serve only the WebSocket routes, on the lean server"
    )
    run.add_argument("--ping-interval", type=float, default=20.0, help="lean WebSocket server: seconds between pings")
    run.add_argument("--ping-timeout", type=float, default=20.0, help="lean WebSocket server: silence allowed after")
    run.add_argument("--send-timeout", type=float, default=10.0, help="lean WebSocket server: time to read sends")
    run.add_argument("--handshake-timeout", type=float, default=10.0, help="lean WebSocket server: time to connect")
    run.set_defaults(func=_run)

    routes = commands.add_parser("routes", help="print the routing table of an app")
    routes.add_argument("target")
    routes.set_defaults(func=_routes)

    openapi = commands.add_parser("openapi", help="print the OpenAPI document of an app as JSON")
    openapi.add_argument("target")
    openapi.add_argument("--indent", action="store_true", help="pretty-print")
    openapi.set_defaults(func=_document)

    asyncapi = commands.add_parser("asyncapi", help="print the AsyncAPI document of an app's brokers as JSON")
    asyncapi.add_argument("target")
    asyncapi.add_argument("--indent", action="store_true", help="pretty-print")
    asyncapi.set_defaults(func=_document)

    compile_ = commands.add_parser(
        "grpc-compile", help="compile .proto files into the Python modules a gRPC service subclasses (grpcio-tools)"
    )
    compile_.add_argument("protos", nargs="+", metavar="PROTO")
    compile_.add_argument("--out", help="where the modules go (default: beside the first .proto file)")
    compile_.add_argument("--include", "-I", action="append", help="another folder .proto imports are looked up in")
    compile_.set_defaults(func=_grpc_compile)

    graphql = commands.add_parser("graphql-schema", help="print the schema (SDL) of an app's GraphQL endpoint")
    graphql.add_argument("target")
    graphql.add_argument("--path", help="the endpoint's path, when the app has several")
    graphql.set_defaults(func=_graphql_schema)

    projections = commands.add_parser("projections", help="list an app's projections, or rebuild one")
    projections.add_argument("action", choices=["list", "rebuild"])
    projections.add_argument("target")
    projections.add_argument("name", nargs="?", help="the projection to rebuild")
    projections.set_defaults(func=_projections)

    sagas = commands.add_parser("sagas", help="list an app's sagas, or show one")
    sagas.add_argument("action", choices=["list", "show"])
    sagas.add_argument("target")
    sagas.add_argument("id", nargs="?", help="the saga to show")
    sagas.add_argument("--limit", type=int, default=100, help="list: how many, newest first")
    sagas.set_defaults(func=_sagas)

    args = parser.parse_args(argv)
    if args.command == "sagas" and args.action == "show" and not args.id:
        parser.exit(2, "cello sagas show: error: name the saga to show\n")
    if args.command == "projections" and args.action == "rebuild" and not args.name:
        parser.exit(2, "cello projections rebuild: error: name the projection to rebuild\n")
    try:
        return int(args.func(args))
    except ConfigurationError as exc:  # a usage mistake deserves one line, not a traceback
        parser.exit(2, f"cello {args.command}: error: {exc}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
