"""``Row``: what the database layer returns for a row — a plain dict whose columns also read as attributes."""

from __future__ import annotations

from typing import Any


class Row(dict[str, Any]):
    """A row as a dict (``row["name"]``, returnable from handlers as JSON) whose columns also read as attributes
    (``row.name``), as templates write them: ``{{ user.name }}`` finds the column at once, where a plain dict
    makes Jinja2 try the attribute, fail with an exception and only then look the key up (measured: about a
    microsecond per field rendered). A column named like a dict method (``items``, ``keys``...) reads only as
    ``row["items"]``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None
