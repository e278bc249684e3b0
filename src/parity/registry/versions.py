"""Versions: a content hash of everything that determines a feature's values.

A source-backed feature's version covers its entity's keys, its view's source (including the
``as_of`` choice), key mapping, column, dtype and effective max_age. A resolver output's version
covers the resolver's code and what its code reads — module constants, helper functions and
classes of the project, followed recursively (``define.code_version`` says exactly what) — its
call policy and defaults, its outputs and the versions of its inputs, so a change anywhere
upstream gives a new version downstream. Metadata (description, owner, tags) is recorded
but does not change versions: it changes no value.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from parity.define.code_version import code_fingerprint
from parity.define.features import FeatureView
from parity.define.windows import WindowView, feature_columns
from parity.plan.catalog import Catalog, FeatureDef


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def view_version(view: FeatureView) -> str:
    """The version of a view's stored layout: what the online table holds."""
    return _hash(
        {
            "entity": view.entity.name,
            "keys": {k: repr(d) for k, d in view.entity.keys.items()},
            "source": view.source.describe(),
            "key_columns": dict(view.key_columns),
            "features": [[f.name, f.source_column, repr(f.dtype)] for f in view.features],
        }
    )


def window_version(view: WindowView) -> str:
    """The version of a window index's layout: its events, columns, and the aggregates' lanes."""
    return _hash(
        {
            "kind": "window",
            "entity": view.entity.name,
            "keys": {k: repr(d) for k, d in view.entity.keys.items()},
            "source": view.source.describe(),
            "key_columns": dict(view.key_columns),
            "columns": [[c, repr(d)] for c, d in view.columns.items()],
            "lanes": [[a.name, a.aggregation.describe(), None if a.where is None else a.where.describe()]
                      for a in view.features],
        }
    )


# What a window index holds (events and prefix states; since 2, window sets too; since 3, histogram
# lanes and their checkpoints). An index built by
# an older layout has another table name, so it is never read: stream ingestors replay their log
# into the new one, and materialize rebuilds the others. Bump it when the layout changes.
WINDOW_INDEX_LAYOUT = 3


def online_table(view: FeatureView | WindowView) -> str:
    if isinstance(view, WindowView):
        return f"{view.name}_{window_version(view)[:12]}_i{WINDOW_INDEX_LAYOUT}"
    return f"{view.name}_{view_version(view)[:12]}"


def metadata(fd: FeatureDef) -> dict[str, Any]:
    f = fd.feature
    return {"description": f.description, "owner": f.owner or (fd.view.owner if fd.view else None), "tags": list(f.tags)}


class Versions:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._memo: dict[str, str] = {}

    def definition(self, fd: FeatureDef) -> dict[str, Any]:
        if fd.view is not None:
            view = fd.view
            max_age = view.max_age_of(fd.feature)
            return {
                "kind": "source",
                "entity": fd.entity.name,
                "keys": {k: repr(d) for k, d in fd.entity.keys.items()},
                "view": view.name,
                "source": view.source.describe(),
                "key_columns": dict(view.key_columns),
                "column": fd.feature.source_column,
                "dtype": repr(fd.dtype),
                "max_age_seconds": None if max_age is None else max_age.total_seconds(),
                "default": repr(fd.feature.default),
            }
        if fd.window is not None and fd.aggregate is not None:
            aggregate = fd.aggregate
            return {
                "kind": "window",
                "entity": fd.entity.name,
                "keys": {k: repr(d) for k, d in fd.entity.keys.items()},
                "view": fd.window.name,
                "source": fd.window.source.describe(),
                "key_columns": dict(fd.window.key_columns),
                "aggregation": aggregate.aggregation.describe(),
                "columns": {c: repr(fd.window.columns[c]) for c in sorted(feature_columns(aggregate))},
                "where": None if aggregate.where is None else aggregate.where.describe(),
                "width_us": fd.width,
                "dtype": repr(fd.dtype),
            }
        res = fd.resolver
        if res is None:  # a catalog feature comes from a view or a resolver
            raise ValueError(f"feature {fd.ref!r} has neither a view nor a resolver")
        inputs = {}
        for inp in res.inputs:
            ref = self.catalog.parse(f"{res.entity.name}.{inp.path}")
            inputs[inp.param] = {"ref": ref.text, "version": self.version(self.catalog.feature_at(ref))}
        return {
            "kind": "resolver",
            "entity": fd.entity.name,
            "resolver": res.name,
            "code": code_fingerprint(res.fn),
            "policy": repr(res.policy),
            "defaults": [repr(o.default) for o in res.outputs],
            "outputs": [[o.name, repr(o.dtype)] for o in res.outputs],
            "inputs": inputs,
            "uses_now": res.wants_now,
            "dtype": repr(fd.dtype),
        }

    def version(self, fd: FeatureDef) -> str:
        found = self._memo.get(fd.ref)
        if found is None:
            found = self._memo[fd.ref] = _hash(self.definition(fd))
        return found
