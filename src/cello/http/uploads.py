"""Uploaded files, and the limits that bound a multipart body."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .datastructures import Headers

MiB = 1024 * 1024


@dataclass(frozen=True)
class MultipartLimits:
    """Bounds for one multipart body; beyond any of them the answer is 413.

    ``max_size``: the whole body. ``max_file_size``: one file. ``max_parts``: fields and files together.
    ``max_field_size``: one non-file field (held in memory). ``spool_size``: a file is kept in memory up to this
    many bytes, then moved to a temporary file on disk.
    """

    max_size: int = 100 * MiB
    max_file_size: int = 100 * MiB
    max_parts: int = 1000
    max_field_size: int = 1 * MiB
    spool_size: int = 1 * MiB


class UploadFile:
    """One file of a multipart form: ``filename``, ``content_type``, ``size``, ``headers``, and its bytes.

    The bytes live in a ``SpooledTemporaryFile`` (memory, then disk past ``spool_size``); the file is closed and
    any disk copy removed when the request is over. The async methods move disk I/O off the event loop.
    """

    __slots__ = ("filename", "content_type", "headers", "size", "file")

    def __init__(
        self,
        filename: str | None,
        content_type: str = "application/octet-stream",
        headers: Headers | None = None,
        spool_size: int = MultipartLimits.spool_size,
    ) -> None:
        self.filename = filename
        self.content_type = content_type
        self.headers = headers or Headers()
        self.size = 0
        import tempfile  # here, not at module level: `import cello` should not pay for it

        self.file: Any = tempfile.SpooledTemporaryFile(max_size=spool_size)  # noqa: SIM115 - closed by close()

    @property
    def in_memory(self) -> bool:
        return not getattr(self.file, "_rolled", True)

    def write_chunk(self, data: bytes) -> None:
        """Append while parsing (synchronous: the parser calls it; spilling to disk is one write)."""
        self.file.write(data)
        self.size += len(data)

    async def read(self, size: int = -1) -> bytes:
        return await self._io(self.file.read, size)  # type: ignore[no-any-return]

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return await self._io(self.file.seek, offset, whence)  # type: ignore[no-any-return]

    async def stream(self, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
        """The file's bytes from its current position, chunk by chunk."""
        while True:
            chunk = await self.read(chunk_size)
            if not chunk:
                return
            yield chunk

    async def save(self, path: str | os.PathLike[str]) -> int:
        """Copy the whole file to ``path``; returns the bytes written."""

        import shutil

        def copy() -> int:
            self.file.seek(0)
            with open(path, "wb") as target:
                shutil.copyfileobj(self.file, target, 1024 * 1024)
            self.file.seek(0)
            return self.size

        return await self._io(copy)  # type: ignore[no-any-return]

    async def close(self) -> None:
        self.file.close()

    def close_sync(self) -> None:
        self.file.close()

    async def _io(self, func: Any, *args: Any) -> Any:
        if self.in_memory:
            return func(*args)
        import asyncio

        return await asyncio.to_thread(func, *args)

    def __repr__(self) -> str:
        return f"UploadFile(filename={self.filename!r}, content_type={self.content_type!r}, size={self.size})"
