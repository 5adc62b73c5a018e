"""Compile the router's segment tree into one Python function, once, when the app starts.

Walking the tree node by node costs a call, a loop and a converter call per segment (~1.5 µs for a five-segment
path here). The generated function does the same depth-first search as ``search`` below — literal segments
first, then parameters (typed before plain), then a catch-all, backtracking on a dead end — as straight-line
``if`` statements in a single function: literals are compared inline (bisected when a node has many), the common
converters are inlined, and nothing is called per segment. Trees too deep to compile fall back to ``search``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .converters import Converter, _to_int, _to_str

if TYPE_CHECKING:
    from .router import MethodMap, _Node

Match = tuple[Any, dict[str, Any]]
# (path, method) -> (methods[method], params) | None: the route itself (a 405 route for a known path)
Matcher = Callable[[str, str], "Match | None"]

_MISS: Any = object()
# a node with more literal children than this finds the right one by bisection (string comparisons) instead of
# testing them one by one
_INLINE_LITERALS = 4
# Python allows 100 indentation levels; a tree needing more falls back to the walking matcher
_MAX_INDENT = 90
_MAX_DEPTH = 32


def search(node: _Node, segments: list[str], index: int, params: dict[str, Any]) -> MethodMap | None:
    """The reference matcher: a plain recursive walk. ``params`` receives the values of the winning branch."""
    if index == len(segments):
        return node.methods
    segment = segments[index]
    child = node.children.get(segment)
    if child is not None:
        found = search(child, segments, index + 1, params)
        if found is not None:
            return found
    if segment:
        for name, convert, _typed, param_child in node.params:
            try:
                value = convert(segment)
            except ValueError:
                continue
            deeper: dict[str, Any] = {}
            found = search(param_child, segments, index + 1, deeper)
            if found is not None:
                params[name] = value
                params.update(deeper)
                return found
    if node.catchall is not None:
        name, methods = node.catchall
        params[name] = "/".join(segments[index:])
        return methods
    return None


def compile_matcher(root: _Node) -> Matcher:
    """A function ``(path, method) -> (route, params) | None`` equivalent to ``search`` from the root."""
    if _depth(root) > _MAX_DEPTH:
        return _searching_matcher(root)
    generator = _Generator()
    body = ["def match(path, method):", "    segs = path.split('/')", "    n = len(segs)"]
    generator.emit(root, 1, [], body, 1)
    body.append("    return None")
    if generator.max_indent > _MAX_INDENT:
        return _searching_matcher(root)
    namespace = generator.namespace
    exec(compile("\n".join(body), "<cello router>", "exec"), namespace)  # noqa: S102 - built from route templates
    matcher: Matcher = namespace["match"]
    return matcher


def _searching_matcher(root: _Node) -> Matcher:
    def match(path: str, method: str) -> Match | None:
        params: dict[str, Any] = {}
        methods = search(root, path.split("/")[1:], 0, params)
        return None if methods is None else (methods[method], params)

    return match


def _depth(node: _Node) -> int:
    below = [_depth(child) for child in node.children.values()]
    below += [_depth(child) for *_, child in node.params]
    return 1 + max(below, default=0)


def _safe(convert: Converter) -> Callable[[str], Any]:
    """The converter returning a marker instead of raising, so generated code needs no try blocks."""

    def call(segment: str) -> Any:
        try:
            return convert(segment)
        except ValueError:
            return _MISS

    return call


class _Generator:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"_MISS": _MISS}
        self.max_indent = 0
        self._count = 0

    def constant(self, value: Any, prefix: str) -> str:
        self._count += 1
        name = f"_{prefix}{self._count}"
        self.namespace[name] = value
        return name

    def emit(self, node: _Node, depth: int, bound: list[tuple[str, str]], out: list[str], indent: int) -> None:
        """Code that returns a match for ``node`` at segment ``depth`` (or falls through), params in ``bound``."""
        self.max_indent = max(self.max_indent, indent + 1)
        pad = "    " * indent
        start = len(out)
        if node.methods is not None:
            out.append(f"{pad}if n == {depth}:")
            out.append(f"{pad}    return {self.constant(node.methods, 'm')}[method], {_params(bound)}")
        if node.children or node.params or node.catchall is not None:
            out.append(f"{pad}if n > {depth}:")
            inner = pad + "    "
            segment = f"s{depth}"
            out.append(f"{inner}{segment} = segs[{depth}]")
            if node.children:
                self._literals(sorted(node.children), node, depth, bound, out, indent + 1)
            if node.params:
                out.append(f"{inner}if {segment}:")
                for position, (name, convert, _typed, child) in enumerate(node.params):
                    self._parameter(name, convert, child, depth, position, bound, out, indent + 2)
            if node.catchall is not None:
                name, methods = node.catchall
                rest = f"'/'.join(segs[{depth}:])"
                out.append(f"{inner}return {self.constant(methods, 'm')}[method], {_params([*bound, (name, rest)])}")
        if len(out) == start:
            out.append(f"{pad}pass")

    def _literals(
        self, literals: list[str], node: _Node, depth: int, bound: list[tuple[str, str]], out: list[str], indent: int
    ) -> None:
        """Equality tests for a few literals; for more, a binary search on the sorted ones, then equality."""
        pad = "    " * indent
        segment = f"s{depth}"
        if len(literals) <= _INLINE_LITERALS:
            for literal in literals:
                out.append(f"{pad}if {segment} == {literal!r}:")
                self.emit(node.children[literal], depth + 1, bound, out, indent + 1)
            return
        middle = len(literals) // 2
        out.append(f"{pad}if {segment} < {literals[middle]!r}:")
        self._literals(literals[:middle], node, depth, bound, out, indent + 1)
        out.append(f"{pad}else:")
        self._literals(literals[middle:], node, depth, bound, out, indent + 1)

    def _parameter(
        self,
        name: str,
        convert: Converter,
        child: _Node,
        depth: int,
        position: int,
        bound: list[tuple[str, str]],
        out: list[str],
        indent: int,
    ) -> None:
        pad = "    " * indent
        segment = f"s{depth}"
        if convert is _to_str:
            self.emit(child, depth + 1, [*bound, (name, segment)], out, indent)
            return
        variable = f"v{depth}_{position}"
        if convert is _to_int:
            out.append(f"{pad}if {segment}.isdigit() and {segment}.isascii():")
            out.append(f"{pad}    {variable} = int({segment})")
        else:
            out.append(f"{pad}{variable} = {self.constant(_safe(convert), 'c')}({segment})")
            out.append(f"{pad}if {variable} is not _MISS:")
        self.emit(child, depth + 1, [*bound, (name, variable)], out, indent + 1)


def _params(bound: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{name!r}: {variable}" for name, variable in bound) + "}"
