"""Background tasks: work a handler schedules to run after its response has been sent.

``BackgroundTasks`` is injected into handlers (and dependencies) by annotation, and reachable anywhere during a
request as ``request.background``; a response may also carry one (``Response(..., background=tasks)``). After the
engine has handed the response over, the app's ``BackgroundRunner`` runs the tasks in order as one asyncio task:
async functions on the loop, sync ones in the thread pool. A task function whose parameters default to
``Depends(...)`` gets them resolved in a dependency scope of its own (the request's is closed by then). At most
``limit`` such batches run at once (the rest wait their turn), a failing task is logged with the request's id and
does not stop the ones after it, and at shutdown the runner waits for the running batches up to a deadline
before cancelling them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from .app import App
    from .handlers import ThreadPool
    from .http.request import Request

logger = logging.getLogger("cello.background")

__all__ = ["BackgroundRunner", "BackgroundTasks"]


class BackgroundTasks:
    """``tasks.add_task(func, *args, **kwargs)``: run ``func`` after the response is sent."""

    __slots__ = ("tasks", "cleanups")

    def __init__(self) -> None:
        self.tasks: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        # framework clean-ups (temporary upload files): they run even when the request failed
        self.cleanups: list[Callable[[], Any]] = []

    def add_task(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(func):
            raise TypeError(f"a background task must be callable, not {func!r}")
        self.tasks.append((func, args, kwargs))

    def add_cleanup(self, func: Callable[[], Any]) -> None:
        self.cleanups.append(func)

    def discard_tasks(self) -> None:
        """Drop the scheduled tasks (the request failed), keeping the clean-ups."""
        self.tasks.clear()

    def __len__(self) -> int:
        return len(self.tasks)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.cleanups)

    def __repr__(self) -> str:
        names = ", ".join(getattr(func, "__qualname__", repr(func)) for func, _, _ in self.tasks)
        return f"<BackgroundTasks [{names}]>"


class BackgroundRunner:
    """Runs an app's background tasks with bounded concurrency and drains them at shutdown."""

    def __init__(self, pool: ThreadPool, limit: int = 100, app: App | None = None) -> None:
        self.pool = pool
        self.limit = limit
        self.app = app
        self._wanted: dict[Any, list[tuple[str, Any]]] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()

    def schedule(self, *batches: BackgroundTasks | None, request: Request | None = None) -> None:
        """Run the tasks of ``batches`` (the request's, the response's) after the response went out."""
        tasks = [task for batch in batches if batch is not None for task in batch.tasks]
        cleanups = [cleanup for batch in batches if batch is not None for cleanup in batch.cleanups]
        if not (tasks or cleanups):
            return
        import asyncio

        runner = asyncio.get_running_loop().create_task(self._run(tasks, cleanups, _request_id(request)))
        self._running.add(runner)
        runner.add_done_callback(self._running.discard)

    async def _run(
        self,
        batch: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]],
        cleanups: list[Callable[[], Any]],
        request_id: str | None,
    ) -> None:
        try:
            if batch:
                await self._run_tasks(batch, request_id)
        finally:
            for cleanup in cleanups:
                try:
                    cleanup()
                except Exception:
                    logger.exception("clean-up after request %s failed", request_id)

    async def _run_tasks(
        self, batch: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]], request_id: str | None
    ) -> None:
        import asyncio
        import functools
        import inspect

        from .handlers.plan import is_async_callable

        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        async with self._semaphore:
            for func, args, kwargs in batch:
                try:
                    wanted = self._dependencies_of(func)
                    if wanted:
                        await self._run_with_dependencies(func, args, kwargs, wanted)
                    elif is_async_callable(func):
                        await func(*args, **kwargs)
                    else:
                        result = await self.pool.run(functools.partial(func, *args, **kwargs))
                        if inspect.isawaitable(result):
                            await result
                except asyncio.CancelledError:
                    logger.warning("background task %s cancelled at shutdown (request %s)", _name(func), request_id)
                    raise
                except Exception:
                    logger.exception("background task %s failed (request %s)", _name(func), request_id)

    def _dependencies_of(self, func: Callable[..., Any]) -> list[tuple[str, Any]]:
        """The ``Depends(...)`` defaults of a task function's parameters (read once per function)."""
        try:
            return self._wanted[func]
        except (KeyError, TypeError):
            pass
        import inspect

        from .params import Depends

        try:
            parameters = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):
            parameters = []  # type: ignore[assignment]
        wanted = [(p.name, p.default) for p in parameters if isinstance(p.default, Depends)]
        try:
            self._wanted[func] = wanted
        except TypeError:
            pass
        return wanted

    async def _run_with_dependencies(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], wanted: list[tuple[str, Any]]
    ) -> None:
        """Resolve the task's dependencies in a scope of its own, torn down when the task is over."""
        from .handlers.plan import is_async_callable

        assert self.app is not None
        async with self.app.dependency_scope() as deps:
            resolved = {name: await deps.resolve(marker) for name, marker in wanted if name not in kwargs}
            if is_async_callable(func):
                await func(*args, **kwargs, **resolved)
            else:
                import functools

                await self.pool.run(functools.partial(func, *args, **kwargs, **resolved))

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for running tasks, then cancel what is left."""
        if not self._running:
            return
        import asyncio

        pending = set(self._running)
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            logger.warning("%d background task batch(es) still running at shutdown were cancelled", len(still))
            await asyncio.gather(*still, return_exceptions=True)


def _request_id(request: Request | None) -> str | None:
    if request is None:
        return None
    value = request.context.get("request_id")
    return str(value) if value else request.header("x-request-id")


def _name(func: Any) -> str:
    return str(getattr(func, "__qualname__", None) or repr(func))
