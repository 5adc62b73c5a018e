"""Integrations with outside systems. Each needs its extra (``pip install 'cello[postgres]'``, ``cello[redis]``);
SQLite, the embedded database, needs none."""

from .database import Connection, Database, DatabaseUnavailable
from .errors import InvalidQueryArgument
from .redis import Redis
from .row import Row

__all__ = ["Connection", "Database", "DatabaseUnavailable", "InvalidQueryArgument", "Redis", "Row"]
