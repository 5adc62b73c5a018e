"""What a GraphQL endpoint refuses before any resolver runs (the OWASP GraphQL cheat sheet's limits), and the
Strawberry extensions that apply them with bounded caches and error masking.

Every limit is a validation rule or a parser option, so a refused document is answered with its errors and
executes nothing. The rules are built once per endpoint: Strawberry's validation cache keys on the rule classes,
and a rule class made per request (what ``QueryDepthLimiter(...)`` in a schema's extensions does) would never hit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
    is_leaf_type,
    parse,
)
from strawberry.exceptions import StrawberryGraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.exceptions import InvalidOperationTypeError

from ..http.exceptions import ConfigurationError, HTTPException

__all__ = ["Limits"]

logger = logging.getLogger("cello.graphql")

# the arguments whose integer value says how many items a list field returns (pagination conventions)
SIZE_ARGUMENTS = ("first", "last", "limit", "pageSize", "page_size", "count")
MASKED = "Internal server error."


@dataclass(frozen=True)
class Limits:
    """``max_depth``: nesting of selections; ``max_aliases``: aliases in a document; ``max_tokens``: tokens the
    parser reads before giving up; ``max_length``: characters of a document, refused before the parser reads any
    (one long name, string or comment is a single token); ``max_cost``: fields an operation may resolve, each field
    counting once per item of every list above it — a list field counts its ``first``/``last``/``limit`` argument's
    items when given as a number, else ``list_size``; ``cache_size``: parsed and validated documents kept (least
    recently used go first). ``None`` turns a limit off."""

    max_depth: int | None = 15
    max_aliases: int | None = 15
    max_tokens: int | None = 2000
    max_length: int | None = 100_000
    max_cost: int | None = 5000
    list_size: int = 10
    cache_size: int = 256

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_aliases", "max_tokens", "max_length", "max_cost"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"GraphQL {name} is a whole number >= 1 or None, not {value!r}")
        for name in ("list_size", "cache_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"GraphQL {name} is a whole number >= 1, not {value!r}")

    def rules(self) -> list[type[ASTValidationRule]]:
        """The validation rules of these limits, built once."""
        rules: list[type[ASTValidationRule]] = []
        if self.max_depth is not None:
            rules += QueryDepthLimiter(max_depth=self.max_depth).validation_rules
        if self.max_aliases is not None:
            rules += MaxAliasesLimiter(max_alias_count=self.max_aliases).validation_rules
        if self.max_cost is not None:
            rules.append(cost_rule(self.max_cost, self.list_size))
        return rules


def extensions(limits: Limits, *, introspection: bool, mask_errors: bool) -> list[Callable[[], SchemaExtension]]:
    """The extensions an endpoint adds to its schema's own: limits, bounded caches, introspection, masking."""
    rules = limits.rules()
    if not introspection:
        rules += DisableIntrospection().validation_rules
    added: list[Callable[[], SchemaExtension]] = []
    if limits.max_tokens is not None:
        max_tokens = limits.max_tokens
        added.append(lambda: MaxTokensLimiter(max_token_count=max_tokens))
    if rules:
        added.append(lambda: AddValidationRules(rules))
    size = limits.cache_size
    cached_parse = functools.lru_cache(maxsize=size)(parse)  # the endpoint's own: one bound per endpoint
    max_length = limits.max_length
    added += [lambda: _ParseCache(cached_parse, max_length), lambda: ValidationCache(maxsize=size)]
    if mask_errors:
        added.append(lambda: _MaskErrors(should_mask_error=_should_mask, error_message=MASKED))
    return added


class _ParseCache(SchemaExtension):
    """Parsed documents from a bounded cache, like Strawberry's ``ParserCache`` — except that a document that does
    not parse is left to Strawberry's own parsing, which reports it: ``ParserCache`` raising from its hook skips the
    end of the other extensions' operation (the metrics would never count the refusal). A document longer than
    ``max_length`` is refused by the parser before it reads any of it, and is never a key of the cache."""

    def __init__(self, cached_parse: Callable[..., Any], max_length: int | None) -> None:
        self.cached_parse = cached_parse
        self.max_length = max_length

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        if query:
            if self.max_length is not None:
                # Strawberry types only max_tokens here; every option is handed to graphql-core's parse()
                context.parse_options["max_source_length"] = self.max_length  # type: ignore[typeddict-unknown-key]
                if len(query) > self.max_length:
                    # NOTE: graphql-core refuses it unread, but locating that error scans the whole text (0.3 s for
                    # 15 MB): it is given what the limit keeps and one code point more, and refuses that alike
                    context.query = query[: self.max_length + 1]
                    yield
                    return
            with contextlib.suppress(GraphQLError):  # parsed again, and reported, by Strawberry
                context.graphql_document = self.cached_parse(query, **context.parse_options)
        yield


class _MaskErrors(MaskErrors):
    """Strawberry's masking, except for an operation of a kind the transport does not carry (a query over the
    legacy graphql-ws protocol, which carries subscriptions only): that is the request's error, and says so."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, InvalidOperationTypeError):
            kind = original.operation_type.value
            return GraphQLError(f"A {kind} cannot be sent this way.", error.nodes, error.source, error.positions,
                                error.path)  # fmt: skip
        return super().anonymise_error(error)


def _should_mask(error: GraphQLError) -> bool:
    """An error a resolver raised is masked, unless it is meant for clients: a Cello ``HTTPException`` (its detail
    is written for them) or a GraphQL error raised on purpose (``strawberry``'s, a permission's). The request's
    own errors (syntax, validation, limits) are never masked; Strawberry logs every error with its traceback."""
    original = error.original_error
    if original is None or isinstance(original, (GraphQLError, StrawberryGraphQLError)):
        return False
    return not isinstance(original, HTTPException)


def log_errors(errors: list[GraphQLError], execution_context: Any = None) -> None:
    """Strawberry's error logging, less noisy: an error a resolver raised is logged with its traceback (as
    ``ERROR``); the request's own (syntax, validation, limits) only at ``DEBUG`` and without the document, which a
    hostile client would otherwise write into the log at will."""
    for error in errors:
        original = error.original_error
        if original is not None and not isinstance(original, (GraphQLError, InvalidOperationTypeError)):
            logger.error("resolver of %s failed: %s", ".".join(map(str, error.path or ())) or "the operation",
                         original, exc_info=original)  # fmt: skip
        else:
            logger.debug("GraphQL request refused: %s", error.message)


# -- cost ----------------------------------------------------------------------------------------------------------


def cost_rule(max_cost: int, list_size: int) -> type[ValidationRule]:
    """A validation rule refusing operations that would resolve more than ``max_cost`` fields (see ``Limits``)."""

    class MaxCost(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            schema = self.context.schema
            root = schema.get_root_type(node.operation)
            if root is None:
                return  # reported by the standard rules
            cost = _cost(self.context, node.selection_set, root, list_size, max_cost, set())
            if cost > max_cost:
                name = f"'{node.name.value}'" if node.name else "The operation"
                self.report_error(
                    GraphQLError(f"{name} would resolve more than {max_cost} fields (about {cost}).", node)
                )

    return MaxCost


def _cost(context: Any, selections: SelectionSetNode | None, parent: Any, list_size: int, limit: int,
          fragments: set[str]) -> int:  # fmt: skip
    """Fields resolved under ``selections`` on ``parent``, stopping early once past ``limit``."""
    if selections is None:
        return 0
    total = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            fields = getattr(parent, "fields", None)
            field = fields.get(name) if fields is not None else None
            if field is None:  # __typename, or unknown (reported by the standard rules)
                total += 1
                continue
            inner = _cost(context, selection.selection_set, get_named_type(field.type), list_size, limit, fragments)
            total += (1 + inner) * _items(selection, field.type, list_size)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            target = context.schema.get_type(condition.name.value) if condition is not None else parent
            total += _cost(context, selection.selection_set, target or parent, list_size, limit, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = context.get_fragment(name)
            if fragment is None or name in fragments:  # unknown or cyclic: reported by the standard rules
                continue
            target = context.schema.get_type(fragment.type_condition.name.value) or parent
            total += _cost(context, fragment.selection_set, target, list_size, limit, fragments | {name})
        if total > limit:
            break
    return total


def _items(node: FieldNode, output: Any, list_size: int) -> int:
    """How many times a field's selections resolve: 1, or for a list the size its arguments ask for."""
    while isinstance(output, GraphQLNonNull):
        output = output.of_type
    if not isinstance(output, GraphQLList):
        return 1
    for argument in node.arguments or ():
        if argument.name.value in SIZE_ARGUMENTS and isinstance(argument.value, IntValueNode):
            return max(int(argument.value.value), 1)
    inner = output.of_type
    while isinstance(inner, GraphQLNonNull):
        inner = inner.of_type
    if isinstance(inner, GraphQLList):  # a list of lists
        return list_size * list_size
    return 1 if is_leaf_type(get_named_type(inner)) else list_size
