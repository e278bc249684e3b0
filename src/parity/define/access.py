"""Access control declared in code: roles and their grants, reviewed and versioned beside the
features they govern.

>>> fraud_service = pt.Role("fraud_service", grants=[
...     pt.Grant(entity="transaction"),                       # every transaction feature
...     pt.Grant(namespace="velocity"),                       # what the window view "velocity" computes
...     pt.Grant(entity="user", tags=["risk"]),               # user features tagged "risk"
...     pt.Grant(features=["user.email"], use="masked"),      # named, served as masked
...     pt.Grant(features=["user.date_of_birth"], use="internal"),  # feeds a resolver, never returned
... ])

Deny by default: a feature no grant covers is not served, not computed into a training set and not
listed in the catalog. What a grant gives, weakest first (``ACCESS_LEVELS``):

- ``masked``: the feature may be named in a request and comes back with no value and status
  ``masked``; it feeds no plan (a resolver could hand it back whole);
- ``internal``: it may feed a plan (a resolver input, a relationship's key) but is never returned
  — asking for it is refused;
- ``read``: returned with its value, and may feed a plan.

A grant's selectors all have to match (``entity`` and ``namespace`` exactly, ``tags`` any of them,
``features`` by reference — ``entity.feature``, a window aggregate with or without its width); a
grant with no selector covers every feature. A feature's namespace is the view, window view or
resolver that defines it. Features tagged ``pii`` are covered only by grants that say so — a
``tags`` list holding ``"pii"``, or the feature named in ``features``; a broader grant gives them
nothing, or ``masked`` with ``Role(..., pii="mask")``. Several roles, or grants, combine by the
strongest level.

Writing is granted apart from reading: ``Role(..., push=["transactions"])`` lets its holders push
events into those stream sources (``POST /v1/push/{source}``); no role may push anywhere else. And
``Role(..., metrics=True)`` lets its holders scrape ``GET /v1/metrics``, whose series name views,
resolvers and sources: no other role may. ``semantics``-free and stdlib-only: ``plan.access`` compiles these into the one
decision table every path consults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from parity.define.entities import Entity
from parity.define.location import caller_location
from parity.errors import DefinitionError

ACCESS_LEVELS = ("masked", "internal", "read")  # weakest first; absent means denied
PII_TAG = "pii"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def _texts(values: Sequence[str] | str | None, what: str, location: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out = tuple(values)
    for value in out:
        if not isinstance(value, str) or not value:
            raise DefinitionError(f"grant {what}: expected non-empty strings, got {value!r}", location=location)
    return out


@dataclass(frozen=True)
class Grant:
    """What one grant of a role covers, and at which level (see the module's docstring)."""

    entity: str | None = None
    namespace: str | None = None
    tags: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    use: str = "read"
    location: str = field(default="", compare=False, repr=False)

    def __init__(self, *, entity: str | Entity | None = None, namespace: str | None = None,
                 tags: Sequence[str] | str | None = None, features: Sequence[str] | str | None = None,
                 use: str = "read") -> None:
        location = caller_location()
        set_ = object.__setattr__
        set_(self, "location", location)
        if isinstance(entity, Entity):
            entity = entity.name
        if entity is not None and (not isinstance(entity, str) or not entity):
            raise DefinitionError(f"grant entity: expected an entity or its name, got {entity!r}", location=location)
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise DefinitionError(f"grant namespace: expected a view or resolver name, got {namespace!r}",
                                  location=location)
        if use not in ACCESS_LEVELS:
            raise DefinitionError(f"grant use {use!r}: expected one of {', '.join(ACCESS_LEVELS)}", location=location)
        set_(self, "entity", entity)
        set_(self, "namespace", namespace)
        set_(self, "tags", _texts(tags, "tags", location))
        set_(self, "features", _texts(features, "features", location))
        set_(self, "use", use)

    def describe(self) -> dict[str, object]:
        """What the policy's version covers (the location does not change who sees what)."""
        return {"entity": self.entity, "namespace": self.namespace, "tags": list(self.tags),
                "features": list(self.features), "use": self.use}


@dataclass(frozen=True, eq=False)
class Role:
    """A named set of grants. Principals (API tokens, or a ``Principal`` given to the Python API)
    hold roles by name."""

    name: str
    grants: tuple[Grant, ...]
    pii: str = "deny"
    description: str = ""
    push: tuple[str, ...] = ()
    metrics: bool = False
    location: str = field(default="", compare=False, repr=False)

    def __init__(self, name: str, grants: Sequence[Grant] = (), *, pii: str = "deny", description: str = "",
                 push: Sequence[str] | str | None = None, metrics: bool = False) -> None:
        location = caller_location()
        set_ = object.__setattr__
        set_(self, "location", location)
        if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
            raise DefinitionError(f"role name {name!r}: use letters, digits, '_', '-' and '.'", location=location)
        found = tuple(grants)
        for grant in found:
            if not isinstance(grant, Grant):
                raise DefinitionError(f"role {name!r}: grants must be pt.Grant(...), got {grant!r}", location=location)
        if pii not in ("deny", "mask"):
            raise DefinitionError(f"role {name!r}: pii={pii!r}; expected 'deny' or 'mask'", location=location)
        set_(self, "name", name)
        set_(self, "grants", found)
        set_(self, "pii", pii)
        set_(self, "description", description)
        set_(self, "push", _texts(push, "push", location))
        if not isinstance(metrics, bool):
            raise DefinitionError(f"role {name!r}: metrics={metrics!r}; expected True or False", location=location)
        set_(self, "metrics", metrics)

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"name": self.name, "pii": self.pii,
                                        "grants": [g.describe() for g in self.grants]}
        if self.push:  # a role that pushes nowhere keeps the version it had before push existed
            described["push"] = sorted(self.push)
        if self.metrics:
            described["metrics"] = True
        return described


@dataclass(frozen=True)
class Principal:
    """Who asks: a name (for the audit trail) and the roles it holds. The server makes one from
    an API token; Python callers pass one to ``Project.query``/``training_set``/``catalog_for`` to
    be checked as the server checks."""

    name: str
    roles: frozenset[str]

    def __init__(self, name: str, roles: Sequence[str] | frozenset[str]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "roles", frozenset(roles))
