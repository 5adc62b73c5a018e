"""Cello's guards as Strawberry permission classes:
``@strawberry.field(permission_classes=[permission(Role("admin"))])`` — the same ``Authenticated()``, ``Role``,
``Permission``, guard functions and ``&`` / ``|`` / ``~`` combinations that protect routes, checked against the
request's user (set by the app's authenticator: JWT, API key, session)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    default_field_resolver,
)
from strawberry.exceptions import StrawberryGraphQLError
from strawberry.permission import BasePermission
from strawberry.schema import Schema

from ..security.guards import Guard, GuardFunction, as_guard, current_user

__all__ = ["guard_input_fields", "permission"]

UNAUTHENTICATED = "Authentication is required."
FORBIDDEN = "You are not allowed to do this."


def permission(guard: Guard | GuardFunction) -> type[BasePermission]:
    """A Strawberry permission class checking ``guard``. A refusal is the field's error — ``UNAUTHENTICATED``
    (no user) or ``FORBIDDEN`` in its ``extensions.code`` — and its resolver does not run."""
    checked = as_guard(guard)

    class GuardPermission(BasePermission):
        message = FORBIDDEN

        async def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
            request = _request_of(info.context)
            user = current_user(request)
            if await checked.check_async(request, user):
                return True
            if user is None:
                raise StrawberryGraphQLError(UNAUTHENTICATED, extensions={"code": "UNAUTHENTICATED"})
            raise StrawberryGraphQLError(FORBIDDEN, extensions={"code": "FORBIDDEN"})

    GuardPermission.__qualname__ = GuardPermission.__name__ = f"permission({checked!r})"
    return GuardPermission


def _request_of(context: Any) -> Any:
    """The request of ``info.context``: Cello's ``Context``, a dict holding ``"request"``, or an application's
    context object with a ``request`` attribute."""
    request = getattr(context, "request", None)
    if request is None and isinstance(context, dict):
        request = context.get("request")
    if request is None:
        raise TypeError("a Cello permission needs the request in info.context (context.request)")
    return request


# -- input fields ------------------------------------------------------------------------------------------------

# an input type's guarded fields: {the field's key in the argument's value: (permission classes, its own fields',
# its default value)}
Rules = dict[str, tuple[list[type[BasePermission]], "Rules | None", Any]]


def guard_input_fields(schema: Schema) -> None:
    """Check the permission classes of input fields, which Strawberry records but does not check: a field whose
    arguments reach such an input field (at any depth, in lists too) checks them when a request gives that input
    field a value other than its default, before its resolver runs — ``amount: int | None =
    strawberry.field(default=None, permission_classes=[...])`` in an ``@strawberry.input`` guards who may set
    ``amount``. The resolvers are wrapped in the schema's built GraphQL
    schema, once, so the rules hold wherever that schema is served."""
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for field in graphql_type.fields.values():
            if getattr(field.resolve, "cello_guarded_inputs", False):
                continue
            guarded: dict[str, Rules] = {}
            for name, argument in field.args.items():
                rules = _rules(argument.type, frozenset())
                if rules:
                    guarded[argument.out_name or name] = rules
            if guarded:
                field.resolve = _checking(field.resolve or default_field_resolver, guarded)


def _rules(graphql_type: Any, seen: frozenset[str]) -> Rules | None:
    while isinstance(graphql_type, (GraphQLNonNull, GraphQLList)):
        graphql_type = graphql_type.of_type
    if not isinstance(graphql_type, GraphQLInputObjectType) or graphql_type.name in seen:
        return None
    rules: Rules = {}
    for name, input_field in graphql_type.fields.items():
        definition = (input_field.extensions or {}).get("strawberry-definition")
        classes = list(getattr(definition, "permission_classes", None) or ())
        inner = _rules(input_field.type, seen | {graphql_type.name})
        if classes or inner:
            rules[input_field.out_name or name] = (classes, inner, input_field.default_value)
    return rules or None


def _checking(resolve: Callable[..., Any], guarded: dict[str, Rules]) -> Callable[..., Any]:
    async def checked(source: Any, info: Any, **arguments: Any) -> Any:
        for name, rules in guarded.items():
            if name in arguments:
                await _check(arguments[name], rules, source, info)
        result = resolve(source, info, **arguments)
        return await result if inspect.isawaitable(result) else result

    checked.cello_guarded_inputs = True  # type: ignore[attr-defined]
    return checked


async def _check(value: Any, rules: Rules, source: Any, info: Any) -> None:
    if isinstance(value, list):
        for item in value:
            await _check(item, rules, source, info)
        return
    if not isinstance(value, dict):
        return
    for key, (classes, inner, default) in rules.items():
        if key not in value or (classes and value[key] == default):
            continue  # not given (or left at its default, which GraphQL fills in): nothing to allow
        for permission_class in classes:
            permission = permission_class()
            allowed = permission.has_permission(source, info)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                raise StrawberryGraphQLError(permission.message or FORBIDDEN, extensions={"code": "FORBIDDEN"})
        if inner:
            await _check(value[key], inner, source, info)
