"""Persisted queries: an allowlist of the only operations an endpoint runs, and automatic persisted queries (APQ,
Apollo's protocol) kept in a Cello store — memory, or Redis for every worker and machine.

A client names a document by its SHA-256 in ``extensions.persistedQuery = {"version": 1, "sha256Hash": ...}``:

- with an **allowlist** (``persisted_queries={hash: document}``), the endpoint runs the listed documents only —
  named by their hash, or sent whole when their hash is listed — and refuses every other document;
- with **APQ** (``apq=True``, or a store), a client sends the hash alone; the endpoint answers with the document
  stored under it or with ``PersistedQueryNotFound``, and the client sends the document and its hash together once:
  the endpoint checks the hash, runs the document and, if it was valid, keeps it for ``apq_ttl`` seconds. Only
  documents that parsed and validated are kept, so the store holds no junk a stranger sent.

A refusal is a GraphQL error with an ``extensions.code`` (``PERSISTED_QUERY_NOT_FOUND``,
``PERSISTED_QUERY_NOT_SUPPORTED``, ``PERSISTED_QUERY_HASH_MISMATCH``, ``PERSISTED_QUERY_NOT_ALLOWED``), answered as
the request's own error (400 for ``application/graphql-response+json``, 200 for ``application/json``), which is what
Apollo Client's persisted-query link expects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from strawberry.http import GraphQLRequestData

from ..http.exceptions import ConfigurationError
from ..stores.base import Store

__all__ = ["PersistedQueries", "Refused"]

PREFIX = "graphql:apq:"


class Refused(Exception):
    """A persisted-query refusal, answered as a GraphQL error."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def answer(self) -> dict[str, Any]:
        return {"errors": [{"message": self.message, "extensions": {"code": self.code}}]}


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class PersistedQueries:
    """One endpoint's allowlist or APQ store (see the module)."""

    def __init__(self, allowlist: Mapping[str, str] | None, store: Store | None, ttl: float) -> None:
        if allowlist is not None and store is not None:
            raise ConfigurationError("an endpoint has an allowlist (persisted_queries) or APQ (apq), not both")
        if allowlist is not None:
            if not isinstance(allowlist, Mapping) or not all(isinstance(v, str) for v in allowlist.values()):
                raise ConfigurationError("persisted_queries is {sha256 hex: document}")
            wrong = [key for key, document in allowlist.items() if sha256(document) != str(key).lower()]
            if wrong:
                raise ConfigurationError(f"persisted_queries: {wrong[0]!r} is not the SHA-256 of its document")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
            raise ConfigurationError(f"apq_ttl is a number of seconds above 0, not {ttl!r}")
        self.allowlist = {key.lower(): document for key, document in (allowlist or {}).items()}
        self.store = store
        self.ttl = float(ttl)

    @property
    def allowlisted(self) -> bool:
        return self.store is None

    async def resolve(self, data: GraphQLRequestData) -> GraphQLRequestData:
        """The request with its document: looked up by hash, checked against the allowlist, or refused."""
        named = _hash_of(data.extensions)
        if named is None:
            if self.allowlisted and (data.query is None or sha256(data.query) not in self.allowlist):
                raise Refused("This endpoint runs registered operations only.", "PERSISTED_QUERY_NOT_ALLOWED")
            return data
        if data.query is not None:
            if sha256(data.query) != named:
                raise Refused("The document's SHA-256 is not the hash it came with.", "PERSISTED_QUERY_HASH_MISMATCH")
            if self.allowlisted and named not in self.allowlist:
                raise Refused("This endpoint runs registered operations only.", "PERSISTED_QUERY_NOT_ALLOWED")
            return data
        if self.allowlisted:
            document = self.allowlist.get(named)
        else:
            assert self.store is not None
            stored = await self.store.get(PREFIX + named)
            document = stored.decode() if stored is not None else None
        if document is None:
            raise Refused("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
        data.query = document
        return data

    async def remember(self, data: GraphQLRequestData) -> None:
        """Keep a document sent with its hash (APQ), once it parsed and validated."""
        named = _hash_of(data.extensions)
        if self.store is not None and named is not None and data.query is not None:
            await self.store.set(PREFIX + named, data.query.encode(), ttl=self.ttl)


def _hash_of(extensions: Mapping[str, Any] | None) -> str | None:
    """The SHA-256 a request names its document by, if any; a version other than 1 is refused."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, Mapping) or persisted.get("version") != 1:
        raise Refused("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED")
    named = persisted.get("sha256Hash")
    if not isinstance(named, str) or len(named) != 64:
        raise Refused("persistedQuery.sha256Hash is the 64 hex digits of a SHA-256.", "PERSISTED_QUERY_NOT_FOUND")
    return named.lower()
