"""Errors of the data layer."""

from __future__ import annotations

import logging

from ..http.exceptions import HTTPException, ServiceUnavailable

__all__ = ["DatabaseUnavailable", "InvalidQueryArgument", "refused_argument", "where"]

logger = logging.getLogger("cello.database")


class DatabaseUnavailable(ServiceUnavailable):
    """The database did not answer, or no pooled connection came free in time: unhandled, a 503 problem+json
    with ``Retry-After`` (the cause goes to the log, never to the client)."""


class InvalidQueryArgument(HTTPException):
    """The database would not take an argument of a statement for its parameter: a value of the wrong type, out of
    range, too long, or one the driver cannot encode (``WHERE id = $1`` with a path value ``"abc"``).

    Such a value comes from the client far more often than not, so unhandled it is a 422 problem+json naming the
    argument's position (``argument``: 1 for ``$1``, absent when the database did not say which) and never the
    value or the statement. ``cause`` is the driver's message, for the log.
    """

    def __init__(self, position: int | None, cause: str) -> None:
        named = f"query argument ${position}" if position else "a query argument"
        super().__init__(
            422,
            f"The database refused {named}: the value does not fit the parameter's type or range.",
            extra={"argument": position} if position else None,
        )
        self.position = position
        self.cause = cause


def refused_argument(position: int | None, error: BaseException) -> InvalidQueryArgument:
    """The ``InvalidQueryArgument`` for a driver's ``error``, logged at warning level: a client's bad value is no
    server fault, but a run of them may be a caller that passes the wrong type."""
    cause = f"{type(error).__name__}: {error}"
    logger.warning("the database refused %s: %s", f"argument ${position}" if position else "an argument", cause)
    return InvalidQueryArgument(position, cause)


def where(url: str) -> str:
    """``host:port/database`` of a connection URL, without credentials or options: what errors and logs name."""
    rest = url.partition("://")[2]
    return rest.rpartition("@")[2].partition("?")[0]
