"""Testing helpers: an in-process client (sync and async, httpx API) and a live-server runner.

``TestClient(app)`` drives the app through its ASGI face inside this process and always runs its startup and
shutdown. ``LiveServer`` starts a real server (granian, uvicorn or hypercorn) on a free loopback port, waits
until it answers, and always stops it.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any, Literal

import httpx

from .app import App

__all__ = ["AsyncTestClient", "LiveServer", "TestClient", "WebSocketRefused", "WebSocketSession", "free_port"]


class AsyncTestClient(httpx.AsyncClient):
    """``async with AsyncTestClient(app) as client: await client.get("/")``.

    The app's message brokers run in memory (``Broker.in_memory``) unless ``real_brokers=True``."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        base_url: str = "http://testserver",
        client: tuple[str, int] = ("127.0.0.1", 50000),
        *,
        real_brokers: bool = False,
        **kwargs: Any,
    ) -> None:
        self.app = app
        _brokers_in_memory(app, not real_brokers)
        transport = httpx.ASGITransport(app=app, client=client)
        super().__init__(transport=transport, base_url=base_url, **kwargs)

    async def __aenter__(self) -> AsyncTestClient:
        await self.app.startup()
        await super().__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            await self.app.shutdown()
            _brokers_in_memory(self.app, False)

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        await self.app.startup()  # a no-op once started; covers use without `async with`
        return await super().send(request, **kwargs)


class _LoopThread:
    """An event loop on a background thread, so sync tests can drive the async app."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="cello-testclient", daemon=True)
        self._thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _BridgeTransport(httpx.BaseTransport):
    def __init__(self, app: App, portal: _LoopThread, client: tuple[str, int]) -> None:
        self._inner = httpx.ASGITransport(app=app, client=client)
        self._portal = portal
        self._app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            await self._app.startup()
            request.stream = httpx.ByteStream(request.read())
            response = await self._inner.handle_async_request(request)
            # the raw bytes: decoding (gzip, br) is the receiving client's job, as over a socket
            body = b"".join([chunk async for chunk in response.aiter_raw()])
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=httpx.ByteStream(body),
                extensions=response.extensions,
            )

        return self._portal.run(call())  # type: ignore[no-any-return]


class TestClient(httpx.Client):
    """``with TestClient(app) as client: client.get("/")`` — startup on entry (or first request), shutdown on exit.

    The app's message brokers run in memory (``Broker.in_memory``) unless ``real_brokers=True``."""

    __test__ = False

    def __init__(
        self,
        app: App,
        base_url: str = "http://testserver",
        client: tuple[str, int] = ("127.0.0.1", 50000),
        *,
        real_brokers: bool = False,
        **kwargs: Any,
    ) -> None:
        self.app = app
        _brokers_in_memory(app, not real_brokers)
        self._portal = _LoopThread()
        super().__init__(transport=_BridgeTransport(app, self._portal, client), base_url=base_url, **kwargs)

    def __enter__(self) -> TestClient:
        self._portal.run(self.app.startup())
        super().__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            self._stop()

    def close(self) -> None:
        if not self.is_closed:
            super().close()
        self._stop()

    def publish(self, topic: str, payload: Any, *, broker: Any = None, **options: Any) -> str:
        """Publish to one of the app's brokers (``app.include_broker``; the first unless ``broker=``) and, in memory,
        wait until every message it set going was handled: ``client.publish("orders", {...})`` then assert on the
        effects. (A real broker cannot tell: with ``real_brokers=True`` this returns once the broker has the
        message.) Returns the message id; ``options`` as ``Broker.publish`` takes them."""
        chosen = broker if broker is not None else (self.app.brokers[0] if self.app.brokers else None)
        if chosen is None:
            raise RuntimeError("the app has no broker: app.include_broker(broker)")

        async def publish_and_wait() -> str:
            message_id: str = await chosen.publish(topic, payload, **options)
            if chosen.transport.scheme == "memory":
                await chosen.settled()
            return message_id

        self._portal.run(self.app.startup())
        return self._portal.run(publish_and_wait())  # type: ignore[no-any-return]

    def websocket_connect(
        self, path: str, headers: dict[str, str] | None = None, subprotocols: Sequence[str] = ()
    ) -> WebSocketSession:
        """``with client.websocket_connect("/ws") as ws: ws.send_text("hi"); ws.receive_text()`` — in process,
        through the app's ASGI face. A refused handshake raises ``WebSocketRefused`` with its HTTP status."""
        self._portal.run(self.app.startup())
        url = self.base_url.join(path)
        merged = {**{k.lower(): v for k, v in self.headers.items() if k.lower() not in _HTTP_ONLY}}
        cookies = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if cookies:
            merged["cookie"] = cookies
        merged.update({k.lower(): v for k, v in (headers or {}).items()})
        return WebSocketSession(self.app, self._portal, url, merged, list(subprotocols))

    def _stop(self) -> None:
        """Run the app's shutdown on the client's loop, then end that loop's thread (idempotent)."""
        if self._portal.loop.is_running():
            try:
                self._portal.run(self.app.shutdown())
            finally:
                self._portal.stop()
                _brokers_in_memory(self.app, False)


def _brokers_in_memory(app: App, memory: bool) -> None:
    """Swap the app's brokers to in-memory ones for a test client, or back to the real ones after it."""
    for broker in app.brokers:
        if memory:
            broker.in_memory()
        else:
            broker.restore_transport()


_HTTP_ONLY = frozenset({"accept-encoding", "connection", "content-length", "content-type"})


class WebSocketRefused(Exception):
    """The app refused the handshake: ``status`` (401, 403, 404…) and the answer's ``body``."""

    def __init__(self, status: int, body: bytes = b"") -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


class WebSocketSession:
    """One in-process WebSocket connection (``TestClient.websocket_connect``); a context manager.

    ``receive_*`` raise ``cello.WebSocketDisconnect`` when the app closes, with its code and reason."""

    __test__ = False

    def __init__(
        self, app: App, portal: _LoopThread, url: httpx.URL, headers: dict[str, str], subprotocols: list[str]
    ) -> None:
        import queue

        self._app = app
        self._portal = portal
        self._outbox: queue.Queue[dict[str, Any]] = queue.Queue()  # app -> test
        self._inbox: asyncio.Queue[dict[str, Any]] | None = None  # test -> app, lives on the portal's loop
        self.subprotocol: str | None = None
        self.accepted_headers: list[tuple[bytes, bytes]] = []
        host = url.host or "testserver"
        raw_headers = [(b"host", host.encode())] + [(k.encode(), v.encode()) for k, v in headers.items()]
        if subprotocols:
            raw_headers.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        self._scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "wss" if url.scheme == "https" else "ws",
            "path": url.path,
            "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query,
            "headers": raw_headers,
            "client": ("127.0.0.1", 50000),
            "server": (host, url.port or 80),
            "subprotocols": subprotocols,
            "extensions": {"websocket.http.response": {}},
        }
        self._task: Any = None

    def __enter__(self) -> WebSocketSession:
        async def start() -> None:
            self._inbox = asyncio.Queue()
            await self._inbox.put({"type": "websocket.connect"})

            async def receive() -> dict[str, Any]:
                assert self._inbox is not None
                return await self._inbox.get()

            async def send(message: dict[str, Any]) -> None:
                self._outbox.put(message)

            async def run() -> None:
                try:
                    await self._app(self._scope, receive, send)
                finally:
                    self._outbox.put({"type": "app.finished"})

            self._task = asyncio.ensure_future(run())

        self._portal.run(start())
        first = self._next()
        if first["type"] == "websocket.accept":
            self.subprotocol = first.get("subprotocol")
            self.accepted_headers = list(first.get("headers") or [])
            return self
        if first["type"] == "websocket.http.response.start":
            body = b""
            while (part := self._next())["type"] == "websocket.http.response.body":
                body += part.get("body", b"")
                if not part.get("more_body"):
                    break
            self._finish()
            raise WebSocketRefused(first["status"], body)
        self._finish()
        raise WebSocketRefused(403)

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _next(self, timeout: float = 10.0) -> dict[str, Any]:
        import queue

        try:
            return self._outbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("the app sent nothing on the WebSocket") from None

    def _push(self, message: dict[str, Any]) -> None:
        assert self._inbox is not None
        self._portal.loop.call_soon_threadsafe(self._inbox.put_nowait, message)

    def send_text(self, text: str) -> None:
        self._push({"type": "websocket.receive", "text": text})

    def send_bytes(self, data: bytes) -> None:
        self._push({"type": "websocket.receive", "bytes": data})

    def send_json(self, value: Any) -> None:
        import json

        self.send_text(json.dumps(value))

    def receive(self) -> dict[str, Any]:
        """The app's next message as ASGI sent it; ``WebSocketDisconnect`` when it closed the connection."""
        from .realtime.websocket import WebSocketDisconnect

        message = self._next()
        if message["type"] in ("websocket.close", "app.finished"):
            self._outbox.put({"type": "app.finished"})  # every later receive sees the close too
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")
        return message

    def receive_text(self) -> str:
        message = self.receive()
        text = message.get("text")
        return str(text) if text is not None else bytes(message["bytes"]).decode()

    def receive_bytes(self) -> bytes:
        message = self.receive()
        data = message.get("bytes")
        return bytes(data) if data is not None else str(message["text"]).encode()

    def receive_json(self) -> Any:
        import json

        return json.loads(self.receive_text())

    def close(self, code: int = 1000) -> None:
        if self._task is not None and not self._task.done():
            self._push({"type": "websocket.disconnect", "code": code})
        self._finish()

    def _finish(self) -> None:
        task = self._task
        if task is None:
            return

        async def wait() -> None:
            # a handler that is not reading learns of the disconnect only when it next touches the socket; like
            # a server at the end of its drain, stop waiting for it after a moment
            try:
                await asyncio.wait_for(task, 1)
            except Exception:  # noqa: S110 - the app's own errors were answered (1011) and logged by it
                pass

        self._portal.run(wait())
        self._task = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


ServerName = Literal["granian", "granian-rsgi", "granian-asgi", "uvicorn", "hypercorn", "cello-ws"]


class LiveServer:
    """A real server on a free loopback port: ``with LiveServer("pkg.mod:app") as server: server.url``.

    ``target`` is one of: an import string, served in a subprocess by ``cello run`` (``server="granian"``: the
    interface it picks; ``"granian-rsgi"`` or ``"granian-asgi"``: that one), uvicorn or hypercorn, with
    ``extra_args`` appended to that command line; a command line (a list) whose ``{host}`` and ``{port}`` fields
    are filled in, e.g. a script calling ``app.run()``; or an App, served by ``app.run(**run_options)`` in a forked
    process.

    Teardown is guaranteed: a server that exits early or never answers makes ``start()`` raise *after* stopping
    it, leaving the ``with`` block stops it, and anything still running at interpreter exit is stopped then.
    ``stop()`` asks the main process to shut down (SIGTERM, so workers run their shutdown hooks), kills the whole
    process group if it has not finished within ``stop_timeout``, and returns only once no process of the group
    is left.
    """

    def __init__(
        self,
        target: str | App | Sequence[str],
        server: ServerName = "granian",
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        extra_args: Sequence[str] = (),
        run_options: dict[str, Any] | None = None,
        scheme: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        ready_path: str = "/",
        timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.target = target
        self.server = server
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.extra_args = list(extra_args)
        self.run_options = dict(run_options or {})
        if scheme is None:
            tls = "--ssl-certfile" in self.extra_args or self.run_options.get("ssl_certfile") is not None
            scheme = "https" if tls else "http"
        self.scheme = scheme
        self.env = env
        self.cwd = cwd
        self.ready_path = ready_path
        self.timeout = timeout
        self.stop_timeout = stop_timeout
        self.returncode: int | None = None
        self.pgid: int | None = None  # the main process's pid, kept after stop() so leftovers can be looked for
        self._process: subprocess.Popen[bytes] | None = None
        self._forked: Any = None
        self._log: IO[bytes] | None = None
        self._output = ""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's main process (its workers are its children, in its process group)."""
        if self._process is not None:
            return self._process.pid
        return self._forked.pid if self._forked is not None else None

    def processes(self) -> list[int]:
        """Live (non-zombie) processes of the server's process group: the main process and its workers.

        Empty after ``stop()``: that is the no-leftover-workers guarantee, and tests may assert it.
        """
        return _group_members(self.pgid) if self.pgid is not None else []

    def command(self) -> list[str]:
        if not isinstance(self.target, str):
            assert not isinstance(self.target, App), "an App target is forked, not run as a command"
            return [arg.format(host=self.host, port=self.port) for arg in self.target]
        address = ["--host", self.host, "--port", str(self.port)]
        if self.server in ("granian", "granian-rsgi", "granian-asgi"):
            # "granian": the interface cello run chooses (RSGI, or ASGI when WebSocket routes choose subprotocols)
            interface = ["--interface", self.server.removeprefix("granian-")] if "-" in self.server else []
            return [sys.executable, "-m", "cello", "run", self.target, *address, "--workers", str(self.workers),
                    *interface, *self.extra_args]  # fmt: skip
        if self.server == "cello-ws":  # the lean WebSocket server (cello.engine.wsserver)
            return [sys.executable, "-m", "cello", "run", self.target, *address, "--websocket-server", *self.extra_args]
        if self.server == "uvicorn":
            return [
                sys.executable,
                "-m",
                "uvicorn",
                self.target,
                *address,
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
                # NOTE: uvicorn trusts X-Forwarded-For from loopback by default; Cello decides that itself
                "--no-proxy-headers",
                *self.extra_args,
            ]
        bind = ["--bind", f"{self.host}:{self.port}", "--workers", str(self.workers)]
        return [sys.executable, "-m", "hypercorn", self.target, *bind, *self.extra_args]

    def start(self) -> LiveServer:
        if self.pid is not None:
            raise RuntimeError("this LiveServer is already running")
        # NOTE: output goes to a file, not a pipe: a chatty server would block once a pipe nobody reads is full
        self._log = tempfile.TemporaryFile(prefix="cello-live-")  # noqa: SIM115 - closed by stop()
        self._output = ""
        self.returncode = None
        _RUNNING.add(self)
        try:
            if isinstance(self.target, App):
                context = multiprocessing.get_context("fork")
                options = {"workers": self.workers, "log_level": "warning", **self.run_options}
                self._forked = context.Process(
                    target=_serve_forked,
                    args=(self.target, self.host, self.port, options, self._log.fileno()),
                    daemon=False,
                )
                self._forked.start()
            else:
                self._process = subprocess.Popen(
                    self.command(),
                    env={**os.environ, **(self.env or {})},
                    cwd=self.cwd,
                    start_new_session=True,  # its own process group: stop() can reach every worker
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                )
            self.pgid = self.pid
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _exit_code(self) -> int | None:
        if self._process is not None:
            return self._process.poll()
        if self._forked is not None:
            return self._forked.exitcode  # type: ignore[no-any-return]
        return None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = self._exit_code()
            if code is not None:
                raise RuntimeError(f"server exited with {code} before answering:\n{self.output()}")
            try:
                # the test servers use throwaway certificates: readiness only needs an answer
                httpx.get(self.url + self.ready_path, verify=False, timeout=1.0, trust_env=False)  # noqa: S501
                return
            except httpx.HTTPError as exc:
                last_error = exc
                time.sleep(0.05)
        raise TimeoutError(
            f"server at {self.url} did not answer within {self.timeout}s: {last_error!r}\n{self.output()}"
        )

    def output(self) -> str:
        """What the server has printed so far (stdout and stderr, every process of it)."""
        if self._log is None or self._log.closed:
            return self._output
        fd = self._log.fileno()
        # NOTE: pread leaves the offset alone; the server processes share it and keep writing at its end
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def stop(self, timeout: float | None = None) -> str:
        """Stop the server and every worker; returns what it printed. Safe to call more than once."""
        timeout = self.stop_timeout if timeout is None else timeout
        pid = self.pid
        _RUNNING.discard(self)
        try:
            if pid is not None:
                self.returncode = self._stop_main(pid, timeout)
                _reap_group(pid, timeout)
        finally:
            self._process = None
            self._forked = None
            if self._log is not None and not self._log.closed:
                self._output = self.output()
                self._log.close()
        return self._output

    def _stop_main(self, pid: int, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        if self._exit_code() is None:
            _signal(pid, signal.SIGTERM)
        while self._exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._exit_code() is None:
            _signal_group(pid, signal.SIGKILL)
            _signal(pid, signal.SIGKILL)
        if self._process is not None:
            return self._process.wait()
        self._forked.join()
        return self._forked.exitcode  # type: ignore[no-any-return]

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


_RUNNING: weakref.WeakSet[LiveServer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        server.stop(timeout=2.0)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``; zombies do not count (they hold no socket, run no code)."""
    if not os.path.isdir("/proc/self"):  # pragma: no cover - not Linux: ask the kernel whether the group exists
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue
        # after the command name: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry))
    return sorted(members)


def _reap_group(pgid: int, timeout: float) -> None:
    """Wait (bounded) for the rest of the group — workers — to go; SIGTERM, then SIGKILL, what stays."""
    deadline = time.monotonic() + timeout
    sent_term = False
    while _group_members(pgid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _signal_group(pgid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5.0
            while _group_members(pgid) and time.monotonic() < kill_deadline:
                time.sleep(0.02)
            return
        if not sent_term and remaining < timeout / 2:
            _signal_group(pgid, signal.SIGTERM)
            sent_term = True
        time.sleep(0.02)


def _serve_forked(app: App, host: str, port: int, options: dict[str, Any], log_fd: int) -> None:
    os.setsid()  # its own process group, as for the subprocess servers
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    app.run(host=host, port=port, **options)
