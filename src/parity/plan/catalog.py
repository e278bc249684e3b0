"""All definitions of a project, indexed and cross-checked.

Building a ``Catalog`` validates everything that can be checked without data: unique names,
relationships, resolver inputs and their dtypes, and cycles. A catalog that exists is valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from parity.define.access import Role
from parity.define.dtypes import DType
from parity.define.entities import Entity
from parity.define.features import Feature, FeatureView
from parity.define.resolvers import Resolver
from parity.define.sources import StreamSource
from parity.define.windows import Aggregate, Width, WindowView, parse_width, width_label
from parity.errors import CycleError, DefinitionError, DuplicateNameError, SignatureError, UnknownFeatureError


@dataclass(frozen=True, eq=False)
class FeatureDef:
    """One feature of the catalog, with what produces it."""

    entity: Entity
    feature: Feature
    view: FeatureView | None = None
    resolver: Resolver | None = None
    window: WindowView | None = None  # a window aggregate, at one width
    aggregate: Aggregate | None = None
    width: Width = None

    @property
    def ref(self) -> str:
        return f"{self.entity.name}.{self.feature.name}"

    @property
    def dtype(self) -> DType:
        return self.feature.dtype

    @property
    def location(self) -> str:
        return self.resolver.location if self.resolver else self.feature.location

    @property
    def namespace(self) -> str:
        """The view, window view or resolver that defines the feature (what access grants name)."""
        producer = self.view or self.window or self.resolver
        assert producer is not None  # a feature has exactly one producer: the catalog adds it with it
        return producer.name

    @property
    def tags(self) -> tuple[str, ...]:
        """The feature's own tags, then its view's: a view tagged ``pii`` makes every feature it holds pii."""
        holder = self.view or self.window
        extra = tuple(t for t in holder.tags if t not in self.feature.tags) if holder is not None else ()
        return self.feature.tags + extra


@dataclass(frozen=True)
class Ref:
    """A parsed reference: root entity, relationship hops, feature name."""

    root: str
    hops: tuple[str, ...]
    feature: str

    @property
    def text(self) -> str:
        return ".".join((self.root, *self.hops, self.feature))


_WINDOWED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[([^\]]*)\]$")


class Catalog:
    def __init__(self, definitions: Iterable[object]) -> None:
        self.entities: dict[str, Entity] = {}
        self.views: dict[str, FeatureView] = {}
        self.resolvers: dict[str, Resolver] = {}
        self.window_views: dict[str, WindowView] = {}
        self.features: dict[tuple[str, str], FeatureDef] = {}
        self.roles: dict[str, Role] = {}
        for obj in definitions:
            if isinstance(obj, Entity):
                self._add_entity(obj)
            elif isinstance(obj, FeatureView):
                self._add_view(obj)
            elif isinstance(obj, Resolver):
                self._add_resolver(obj)
            elif isinstance(obj, WindowView):
                self._add_window_view(obj)
            elif isinstance(obj, Role):
                self._add_role(obj)
        self._check_relationships()
        self._check_resolver_inputs()
        self._check_cycles()
        for role in self.roles.values():
            self._check_role(role)

    # -- building -------------------------------------------------------------------------

    def _add_entity(self, entity: Entity) -> None:
        known = self.entities.get(entity.name)
        if known is not None and known is not entity:
            raise DuplicateNameError(
                f"entity {entity.name!r} is defined twice (first at {known.location})", location=entity.location
            )
        self.entities[entity.name] = entity
        for rel in entity.relationships.values():
            if rel.target.name not in self.entities:
                self._add_entity(rel.target)

    def _add_feature(self, fd: FeatureDef) -> None:
        key = (fd.entity.name, fd.feature.name)
        if key in self.features:
            raise DuplicateNameError(
                f"feature {fd.ref!r} is defined twice (first at {self.features[key].location})",
                location=fd.location,
            )
        if fd.feature.name in fd.entity.relationships:
            raise DuplicateNameError(
                f"feature {fd.ref!r} has the name of a relationship of {fd.entity.name!r}", location=fd.location
            )
        self.features[key] = fd

    def _add_view(self, view: FeatureView) -> None:
        if self.views.get(view.name) is view:
            return  # the same object listed twice (e.g. imported into two modules) is one definition
        if view.name in self.views:
            raise DuplicateNameError(
                f"feature view {view.name!r} is defined twice (first at {self.views[view.name].location})",
                location=view.location,
            )
        self._add_entity(view.entity)
        self.views[view.name] = view
        for feature in view.features:
            self._add_feature(FeatureDef(view.entity, feature, view=view))

    def _add_window_view(self, view: WindowView) -> None:
        if self.window_views.get(view.name) is view:
            return
        known = self.window_views.get(view.name) or self.views.get(view.name)
        if known is not None:
            raise DuplicateNameError(f"view {view.name!r} is defined twice (first at {known.location})",
                                     location=view.location)
        self._add_entity(view.entity)
        self.window_views[view.name] = view
        for aggregate in view.features:
            if (view.entity.name, aggregate.name) in self.features:
                raise DuplicateNameError(f"feature {view.entity.name}.{aggregate.name} is defined twice",
                                         location=aggregate.location)
            dtype = view.output_dtype(aggregate)
            for width in view.widths_of(aggregate):
                feature = Feature.windowed(aggregate.name, width_label(width), dtype, description=aggregate.description,
                                           owner=aggregate.owner or view.owner, tags=aggregate.tags,
                                           location=aggregate.location)
                self._add_feature(FeatureDef(view.entity, feature, window=view, aggregate=aggregate, width=width))

    def _add_resolver(self, res: Resolver) -> None:
        if self.resolvers.get(res.name) is res:
            return
        if res.name in self.resolvers:
            raise DuplicateNameError(
                f"resolver {res.name!r} is defined twice (first at {self.resolvers[res.name].location})",
                location=res.location,
            )
        self._add_entity(res.entity)
        self.resolvers[res.name] = res
        for out in res.outputs:
            self._add_feature(FeatureDef(res.entity, out, resolver=res))

    # -- validation -----------------------------------------------------------------------

    def _add_role(self, role: Role) -> None:
        known = self.roles.get(role.name)
        if known is not None and known is not role:
            raise DuplicateNameError(f"role {role.name!r} is defined twice (first at {known.location})",
                                     location=role.location)
        self.roles[role.name] = role

    def _check_role(self, role: Role) -> None:
        """Every name a grant gives exists: a typo must not silently grant nothing (or everything)."""
        namespaces = {*self.views, *self.window_views, *self.resolvers}
        for grant in role.grants:
            where = f"role {role.name!r}"
            if grant.entity is not None and grant.entity not in self.entities:
                raise DefinitionError(f"{where}: grant names unknown entity {grant.entity!r}; known: "
                                      f"{', '.join(sorted(self.entities))}", location=grant.location)
            if grant.namespace is not None and grant.namespace not in namespaces:
                raise DefinitionError(f"{where}: grant names unknown namespace {grant.namespace!r} (a view, window "
                                      f"view or resolver); known: {', '.join(sorted(namespaces))}",
                                      location=grant.location)
            for text in grant.features:
                self.granted_features(text, where=where, location=grant.location)
        streams = self.stream_sources()
        for name in role.push:
            if name not in streams:
                raise DefinitionError(f"role {role.name!r}: push names {name!r}, which is not a stream source of these "
                                      f"definitions; stream sources: {', '.join(sorted(streams)) or 'none'}",
                                      location=role.location)

    def stream_sources(self) -> dict[str, StreamSource]:
        """The stream sources the definitions read, by name: what ``project.push`` and the push
        endpoint feed."""
        used = [v.source for v in self.views.values()] + [v.source for v in self.window_views.values()]
        return {s.name: s for s in used if isinstance(s, StreamSource)}

    def granted_features(self, text: str, *, where: str, location: str) -> list[tuple[str, str]]:
        """The features a grant's ``features`` entry names: ``entity.feature``, or a window
        aggregate with its width or, without one, at every width. No relationship hops: a grant
        is on the feature itself, whichever path reaches it."""
        entity_name, dot, name = text.partition(".")
        if not dot or "." in name or entity_name not in self.entities:
            raise UnknownFeatureError(text, (f"{e}.{n}" for e, n in self.features), where=f"{where}: grant",
                                      location=location)
        widths = [(e, n) for (e, n) in self.features if e == entity_name and n.startswith(name + "[")]
        if widths and (entity_name, name) not in self.features:
            return widths
        return [(entity_name, self.feature_at(self.parse(text, where=f"{where}: grant", location=location)).feature.name)]

    def _check_relationships(self) -> None:
        for entity in self.entities.values():
            for rel_name, rel in entity.relationships.items():
                for via, (key, key_dtype) in zip(rel.via, rel.target.keys.items()):
                    dtype = self.column_dtype(entity, via)
                    if dtype is None:
                        raise UnknownFeatureError(
                            f"{entity.name}.{via}",
                            [r for r in self.refs() if r.startswith(entity.name + ".")],
                            where=f"relationship {entity.name}.{rel_name}",
                            location=entity.location,
                        )
                    if dtype != key_dtype:
                        raise DefinitionError(
                            f"relationship {entity.name}.{rel_name}: {via!r} is {dtype!r} but "
                            f"{rel.target.name}.{key} is {key_dtype!r}",
                            location=entity.location,
                        )

    def _check_resolver_inputs(self) -> None:
        for res in self.resolvers.values():
            for inp in res.inputs:
                ref = self.parse(f"{res.entity.name}.{inp.path}", where=f"resolver {res.name!r}", location=res.location)
                fd = self.feature_at(ref)
                if inp.dtype is not None and inp.dtype != fd.dtype:
                    raise SignatureError(
                        f"resolver {res.name!r}: parameter {inp.param!r} is annotated {inp.dtype!r} but "
                        f"feature {ref.text!r} is {fd.dtype!r}; make them agree",
                        location=res.location,
                    )

    def _check_cycles(self) -> None:
        """No resolver may depend on itself, directly, through others or through relationships
        (which the planner could otherwise unfold without end)."""
        done: set[int] = set()
        for res in self.resolvers.values():
            self._visit(res.entity.name, (), res.outputs[0].name, [], done)

    def _visit(self, root: str, hops: tuple[str, ...], name: str, stack: list[tuple[str, Resolver]],
               done: set[int]) -> None:
        fd = self.features[(self.entity_at(root, hops).name, name)]
        res = fd.resolver
        if res is None:
            return
        column = ".".join((root, *hops, name))
        on_stack = [i for i, (_, r) in enumerate(stack) if r is res]
        if on_stack:
            chain = [f"{r.name} ({c})" for c, r in stack[on_stack[0]:]] + [f"{res.name} ({column})"]
            raise CycleError(chain, location=res.location)
        if id(res) in done:
            return
        stack.append((column, res))
        for inp in res.inputs:
            *path, feature = inp.path.split(".")
            self._visit(root, hops + tuple(path), feature, stack, done)
        stack.pop()
        done.add(id(res))

    # -- lookup ---------------------------------------------------------------------------

    def column_dtype(self, entity: Entity, name: str) -> DType | None:
        """The dtype of a key column or feature of ``entity``, None if it has neither."""
        if name in entity.keys:
            return entity.keys[name]
        fd = self.features.get((entity.name, name))
        return fd.dtype if fd else None

    def refs(self) -> Iterator[str]:
        """Every reference a query can name: features, and features one relationship away."""
        for entity_name, name in self.features:
            yield f"{entity_name}.{name}"
        for entity in self.entities.values():
            for rel_name, rel in entity.relationships.items():
                for target, name in self.features:
                    if target == rel.target.name:
                        yield f"{entity.name}.{rel_name}.{name}"

    def parse(self, text: str, *, where: str = "", location: str | None = None) -> Ref:
        parts = text.split(".")
        if len(parts) < 2 or parts[0] not in self.entities:
            raise UnknownFeatureError(text, self.refs(), where=where, location=location)
        entity = self.entities[parts[0]]
        for hop in parts[1:-1]:
            rel = entity.relationships.get(hop)
            if rel is None:
                raise UnknownFeatureError(text, self.refs(), where=where, location=location)
            entity = rel.target
        name = self._feature_name(entity, parts[-1], text, where, location)
        if (entity.name, name) not in self.features:
            raise UnknownFeatureError(text, self.refs(), where=where, location=location)
        return Ref(parts[0], tuple(parts[1:-1]), name)

    def _feature_name(self, entity: Entity, name: str, text: str, where: str, location: str | None) -> str:
        """A feature's name as the catalog holds it: windowed ones with their canonical width
        (``txn_count[60m]`` is ``txn_count[1h]``)."""
        prefix = f"{where}: " if where else ""
        windowed = _WINDOWED.match(name)
        if windowed is None:
            widths = sorted(n for (e, n) in self.features if e == entity.name and n.startswith(name + "["))
            if widths and (entity.name, name) not in self.features:
                raise DefinitionError(f"{prefix}feature {text!r} is a window aggregate; name its width, e.g. "
                                      f"{text}[{widths[0][len(name) + 1:-1]}] (defined: {', '.join(widths)})",
                                      location=location)
            return name
        base, width_text = windowed.groups()
        try:
            label = width_label(parse_width(width_text, f"{prefix}feature {text!r}"))
        except DefinitionError as exc:
            raise DefinitionError(str(exc), location=location) from None
        canonical = f"{base}[{label}]"
        if (entity.name, canonical) not in self.features:
            widths = sorted(n for (e, n) in self.features if e == entity.name and n.startswith(base + "["))
            if widths:
                raise DefinitionError(f"{prefix}feature {text!r}: {base} has no {label} window; defined: "
                                      f"{', '.join(widths)}", location=location)
        return canonical

    def entity_at(self, root: str, hops: tuple[str, ...]) -> Entity:
        entity = self.entities[root]
        for hop in hops:
            entity = entity.relationships[hop].target
        return entity

    def feature_at(self, ref: Ref) -> FeatureDef:
        return self.features[(self.entity_at(ref.root, ref.hops).name, ref.feature)]
