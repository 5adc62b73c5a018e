"""Testing helpers: an in-process client (sync and async, httpx API) and a live-server runner.

``TestClient(app)`` drives the app through its ASGI face inside this process and always runs its startup and
shutdown. ``LiveServer`` starts a real server (granian, uvicorn or hypercorn) on a free loopback port, waits
until it answers, and always stops it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal

import httpx

from .app import App

__all__ = ["AsyncTestClient", "LiveServer", "TestClient", "free_port"]


class AsyncTestClient(httpx.AsyncClient):
    """``async with AsyncTestClient(app) as client: await client.get("/")``."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        base_url: str = "http://testserver",
        client: tuple[str, int] = ("127.0.0.1", 50000),
        **kwargs: Any,
    ) -> None:
        self.app = app
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
            body = await response.aread()
            return httpx.Response(
                response.status_code, headers=response.headers, content=body, extensions=response.extensions
            )

        return self._portal.run(call())  # type: ignore[no-any-return]


class TestClient(httpx.Client):
    """``with TestClient(app) as client: client.get("/")`` — startup on entry (or first request), shutdown on exit."""

    __test__ = False

    def __init__(
        self,
        app: App,
        base_url: str = "http://testserver",
        client: tuple[str, int] = ("127.0.0.1", 50000),
        **kwargs: Any,
    ) -> None:
        self.app = app
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

    def _stop(self) -> None:
        """Run the app's shutdown on the client's loop, then end that loop's thread (idempotent)."""
        if self._portal.loop.is_running():
            try:
                self._portal.run(self.app.shutdown())
            finally:
                self._portal.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


ServerName = Literal["granian", "granian-asgi", "uvicorn", "hypercorn"]


class LiveServer:
    """A real server for ``target`` on a free loopback port; ``with LiveServer("pkg.mod:app") as url: ...``.

    ``target`` is an import string (run in a subprocess through ``cello run``, uvicorn or hypercorn) or an App
    (run by ``app.run`` in a forked process). ``extra_args`` go to the server command line.
    """

    def __init__(
        self,
        target: str | App,
        server: ServerName = "granian",
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        extra_args: Sequence[str] = (),
        scheme: str = "http",
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        ready_path: str = "/",
        timeout: float = 20.0,
    ) -> None:
        self.target = target
        self.server = server
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.extra_args = list(extra_args)
        self.scheme = scheme
        self.env = env
        self.cwd = cwd
        self.ready_path = ready_path
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._forked: Any = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        if self._process is not None:
            return self._process.pid
        return self._forked.pid if self._forked is not None else None

    def command(self) -> list[str]:
        assert isinstance(self.target, str)
        address = ["--host", self.host, "--port", str(self.port)]
        if self.server in ("granian", "granian-asgi"):
            interface = "asgi" if self.server == "granian-asgi" else "rsgi"
            return [
                sys.executable,
                "-m",
                "cello",
                "run",
                self.target,
                *address,
                "--workers",
                str(self.workers),
                "--interface",
                interface,
                *self.extra_args,
            ]
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
        if isinstance(self.target, App):
            context = multiprocessing.get_context("fork")
            self._forked = context.Process(
                target=_serve_forked,
                args=(self.target, self.host, self.port, self.workers, self.extra_args),
                daemon=False,
            )
            self._forked.start()
        else:
            env = {**os.environ, **(self.env or {})}
            self._process = subprocess.Popen(
                self.command(),
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                output = self._process.stdout.read().decode(errors="replace") if self._process.stdout else ""
                raise RuntimeError(f"server exited with {self._process.returncode}:\n{output}")
            try:
                # the test servers use throwaway certificates: readiness only needs an answer
                httpx.get(self.url + self.ready_path, verify=False, timeout=1.0)  # noqa: S501
                return
            except httpx.HTTPError as exc:
                last_error = exc
                time.sleep(0.05)
        raise TimeoutError(f"server at {self.url} did not answer within {self.timeout}s: {last_error}")

    def stop(self) -> str:
        """Stop the server (and its workers); returns what it printed (subprocess servers)."""
        output = ""
        if self._process is not None:
            process, self._process = self._process, None
            _kill_group(process.pid, signal.SIGTERM)
            try:
                out, _ = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid, signal.SIGKILL)
                out, _ = process.communicate()
            output = out.decode(errors="replace") if out else ""
        if self._forked is not None:
            forked, self._forked = self._forked, None
            if forked.is_alive():
                _kill_group(forked.pid, signal.SIGINT)
                forked.join(10)
            if forked.is_alive():
                _kill_group(forked.pid, signal.SIGKILL)
                forked.join()
        return output

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _serve_forked(app: App, host: str, port: int, workers: int, extra: list[str]) -> None:
    os.setsid()
    app.run(host=host, port=port, workers=workers, log_level="warning")
