"""Turn a handler function into ``async (request) -> result``, deciding once how to call it.

The signature is read at startup. A parameter named ``request`` (or annotated ``Request``) receives the request;
a parameter named like a path parameter receives its converted value. Sync handlers run in the worker's
bounded thread pool unless the route or app says they never block.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..http.exceptions import ConfigurationError
from ..http.request import Request
from ..routing.router import Route

Endpoint = Callable[[Request], Awaitable[Any]]


class ThreadPool:
    """A lazily started, bounded executor; created in the worker process that first needs it."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="cello-sync")
        return self._executor

    async def run(self, func: Callable[..., Any], *args: Any) -> Any:
        # the copied context carries contextvars (request id, tracing) into the worker thread
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(context.run, func, *args))

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _argument_plan(route: Route) -> list[tuple[str, str]]:
    """For each parameter: ("request", "") or ("param", name)."""
    plan: list[tuple[str, str]] = []
    try:
        signature = inspect.signature(route.handler)
    except (TypeError, ValueError):
        return [("request", "")]
    parameters = [p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for parameter in parameters:
        annotation = parameter.annotation
        is_request = parameter.name == "request" or annotation == "Request"
        if isinstance(annotation, type) and issubclass(annotation, Request):
            is_request = True
        # Flask habit: a lone positional parameter under another name (`req`) is the request too
        if len(parameters) == 1 and parameter.default is parameter.empty and parameter.name not in route.param_names:
            is_request = parameter.kind is not parameter.KEYWORD_ONLY or is_request
        if is_request:
            plan.append(("request", parameter.name))
        elif parameter.name in route.param_names:
            plan.append(("param", parameter.name))
        elif parameter.default is not parameter.empty:
            continue
        else:
            raise ConfigurationError(
                f"{route.name}() at {route.path}: cannot supply parameter {parameter.name!r} "
                f"(use `request`, or a path parameter named in the route)"
            )
    return plan


def compile_handler(route: Route, pool: ThreadPool, threadpool_default: bool) -> Endpoint:
    handler = route.handler
    plan = _argument_plan(route)
    # an instance with an `async def __call__` is an async handler too
    is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(type(handler).__call__)
    use_pool = threadpool_default if route.threadpool is None else route.threadpool

    if len(plan) == 1 and plan[0][0] == "request" and not _is_keyword_only(handler, plan[0][1]):
        call: Callable[[Request], Any] = handler  # the common case: the request as the only argument
    elif not plan:

        def call(request: Request) -> Any:
            return handler()
    else:
        call = _keyword_caller(handler, plan)

    if is_async:
        if call is handler:
            return handler  # type: ignore[no-any-return]

        async def run_async(request: Request) -> Any:
            return await call(request)

        return run_async

    if use_pool:
        run_in_pool = pool.run

        async def run_pooled(request: Request) -> Any:
            return await run_in_pool(call, request)

        return run_pooled

    async def run_inline(request: Request) -> Any:
        return call(request)

    return run_inline


def _is_keyword_only(handler: Callable[..., Any], name: str) -> bool:
    parameter = inspect.signature(handler).parameters[name]
    return parameter.kind is parameter.KEYWORD_ONLY


def _keyword_caller(handler: Callable[..., Any], plan: list[tuple[str, str]]) -> Callable[[Request], Any]:
    request_names = [name for kind, name in plan if kind == "request"]
    param_names = [name for kind, name in plan if kind == "param"]

    def call(request: Request) -> Any:
        kwargs = dict.fromkeys(request_names, request)
        params = request.params
        for name in param_names:
            kwargs[name] = params[name]
        return handler(**kwargs)

    return call
