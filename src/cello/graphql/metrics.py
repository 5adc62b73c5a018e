"""Prometheus metrics of GraphQL operations, beside the HTTP metrics of ``app.enable_prometheus()`` (and only when
it is on): ``cello_graphql_operations_total{endpoint, operation, type, outcome}`` — ``outcome`` ``ok``, ``errors``
(executed, with errors in the answer) or ``refused`` (did not parse or validate, or broke a limit: nothing ran) —
and the histogram ``cello_graphql_operation_seconds{endpoint, operation, type}``.

Operation names come from clients, so they are bounded: an endpoint's first ``MAX_NAMES`` distinct names are labels,
any later one counts as ``<other>``; an operation without a name is ``<anonymous>``, and a document that did not
parse is ``<invalid>``. A subscription is measured from its start to its end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.types.execution import PreExecutionError

__all__ = ["OperationMetrics"]

MAX_NAMES = 100
_created: dict[str, Any] = {}


def _metrics() -> tuple[Any, Any]:
    if not _created:
        import prometheus_client

        _created["operations"] = prometheus_client.Counter(
            "cello_graphql_operations", "GraphQL operations answered, by outcome: ok, errors or refused.",
            ["endpoint", "operation", "type", "outcome"],
        )  # fmt: skip
        _created["seconds"] = prometheus_client.Histogram(
            "cello_graphql_operation_seconds", "Time a GraphQL operation took.", ["endpoint", "operation", "type"]
        )
    return _created["operations"], _created["seconds"]


class OperationMetrics:
    """One endpoint's operation metrics; ``extension`` is what its schema runs per operation."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.names: set[str] = set()
        self.operations, self.seconds = _metrics()

    def label(self, name: str | None) -> str:
        if name is None:
            return "<anonymous>"
        if name in self.names:
            return name
        if len(self.names) < MAX_NAMES:
            self.names.add(name)
            return name
        return "<other>"

    def extension(self) -> SchemaExtension:
        return _Measured(self)


class _Measured(SchemaExtension):
    def __init__(self, metrics: OperationMetrics) -> None:
        self.metrics = metrics

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        metrics = self.metrics
        try:
            kind = context.operation_type.value
            name = metrics.label(context.operation_name)
        except Exception:  # no operation to name: the document did not parse, or names none of its own
            kind, name = "unknown", "<invalid>"
        result = context.result
        if isinstance(result, PreExecutionError) or (result is None and context.pre_execution_errors):
            outcome = "refused"
        else:
            outcome = "errors" if result is not None and result.errors else "ok"
        metrics.operations.labels(metrics.endpoint, name, kind, outcome).inc()
        metrics.seconds.labels(metrics.endpoint, name, kind).observe(time.perf_counter() - started)
