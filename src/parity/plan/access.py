"""The one access decision: which features a principal may have returned, masked, or only used
inside a plan.

The roles of ``define.access`` are compiled once per catalog into a table per role (feature →
level), the tables of a role set are merged on first use, and a plan's decision is kept per
(role set, plan): a request pays two dictionary lookups. Online queries, training sets and the
catalog all ask ``AccessPolicy.check`` or ``AccessPolicy.visible`` — over HTTP, and in the Python
API when a principal is given — so there is no second path to get wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from parity.define.access import ACCESS_LEVELS, PII_TAG, Grant, Principal, Role
from parity.errors import AccessDenied
from parity.plan.catalog import Catalog, FeatureDef
from parity.plan.nodes import Compute, Lookup, Plan

FeatureKey = tuple[str, str]  # (entity, feature name as the catalog holds it)
MASKED, INTERNAL, READ = (ACCESS_LEVELS.index(n) for n in ("masked", "internal", "read"))
DENIED = -1
DECISION_CACHE = 4096


@dataclass(frozen=True)
class PlanAccess:
    """A plan the principal may run: the requested references to return without their values."""

    masked: frozenset[str]


def policy_version(roles: dict[str, Role]) -> str:
    """A content hash of every role and grant: ``apply`` records a policy change under it."""
    payload = json.dumps([roles[name].describe() for name in sorted(roles)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class AccessPolicy:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._per_role = {name: self._compile(role) for name, role in catalog.roles.items()}
        # The version covers what the roles grant, feature by feature: a tag removed from a feature
        # changes who may read it, so it changes the version, as a grant does.
        tables = {name: sorted(f"{e}.{n}={level}" for (e, n), level in table.items())
                  for name, table in self._per_role.items()}
        self.version = hashlib.sha256((policy_version(catalog.roles) + json.dumps(tables, sort_keys=True))
                                      .encode()).hexdigest()[:16]
        self._tables: dict[frozenset[str], dict[FeatureKey, int]] = {}
        self._decisions: dict[tuple[frozenset[str], int], tuple[Plan, PlanAccess | AccessDenied]] = {}

    # -- compiling -----------------------------------------------------------------------

    def _compile(self, role: Role) -> dict[FeatureKey, int]:
        named = [{key for text in g.features
                  for key in self.catalog.granted_features(text, where=f"role {role.name!r}", location=g.location)}
                 for g in role.grants]
        table: dict[FeatureKey, int] = {}
        for key, fd in self.catalog.features.items():
            level = max((self._grant_level(role, g, names, key, fd) for g, names in zip(role.grants, named)),
                        default=DENIED)
            if level > DENIED:
                table[key] = level
        return table

    @staticmethod
    def _grant_level(role: Role, grant: Grant, named: set[FeatureKey], key: FeatureKey, fd: FeatureDef) -> int:
        if grant.entity is not None and grant.entity != key[0]:
            return DENIED
        if grant.namespace is not None and grant.namespace != fd.namespace:
            return DENIED
        tags = fd.tags
        if grant.tags and not any(t in tags for t in grant.tags):
            return DENIED
        if grant.features and key not in named:
            return DENIED
        level = ACCESS_LEVELS.index(grant.use)
        if PII_TAG in tags and PII_TAG not in grant.tags and key not in named:
            # pii is given by name or by its tag only; a broader grant gives it masked at most, if the role says so
            return min(level, MASKED) if role.pii == "mask" else DENIED
        return level

    def table(self, roles: frozenset[str]) -> dict[FeatureKey, int]:
        found = self._tables.get(roles)
        if found is None:
            if len(self._tables) >= DECISION_CACHE:
                del self._tables[next(iter(self._tables))]
            found = {}
            for name in roles:
                for key, level in self._per_role.get(name, {}).items():  # an unknown role grants nothing
                    if level > found.get(key, DENIED):
                        found[key] = level
            self._tables[roles] = found
        return found

    # -- deciding ------------------------------------------------------------------------

    def check(self, principal: Principal, plan: Plan) -> PlanAccess:
        """The decision for running ``plan`` as ``principal``: AccessDenied naming every feature
        refused (requested without a read or masked grant, or used inside the plan without any)."""
        cache_key = (principal.roles, id(plan))
        entry = self._decisions.get(cache_key)
        if entry is None or entry[0] is not plan:
            if len(self._decisions) >= DECISION_CACHE:  # bounded: plans and role sets can be spelled without end
                del self._decisions[next(iter(self._decisions))]
            entry = self._decisions[cache_key] = (plan, self._decide(principal, plan))
        decision = entry[1]
        if isinstance(decision, AccessDenied):
            raise AccessDenied(principal.name, decision.denied)
        return decision

    def _decide(self, principal: Principal, plan: Plan) -> PlanAccess | AccessDenied:
        table = self.table(principal.roles)
        denied: dict[str, str] = {}
        masked = set()
        for ref, _ in plan.outputs:
            fd = self.catalog.feature_at(self.catalog.parse(ref))
            level = table.get((fd.entity.name, fd.feature.name), DENIED)
            if level == MASKED:
                masked.add(ref)
            elif level != READ:  # internal use only, or nothing
                denied[ref] = self._why(fd, level, "requested")
        # What the plan reads to compute something else: resolver inputs and relationship keys. A
        # requested feature that feeds nothing was judged above (masked is enough for it).
        requested = {cid for _, cid in plan.outputs}
        feeding = {cid for step in plan.steps for cid in step.keys.columns}
        feeding.update(cid for step in plan.steps if isinstance(step, Compute) for _, cid in step.inputs)
        for step in plan.steps:
            entity = step.keys.entity
            outputs = ([(o.feature, o.column_id) for o in step.outputs] if isinstance(step, Lookup)
                       else [(o, cid) for o, cid, _ in step.outputs] if isinstance(step, Compute)
                       else [(o.label, o.column_id) for o in step.outputs])
            for name, cid in outputs:
                if cid in requested and cid not in feeding:
                    continue
                level = table.get((entity, name), DENIED)
                if level < INTERNAL:  # masked feeds nothing: a resolver could hand it back whole
                    ref = f"{entity}.{name}"
                    denied.setdefault(ref, self._why(self.catalog.features[(entity, name)], level, "used by the plan"))
        if denied:
            return AccessDenied(principal.name, denied)
        return PlanAccess(frozenset(masked))

    @staticmethod
    def _why(fd: FeatureDef, level: int, how: str) -> str:
        # One reason for whatever the principal may not see — not why (a pii tag, a missing grant),
        # which would describe features it has no business knowing about. Operators read the roles.
        if level == INTERNAL:
            return f"{how}; granted for use inside plans only"
        if level == MASKED:
            return f"{how}; granted masked, and a masked value feeds no plan"
        return f"{how}; not granted to this principal"

    def check_push(self, principal: Principal, source: str) -> None:
        """Pushing events into ``source``: only roles that name it in ``push`` may (deny by default)."""
        if not any(source in self.catalog.roles[r].push for r in principal.roles if r in self.catalog.roles):
            raise AccessDenied(principal.name, {source: "a stream source no role of this principal may push into"},
                               verb="push into", field="source")

    def check_metrics(self, principal: Principal) -> None:
        """Scraping the server's metrics: only roles with ``metrics=True`` may (their series name
        views, resolvers and sources a principal may not otherwise know of)."""
        if not any(self.catalog.roles[r].metrics for r in principal.roles if r in self.catalog.roles):
            raise AccessDenied(principal.name, {"/v1/metrics": "no role of this principal has metrics=True"},
                               verb="scrape", field=None)

    def visible(self, principal: Principal, plan_of: Callable[[str], Plan]) -> dict[FeatureKey, str]:
        """What the catalog shows ``principal``: the features it may request — granted "read" or
        "masked", and whose plan ``check`` allows (a resolver over a denied input is not shown)."""
        out: dict[FeatureKey, str] = {}
        for key, level in self.table(principal.roles).items():
            if level == INTERNAL or level == DENIED:
                continue
            try:
                self.check(principal, plan_of(f"{key[0]}.{key[1]}"))
            except AccessDenied:
                continue
            out[key] = ACCESS_LEVELS[level]
        return out
