"""The one exception tree of Cello and its RFC 9457 problem+json rendering."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

import orjson

PROBLEM_JSON = "application/problem+json"


class CelloError(Exception):
    """Root of every exception Cello raises on purpose."""


class ConfigurationError(CelloError):
    """The application was set up in a way that cannot work (raised at registration, never per request)."""


class HTTPException(CelloError):
    """An error that becomes an HTTP response with an RFC 9457 problem+json body.

    ``detail`` is shown to the client, so it must never carry internals; ``extra`` adds members to the
    problem object (e.g. ``errors`` for validation failures).
    """

    def __init__(
        self,
        status: int | None = None,
        detail: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",
        extra: Mapping[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        if status is None:  # ``status_code=`` is Starlette's and FastAPI's spelling of ``status``
            if status_code is None:
                raise TypeError("HTTPException needs a status: HTTPException(404) or HTTPException(status_code=404)")
            status = status_code
        elif status_code is not None:
            raise TypeError("give HTTPException its status once: status or status_code")
        self.status = status
        self.detail = detail
        self.title = title or _phrase(status)
        self.type = type
        self.extra = dict(extra) if extra else None
        if headers is None:
            self.headers: list[tuple[str, str]] = []
        elif isinstance(headers, Mapping):
            self.headers = list(headers.items())
        else:
            self.headers = list(headers)
        super().__init__(detail or self.title)

    @property
    def status_code(self) -> int:
        return self.status

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            body["detail"] = self.detail
        if instance is not None:
            body["instance"] = instance
        if self.extra:
            body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, detail={self.detail!r})"


class BadRequest(HTTPException):
    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(400, detail, **kwargs)


class Unauthorized(HTTPException):
    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(401, detail, **kwargs)


class Forbidden(HTTPException):
    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(403, detail, **kwargs)


class NotFound(HTTPException):
    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(404, detail, **kwargs)


class MethodNotAllowed(HTTPException):
    def __init__(self, allowed: Iterable[str], detail: str | None = None) -> None:
        self.allowed = sorted(allowed)
        super().__init__(405, detail, headers=[("allow", ", ".join(self.allowed))])


class PayloadTooLarge(HTTPException):
    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(413, detail, **kwargs)


class UnsupportedMediaType(HTTPException):
    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(415, detail, **kwargs)


class RequestValidationError(HTTPException):
    """Request values that failed validation; ``errors`` holds one item per problem (see ``cello.dto.errors``)."""

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None) -> None:
        self.errors = errors
        super().__init__(422, detail or "The request is not valid.", extra={"errors": errors})


class ServiceUnavailable(HTTPException):
    """A backend the request needs (a store, a database) did not answer: 503 with ``Retry-After``.

    ``cause`` is for the log; the client sees only that a service is unavailable, never which or why.
    """

    def __init__(self, cause: str, retry_after: int = 1) -> None:
        super().__init__(
            503, "A service this request needs is unavailable; try again shortly.", {"retry-after": str(retry_after)}
        )
        self.cause = cause
        self.args = (cause,)


class ClientDisconnected(BadRequest):
    """The request body broke off before it was complete: the peer closed (or half-closed) its side, or the
    body's framing is broken (an invalid chunk size), which some engines report the same way.

    A 400 if it reaches the response: a client that only half-closed still reads the answer.
    """

    def __init__(self) -> None:
        super().__init__("The request body is incomplete: it ended early or its chunked framing is invalid.")


class BodyTimeout(HTTPException):
    """The client did not send its whole request body within ``App(body_timeout=)``."""

    def __init__(self) -> None:
        super().__init__(408, "The request body did not arrive in time.", {"connection": "close"})


class InternalServerError(HTTPException):
    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(500, detail, **kwargs)


# RFC 9110's names where older Pythons still give RFC 7231's ("Unprocessable Entity" until 3.13): one title
# for one status whatever the interpreter
_RFC_9110 = {413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable", 422: "Unprocessable Content"}


def _phrase(status: int) -> str:
    try:
        return _RFC_9110.get(status) or HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(problem: Mapping[str, Any]) -> bytes:
    return orjson.dumps(problem)
