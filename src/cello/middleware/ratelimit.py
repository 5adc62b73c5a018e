"""Rate limiting: sliding window, token bucket, and adaptive limits that tighten as the machine gets busy.

``app.enable_rate_limit(RateLimitConfig(requests=100, window=60))`` or ``app.use(RateLimit(...))``; per route,
``@app.get(path, middleware=[RateLimit(requests=5, window=1, name="login")])``. Clients are told where they stand
with the IETF draft's ``RateLimit`` (``limit=100, remaining=42, reset=30``) and ``RateLimit-Policy`` headers;
a refused request gets 429 problem+json with ``Retry-After``.

Keys: ``"ip"`` (the client address: the socket peer, or X-Forwarded-For only from configured trusted proxies),
``"user"`` (an authenticated user from ``request.context``, else the address), ``"api_key"`` (a header), or any
function of the request. State lives in a store: the memory store (per worker) by default, a ``RedisStore`` to
share one budget between workers and machines. When the store is unreachable the limiter fails open (lets the
request through, logging it) unless ``fail_open=False``, in which case it answers 503.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..http.exceptions import ConfigurationError, HTTPException
from ..http.response import ProblemResponse, Response
from ..stores.base import Store, StoreUnavailable, WindowResult
from ..stores.memory import MemoryStore
from . import _metrics
from ._types import CallNext

logger = logging.getLogger("cello.ratelimit")

KeyFunction = Callable[[Any], "str | None"]


@dataclass
class RateLimitConfig:
    """``requests`` per ``window`` seconds, per key.

    ``algorithm``: ``"sliding_window"`` (smooth; no burst at window edges) or ``"token_bucket"`` (allows bursts up
    to ``burst``, refilled at requests/window per second). ``key``: ``"ip"``, ``"user"``, ``"api_key"`` or a
    function. ``api_key_header``: where ``"api_key"`` looks. ``store``: where counts live (default: memory).
    ``fail_open``: let requests through when the store is down (default) or answer 503.
    ``headers``: ``"combined"`` (the IETF draft's ``RateLimit: limit=.., remaining=.., reset=..`` and
    ``RateLimit-Policy``), ``"separate"`` (``RateLimit-Limit``, ``-Remaining``, ``-Reset``, ``-Policy``) or False.
    ``exempt_paths``: never limited (health checks, metrics). ``name``: the budget's name in the store; limiters
    with the same name and key share a budget. ``per_route``: a separate budget per route template.
    """

    requests: int = 100
    window: float = 60.0
    algorithm: Literal["sliding_window", "token_bucket"] = "sliding_window"
    burst: int | None = None
    key: Literal["ip", "user", "api_key"] | KeyFunction = "ip"
    api_key_header: str = "x-api-key"
    store: Store | None = None
    fail_open: bool = True
    headers: bool | Literal["combined", "separate"] = "combined"
    exempt_paths: tuple[str, ...] = ()
    name: str | None = None
    per_route: bool = False


@dataclass
class AdaptiveRateLimitConfig(RateLimitConfig):
    """A limit that falls from ``base_requests`` toward ``min_requests`` as CPU or memory use passes its threshold.

    Usage is sampled with psutil at most every ``sample_interval`` seconds (never blocking a request). Past a
    threshold the limit drops in proportion to how far usage has gone toward 100%: at full CPU or memory it is
    ``min_requests``.
    """

    base_requests: int = 1000
    cpu_threshold: float = 0.8
    memory_threshold: float = 0.9
    min_requests: int = 100
    sample_interval: float = 1.0

    def __post_init__(self) -> None:
        self.requests = self.base_requests


class LoadSampler:
    """CPU and memory use as fractions, refreshed at most every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        try:
            import psutil
        except ImportError:
            raise ConfigurationError("adaptive rate limiting needs psutil: pip install 'cello[adaptive]'") from None
        self._psutil = psutil
        self.interval = interval
        self._at = -math.inf
        self.cpu = 0.0
        self.memory = 0.0
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def sample(self) -> tuple[float, float]:
        now = time.monotonic()
        if now - self._at >= self.interval:
            self._at = now
            self.cpu = self._psutil.cpu_percent(interval=None) / 100
            self.memory = self._psutil.virtual_memory().percent / 100
        return self.cpu, self.memory


class RateLimit:
    """The rate-limit middleware. ``RateLimit(config)`` or ``RateLimit(requests=..., window=..., ...)``."""

    # the framework's own endpoints (metrics, health, OpenAPI, static files) are left alone (cello.dispatch)
    framework_routes = False

    def __init__(self, config: RateLimitConfig | None = None, **options: Any) -> None:
        config = config or RateLimitConfig(**options)
        if config.requests < 1 or config.window <= 0:
            raise ConfigurationError("a rate limit needs requests >= 1 and window > 0")
        if config.algorithm not in ("sliding_window", "token_bucket"):
            raise ConfigurationError(f"unknown rate-limit algorithm {config.algorithm!r}")
        self.config = config
        self.store = config.store or MemoryStore()
        self._memory = self.store if isinstance(self.store, MemoryStore) else None
        self.name = config.name or f"{config.algorithm}:{config.requests}/{config.window:g}"
        self.key_of = _key_function(config)
        self.exempt = frozenset(config.exempt_paths)
        self._policy_window = f";w={config.window:g}"
        # read per request: plain attributes, not the config dataclass
        self._requests = config.requests
        self._limit_text = str(config.requests)
        self._policy_header = ("ratelimit-policy", self._limit_text + self._policy_window)
        self._per_route = config.per_route
        self._headers = config.headers
        # the memory store answers synchronously; with a fixed limit the hit is one plain call
        self._inline: Callable[[str, int, float], WindowResult] | None = None
        self._inline_rate = config.window
        if self._memory is not None and not isinstance(config, AdaptiveRateLimitConfig):
            if config.algorithm == "sliding_window":
                self._inline = self._memory.sliding_window_now
            elif config.burst is None:
                self._inline = self._memory.token_bucket_now
                self._inline_rate = config.requests / config.window
        self._key_prefix = f"rl:{self.name}:"
        self.sampler: LoadSampler | None = None
        if isinstance(config, AdaptiveRateLimitConfig):
            if not 0 < config.min_requests <= config.base_requests:
                raise ConfigurationError("adaptive limits need 0 < min_requests <= base_requests")
            self.sampler = LoadSampler(config.sample_interval)

    def current_limit(self) -> int:
        """The limit in force now (the adaptive one moves with load)."""
        config = self.config
        if self.sampler is None or not isinstance(config, AdaptiveRateLimitConfig):
            return config.requests
        cpu, memory = self.sampler.sample()
        pressure = max(_excess(cpu, config.cpu_threshold), _excess(memory, config.memory_threshold))
        span = config.base_requests - config.min_requests
        return max(config.min_requests, round(config.base_requests - span * pressure))

    async def hit(self, key: str) -> WindowResult:
        config = self.config
        limit = self.current_limit()
        memory = self._memory
        if config.algorithm == "sliding_window":
            if memory is not None:
                return memory.sliding_window_now(key, limit, config.window)
            return await self.store.sliding_window(key, limit, config.window)
        capacity = config.burst or limit
        rate = limit / config.window
        if memory is not None:
            return memory.token_bucket_now(key, capacity, rate)
        return await self.store.token_bucket(key, capacity, rate)

    @property
    def uses_hooks(self) -> bool:
        """With the memory store and a fixed limit every step is synchronous: enter/leave serve (see base)."""
        return self._inline is not None

    def enter(self, request: Any) -> Any:
        if self.exempt and request.path in self.exempt:
            return None
        client = self.key_of(request)
        if client is None:
            return None
        key = self._key_prefix
        if self._per_route and request.route is not None:
            key += request.route.path + ":"
        assert self._inline is not None
        result = self._inline(key + client, self._requests, self._inline_rate)
        if not result.allowed:
            return self._headed(self._refusal(request, result), result)
        return result

    def leave(self, request: Any, response: Response, result: Any) -> Response:
        return response if result is None else self._headed(response, result)

    def _refusal(self, request: Any, result: WindowResult) -> Response:
        _metrics.rate_limited(self.name)
        retry = str(max(1, math.ceil(result.retry_after)))
        error = HTTPException(429, "Too many requests; slow down.", headers={"retry-after": retry})
        return ProblemResponse.from_exception(error, request.path)

    async def __call__(self, request: Any, call_next: CallNext) -> Response:
        if self.exempt and request.path in self.exempt:
            return await call_next(request)
        client = self.key_of(request)
        if client is None:
            return await call_next(request)
        key = self._key_prefix
        if self._per_route and request.route is not None:
            key += request.route.path + ":"
        try:
            if self._inline is not None:  # the memory store, fixed limit: no await, no coroutine
                result = self._inline(key + client, self._requests, self._inline_rate)
            else:
                result = await self.hit(key + client)
        except StoreUnavailable as exc:
            if self.config.fail_open:
                logger.warning("rate-limit store unavailable, letting %s %s through: %s", request.method,
                               request.path, exc)  # fmt: skip
                return await call_next(request)
            error = HTTPException(503, "The rate limiter cannot reach its store.", headers={"retry-after": "1"})
            return ProblemResponse.from_exception(error, request.path)
        if not result.allowed:
            return self._headed(self._refusal(request, result), result)
        return self._headed(await call_next(request), result)

    def _headed(self, response: Response, result: WindowResult) -> Response:
        """Tell the client where it stands."""
        headers = self._headers
        if headers:
            limit = result.limit
            if limit == self._requests:  # the fixed limit: its texts are made once
                text, policy = self._limit_text, self._policy_header
            else:
                text = str(limit)
                policy = ("ratelimit-policy", text + self._policy_window)
            reset = math.ceil(result.reset_after)
            if headers == "separate":
                response.raw_headers.extend((
                    ("ratelimit-limit", text),
                    ("ratelimit-remaining", str(result.remaining)),
                    ("ratelimit-reset", str(reset)),
                    policy,
                ))  # fmt: skip
            else:  # the current IETF draft's form
                response.raw_headers.extend(
                    (("ratelimit", f"limit={text}, remaining={result.remaining}, reset={reset}"), policy)
                )
        return response


def _excess(usage: float, threshold: float) -> float:
    if usage <= threshold or threshold >= 1:
        return 0.0
    return min(1.0, (usage - threshold) / (1 - threshold))


def _key_function(config: RateLimitConfig) -> KeyFunction:
    key = config.key
    if callable(key):
        return key
    if key == "ip":
        return _client_address
    if key == "user":
        return _user_or_address
    if key == "api_key":
        header = config.api_key_header.lower()

        def api_key(request: Any) -> str | None:
            value = request.header(header)
            return "key:" + value if value else _client_address(request)

        return api_key
    raise ConfigurationError(f"unknown rate-limit key {key!r}: use 'ip', 'user', 'api_key' or a function")


def _client_address(request: Any) -> str | None:
    if not request.app.config.trusted_proxies:
        # the socket peer as the engine reports it, "host:port": the host is all a key needs, no parsing
        peer = request._peer
        return "ip:" + peer.rpartition(":")[0] if peer else None
    client = request.client  # behind a trusted proxy: the forwarded client
    return "ip:" + client.host if client is not None else None


def _user_or_address(request: Any) -> str | None:
    context = request.context
    user = context.get("user")
    if user is None:
        claims = context.get("jwt_claims")
        user = claims.get("sub") if isinstance(claims, dict) else None
    if user is not None:
        return "user:" + str(getattr(user, "id", user))
    return _client_address(request)
