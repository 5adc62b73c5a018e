"""Serving a directory: ``app.static("/static", "public")`` (also on blueprints).

Files go out through the engine's zero-copy file call with ETag/Last-Modified (→ 304), Range (→ 206) and a
content type from the file name. Anything that would leave the directory — ``..`` segments (also
percent-encoded, which the engine has decoded by now), absolute paths, backslashes, NUL bytes, or symlinks
pointing outside the root — is answered 404, never 403, so the directory's layout is not revealed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .http.exceptions import ConfigurationError, NotFound
from .http.response import FileResponse


def static_handler(directory: str | os.PathLike[str], index: str | None = "index.html",
                   follow_symlinks: bool = True) -> Any:  # fmt: skip
    """A handler serving files below ``directory`` for a ``{path:path}`` route.

    ``follow_symlinks``: follow symlinks that stay inside the root (those leading out are always refused).
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise ConfigurationError(
            f"static directory {os.fspath(directory)!r} does not exist (a relative path is read from the working "
            f"directory, {os.getcwd()})"
        )
    root_text = str(root)

    # NOTE: a plain function run inline on the loop: resolving and stat-ing a local path are cached metadata
    # syscalls (microseconds), far cheaper than a thread hop; the file's bytes go out through the engine.
    def serve_static(request: Any, path: str) -> FileResponse:
        if "\x00" in path or "\\" in path or path.startswith("/"):
            raise NotFound()
        parts = path.split("/")
        if any(part in ("..", ".") for part in parts):
            raise NotFound()
        candidate = os.path.join(root_text, *[part for part in parts if part])
        real = os.path.realpath(candidate)
        if real != root_text and not real.startswith(root_text + os.sep):
            raise NotFound()  # a symlink (or anything else) that resolves outside the root
        if not follow_symlinks and real != os.path.abspath(candidate):
            raise NotFound()  # a symlink inside the root, refused unless follow_symlinks=True
        try:
            stat = os.stat(real)
        except OSError:
            raise NotFound() from None
        if os.path.isdir(real):
            if index is None:
                raise NotFound()
            real = os.path.join(real, index)
            try:
                stat = os.stat(real)
            except OSError:
                raise NotFound() from None
            if not os.path.isfile(real):
                raise NotFound()
        elif not os.path.isfile(real):
            raise NotFound()
        return FileResponse(real, stat_result=stat)

    return serve_static
