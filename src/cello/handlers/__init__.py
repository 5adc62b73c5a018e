"""Turn a handler function into ``async (request) -> result``, deciding once, at startup, how to call it.

The signature is classified by ``plan.read_signature``. Handlers that take only the request and path parameters
(the common, fastest case) are called directly; the others get a compiled argument plan: extractors for
query/header/cookie/body values, form parsing, and dependency resolution (``cello.di``), with every validation
error of the request collected into one 422. Sync handlers run in the worker's bounded thread pool unless the
route or app says they never block; their dependencies are resolved on the loop first.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import typing
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from ..dto.codecs import codec_for, is_model, strip_annotated
from ..dto.errors import ValidationFailed
from ..http.exceptions import RequestValidationError
from ..http.request import Request
from ..http.response import JSON_TYPE, Response, dump_json, to_response
from ..params import UNSET
from .plan import Signature, read_signature

if TYPE_CHECKING:
    from ..routing.router import Route

Endpoint = Callable[[Request], Awaitable[Any]]

__all__ = ["Endpoint", "ThreadPool", "compile_handler"]


class ThreadPool:
    """A lazily started, bounded executor; created in the worker process that first needs it."""

    def __init__(self, max_workers: int, name: str = "cello-sync") -> None:
        self.max_workers = max_workers
        self.name = name
        self._executor: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix=self.name)
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


def compile_handler(
    route: Route,
    pool: ThreadPool,
    threadpool_default: bool,
    singletons: Mapping[str, Any] | None = None,
    *,
    encode_result: bool = True,
) -> Endpoint:
    """The route's handler as ``endpoint(request) -> result``: parameters extracted and validated, dependencies
    resolved, the result encoded into a response for its return annotation (left as it is with
    ``encode_result=False``, for callers that are not HTTP: message subscribers)."""
    from ..di import PLAIN, split_slots

    handler = route.handler
    signature = read_signature(handler, route, singletons=singletons)
    route.signature = signature
    use_pool = threadpool_default if route.threadpool is None else route.threadpool
    extractors, specials, dependencies = split_slots(signature.slots, route)
    encode = result_encoder(signature.return_annotation, route.meta.get("status_code")) if encode_result else None
    forms = [slot for slot in signature.slots if slot.source in ("form", "file")]

    direct = _direct_call(signature)
    if direct is not None and encode is None:
        return _run(direct, signature.is_async, use_pool, pool, handler)

    form_reader = None
    if forms:
        from .forms import form_reader as make_form_reader

        form_reader = make_form_reader(forms, route)

    # Dependencies without arguments or teardown (the common case) are called inline, without a resolution scope;
    # anything else (nested or generator dependencies, forms, overrides set by a test) takes the general path.
    inline_dependencies = [(name, plan.call, plan.kind == PLAIN) for name, plan in dependencies]
    calls = [plan.call for _, plan in dependencies]
    # (one dependency named twice needs the per-request cache of the general path)
    general = (
        form_reader is not None or not all(plan.simple for _, plan in dependencies) or len(set(calls)) < len(calls)
    )
    is_async = signature.is_async
    run_in_pool = pool.run

    async def endpoint(request: Request) -> Any:
        if general or (inline_dependencies and request.app.dependency_overrides):
            return await _resolved_call(request, form_reader)
        kwargs: dict[str, Any] = {}
        errors: list[Any] | None = None
        for name, extract in extractors:
            try:
                kwargs[name] = extract(request)
            except ValidationFailed as exc:
                errors = [*errors, *exc.errors] if errors else exc.errors
        if errors:
            raise RequestValidationError(errors)
        for name, source in specials:
            kwargs[name] = request if source == "request" else request.background
        for name, call, plain in inline_dependencies:
            kwargs[name] = call() if plain else await call()
        if is_async:
            result = await handler(**kwargs)
        elif use_pool:
            result = await run_in_pool(functools.partial(handler, **kwargs))
        else:
            result = handler(**kwargs)
        return result if encode is None else encode(result)

    async def _resolved_call(request: Request, read_form: Any) -> Any:
        from ..di import ResolutionScope

        scope = ResolutionScope(request.app, request)
        try:
            try:
                kwargs = await scope.arguments(extractors, specials, dependencies)
                if read_form is not None:
                    kwargs.update(await read_form(request))
            except ValidationFailed as exc:
                errors = exc.errors
                if read_form is not None and not any(e["loc"][0] in ("form", "file") for e in errors):
                    try:  # report form errors together with the others
                        await read_form(request)
                    except ValidationFailed as form_exc:
                        errors = [*errors, *form_exc.errors]
                raise RequestValidationError(errors) from None
            result = await invoke(kwargs)
        except BaseException as exc:
            if scope.stack is not None:
                await scope.close(exc)
            raise
        if scope.stack is not None:  # only generator dependencies leave teardown behind
            await scope.close()
        return result

    async def invoke(kwargs: dict[str, Any]) -> Any:
        # NOTE: the same three lines close `endpoint`, inlined there to save a coroutine on the common path
        if is_async:
            result = await handler(**kwargs)
        elif use_pool:
            result = await run_in_pool(functools.partial(handler, **kwargs))
        else:
            result = handler(**kwargs)
        return result if encode is None else encode(result)

    return endpoint


def _direct_call(signature: Signature) -> Callable[[Request], Any] | None:
    """For handlers taking only the request and unconverted path values: a plain call, no plan."""
    call = signature.call
    slots = signature.slots
    simple = all(slot.source == "request" or (slot.source == "path" and slot.passthrough) for slot in slots)
    if not simple:
        return None
    if not slots:

        def no_arguments(request: Request) -> Any:
            return call()

        return no_arguments
    if len(slots) == 1 and slots[0].source == "request":
        import inspect

        parameter = inspect.signature(call).parameters[slots[0].name]
        if parameter.kind is not parameter.KEYWORD_ONLY:
            return call  # the common case: the request as the only argument
    request_names = [slot.name for slot in slots if slot.source == "request"]
    param_names = [(slot.name, slot.key) for slot in slots if slot.source == "path"]

    def keywords(request: Request) -> Any:
        kwargs: dict[str, Any] = dict.fromkeys(request_names, request)
        params = request.params
        for name, key in param_names:
            kwargs[name] = params[key]
        return call(**kwargs)

    return keywords


def _run(call: Callable[[Request], Any], is_async: bool, use_pool: bool, pool: ThreadPool, handler: Any) -> Endpoint:
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


def result_encoder(annotation: Any, status_code: int | None = None) -> Callable[[Any], Any] | None:
    """How results become responses when the route says more than "convert by type".

    A return annotation naming a DTO (or a list of them) serializes results through its codec; a result of
    another shape (a dict for a Struct, say) is first converted into the annotated type, which both validates it
    and drops undeclared fields. ``status_code`` (a route option) is the status of results that are not
    responses already. Responses pass through untouched.
    """
    plain = strip_annotated(annotation)
    origin = typing.get_origin(plain)
    typed = annotation is not UNSET and (
        is_model(plain) or (origin in (list, tuple, set) and any(is_model(a) for a in typing.get_args(plain)))
    )
    if not typed:
        if status_code is None:
            return None

        def with_status(result: Any) -> Any:
            if isinstance(result, (Response, tuple)):
                return result
            response = to_response(result)
            response.status = status_code
            return response

        return with_status
    codec = codec_for(annotation)
    model = plain if isinstance(plain, type) else None
    headers = [("content-type", JSON_TYPE)]

    status = status_code or 200

    def encode(result: Any) -> Any:
        if result is None or isinstance(result, Response):
            return result
        if model is None or not isinstance(result, model):
            try:
                result = codec.convert(result, ("response",))
            except ValidationFailed:
                # another model's instance (a UserIn where a UserOut is declared, a Struct for a pydantic model):
                # as plain data it converts, undeclared fields dropped; data that still does not fit stays an error
                result = codec.convert(orjson.loads(dump_json(result)), ("response",))
        response = Response(None, status)
        response.body = codec.encode_json(result)
        response.raw_headers = list(headers)
        return response

    return encode
