"""Entities (things with keys) and the relationships between them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from parity.define.dtypes import DType
from parity.define.location import caller_location
from parity.errors import DefinitionError


@dataclass(frozen=True)
class HasOne:
    """A many-to-one link: each row of this entity names one row of ``target``.

    ``via`` lists, in the order of ``target``'s keys, the features (or key columns) of this entity
    that hold the target's key. ``transaction.user`` via ``user_id``.
    """

    target: Entity
    via: tuple[str, ...]

    def __init__(self, target: Entity, via: str | Sequence[str]) -> None:
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "via", (via,) if isinstance(via, str) else tuple(via))
        if len(self.via) != len(target.keys):
            raise DefinitionError(
                f"HasOne({target.name}) gives {len(self.via)} via column(s) for {len(target.keys)} key(s) "
                f"{list(target.keys)}; name one feature per key",
                location=caller_location(),
            )


@dataclass(frozen=True, eq=False)
class Entity:
    """A thing with a key that features hang off.

    >>> user = Entity("user", keys={"user_id": Int64})
    >>> transaction = Entity("transaction", keys={"transaction_id": String},
    ...                      relationships={"user": HasOne(user, via="user_id")})
    """

    name: str
    keys: Mapping[str, DType]
    relationships: Mapping[str, HasOne] = field(default_factory=dict)
    description: str = ""
    location: str = field(default="", compare=False)

    def __init__(
        self,
        name: str,
        keys: Mapping[str, DType],
        *,
        relationships: Mapping[str, HasOne] | None = None,
        description: str = "",
    ) -> None:
        location = caller_location()
        if not name.isidentifier():
            raise DefinitionError(f"entity name {name!r} must be a Python identifier", location=location)
        if not keys:
            raise DefinitionError(f"entity {name!r} needs at least one key", location=location)
        for key, dtype in keys.items():
            if not isinstance(key, str) or not key.isidentifier() or key.startswith("__"):
                raise DefinitionError(
                    f"entity {name!r}: key {key!r} must be a Python identifier not starting with '__' (parity keeps "
                    f"such names for its own columns)", location=location)
            if not isinstance(dtype, DType) or dtype.inner is not None:
                raise DefinitionError(
                    f"entity {name!r}: key {key!r} needs a scalar dtype such as Int64 or String, got {dtype!r}",
                    location=location,
                )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "keys", dict(keys))
        object.__setattr__(self, "relationships", dict(relationships or {}))
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "location", location)

    def __repr__(self) -> str:
        return f"Entity({self.name!r})"

    def __hash__(self) -> int:
        return hash(self.name)
