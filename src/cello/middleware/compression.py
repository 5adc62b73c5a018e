"""Response compression: gzip, brotli and zstd, negotiated from Accept-Encoding with q-values.

Compressed: responses of a compressible content type (text, JSON, JavaScript, XML, SVG...) at least
``minimum_size`` bytes long, and streaming responses chunk by chunk (each chunk is flushed, so streams stay
live). Left alone: responses that already have a Content-Encoding, files (sent zero-copy by the engine),
partial content, and clients that do not accept an encoding. Every compressible response gets
``Vary: Accept-Encoding``. brotli needs the ``brotli`` package, zstd the ``zstandard`` package; without them
those encodings are simply not offered.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..http.response import BYTES, STREAM, Response, add_vary
from .base import HookMiddleware

DEFAULT_TYPES = (
    "text/",
    "application/json",
    "application/problem+json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/ld+json",
    "application/manifest+json",
    "application/wasm",
    "image/svg+xml",
)


def _available() -> dict[str, Any]:
    codecs: dict[str, Any] = {"gzip": gzip}
    try:
        import brotli

        codecs["br"] = brotli
    except ImportError:
        pass
    try:
        import zstandard

        codecs["zstd"] = zstandard
    except ImportError:
        pass
    return codecs


def parse_accept_encoding(header: str) -> dict[str, float]:
    """``"gzip;q=0.8, br"`` → ``{"gzip": 0.8, "br": 1.0}`` (malformed q-values count as 0)."""
    weights: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        if not name:
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = max(0.0, min(1.0, float(value)))
                except ValueError:
                    weight = 0.0
        weights[name] = weight
    return weights


class Compression(HookMiddleware):
    """``app.enable_compression(minimum_size=500)`` / ``app.use(Compression(...))``.

    ``encodings``: server preference, best first, among ``br``, ``zstd`` and ``gzip``.
    ``content_types``: prefixes of compressible media types. ``gzip_level``, ``brotli_quality``, ``zstd_level``.
    """

    def __init__(
        self,
        minimum_size: int = 500,
        encodings: tuple[str, ...] = ("br", "zstd", "gzip"),
        content_types: tuple[str, ...] = DEFAULT_TYPES,
        gzip_level: int = 6,
        brotli_quality: int = 4,
        zstd_level: int = 3,
    ) -> None:
        available = _available()
        self.encodings = [e for e in encodings if e in available]
        if not self.encodings:
            raise ValueError(f"none of the encodings {encodings} is available")
        self.minimum_size = minimum_size
        self.content_types = content_types
        self.gzip_level = gzip_level
        self.brotli_quality = brotli_quality
        self.zstd_level = zstd_level
        self._codecs = available
        self._chosen: dict[str, str | None] = {}

    def choose(self, accept_encoding: str | None) -> str | None:
        if not accept_encoding:
            return None
        # clients send a handful of distinct Accept-Encoding values: remember the answers
        try:
            return self._chosen[accept_encoding]
        except KeyError:
            pass
        chosen = self._negotiate(accept_encoding)
        if len(self._chosen) < 256:
            self._chosen[accept_encoding] = chosen
        return chosen

    def _negotiate(self, accept_encoding: str) -> str | None:
        weights = parse_accept_encoding(accept_encoding)
        star = weights.get("*", 0.0)
        best: str | None = None
        best_weight = 0.0
        for encoding in self.encodings:  # server preference breaks ties
            weight = weights.get(encoding, star)
            if weight > best_weight:
                best, best_weight = encoding, weight
        return best

    def _compressible(self, response: Response) -> bool:
        content_type = ""
        for key, value in response.raw_headers:
            if key == "content-encoding":
                return False
            if key == "content-type":
                content_type = value.lower()
        return content_type.startswith(self.content_types)

    def leave(self, request: Any, response: Response, state: Any) -> Response:
        kind = response.kind
        if kind not in (BYTES, STREAM) or response.status in (204, 206, 304) or not self._compressible(response):
            return response
        add_vary(response, "Accept-Encoding")
        if kind == BYTES and len(response.body) < self.minimum_size:
            return response
        encoding = self.choose(request.header("accept-encoding"))
        if encoding is None:
            return response
        if kind == BYTES:
            response.body = self._compress_all(encoding, response.body)
        else:
            pool = request.app.dispatcher.pool
            response.iterator = self._compress_stream(encoding, response.iterator, pool)  # type: ignore[attr-defined]
        headers = [(k, v) for k, v in response.raw_headers if k != "content-length"]
        headers.append(("content-encoding", encoding))
        response.raw_headers[:] = headers
        return response

    def _compress_all(self, encoding: str, data: bytes) -> bytes:
        if encoding == "gzip":
            return gzip.compress(data, self.gzip_level, mtime=0)
        if encoding == "br":
            return self._codecs["br"].compress(data, quality=self.brotli_quality)  # type: ignore[no-any-return]
        return self._codecs["zstd"].ZstdCompressor(level=self.zstd_level).compress(data)  # type: ignore[no-any-return]

    def _stream_compressor(self, encoding: str) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
        """``(compress_and_flush(chunk), finish())`` for one stream."""
        if encoding == "gzip":
            gz = zlib.compressobj(self.gzip_level, zlib.DEFLATED, 31)  # 31: gzip framing
            return (lambda chunk: gz.compress(chunk) + gz.flush(zlib.Z_SYNC_FLUSH)), gz.flush
        if encoding == "br":
            br = self._codecs["br"].Compressor(quality=self.brotli_quality)
            return (lambda chunk: br.process(chunk) + br.flush()), br.finish
        zstd = self._codecs["zstd"].ZstdCompressor(level=self.zstd_level).compressobj()
        flush_block = self._codecs["zstd"].COMPRESSOBJ_FLUSH_BLOCK
        return (lambda chunk: zstd.compress(chunk) + zstd.flush(flush_block)), zstd.flush

    async def _compress_stream(self, encoding: str, source: Any, pool: Any) -> AsyncIterator[bytes]:
        from ..engine.common import close_iterator, iterate_chunks

        compress, finish = self._stream_compressor(encoding)
        chunks = iterate_chunks(source, pool)
        try:
            async for chunk in chunks:
                if chunk:
                    data = compress(chunk)
                    if data:
                        yield data
            tail = finish()
            if tail:
                yield tail
        finally:  # the client may have left: the producer's `finally` must still run
            await chunks.aclose()
            await close_iterator(source)
