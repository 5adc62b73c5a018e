"""Every Python block of the documentation (README.md and docs/*.md) is run here, page by page, in the order a
reader meets them — or carries, on the line before it, ``<!-- not run: <reason> -->`` saying why it cannot be
(it needs a service, or it is a fragment of a larger program). So no example silently rots.

Each page's blocks share one namespace, which starts as a reader's would: everything ``cello`` exports, and an
``app = App()`` for snippets that decorate routes on it. Blocks using ``await`` at the top level run in an event
loop; ``if __name__ == "__main__":`` sections do not run (nothing is served).
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python[^\n]*\n(?P<code>.*?)\n```", re.S)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>.+?) -->")


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, reason not run)`` for every Python block of ``page``."""
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        skip = NOT_RUN.search(match.group("before"))
        found.append((line, match.group("code"), skip.group("reason") if skip else None))
    return found


def test_every_page_has_its_blocks_found():
    assert sum(len(blocks(page)) for page in PAGES) > 40


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_the_examples_of_a_page_run(page, tmp_path, monkeypatch):
    import cello

    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    # a block may set variables (PROMETHEUS_MULTIPROC_DIR): it sets them in a copy, dropped afterwards
    monkeypatch.setattr(os, "environ", os.environ.copy())
    # the page's blocks run in a module of its own, registered as one: libraries that resolve a class's or a
    # function's annotations through sys.modules (Strawberry, msgspec) find its names there
    module = types.ModuleType("docs_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: dict = module.__dict__
    exec("from cello import *", namespace)
    namespace["app"] = cello.App()
    for line, code, reason in blocks(page):
        if reason is not None:
            assert len(reason) > 10, f"{page.name}:{line}: say why the example is not run"
            continue
        compiled = compile(code, f"{page.name}:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        try:
            result = eval(compiled, namespace)
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except Exception as exc:
            raise AssertionError(f"the example at {page.name}:{line} fails: {type(exc).__name__}: {exc}") from exc
