"""Turn requested references into a ``Plan``: the same DAG for training sets and online queries."""

from __future__ import annotations

from collections.abc import Sequence

from parity.errors import DataError, DefinitionError
from parity.plan.catalog import Catalog
from parity.plan.nodes import Compute, Keys, Lookup, LookupOutput, Plan, Step, WindowOutput, WindowRead, column_id


class _Builder:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.steps: list[Step | None] = []
        self.lookup_index: dict[tuple[str, tuple[str, ...], str], int] = {}
        self.lookup_outputs: dict[int, list[LookupOutput]] = {}
        self.window_outputs: dict[int, list[WindowOutput]] = {}
        self.done: set[str] = set()
        self.keys: dict[tuple[str, tuple[str, ...]], Keys] = {}

    def keys_of(self, root: str, hops: tuple[str, ...]) -> Keys:
        found = self.keys.get((root, hops))
        if found is not None:
            return found
        entity = self.catalog.entity_at(root, hops)
        if not hops:
            keys = Keys(root, hops, entity.name, tuple(entity.keys), tuple(entity.keys))
        else:
            parent_hops = hops[:-1]
            parent = self.catalog.entity_at(root, parent_hops)
            parent_keys = self.keys_of(root, parent_hops)
            rel = parent.relationships[hops[-1]]
            columns = []
            for via in rel.via:
                if via in parent.keys:
                    columns.append(parent_keys.columns[list(parent.keys).index(via)])
                else:
                    columns.append(self.need(root, parent_hops, via))
            keys = Keys(root, hops, entity.name, tuple(entity.keys), tuple(columns))
        self.keys[(root, hops)] = keys
        return keys

    def need(self, root: str, hops: tuple[str, ...], name: str) -> str:
        cid = column_id(root, hops, name)
        if cid in self.done:
            return cid
        entity = self.catalog.entity_at(root, hops)
        fd = self.catalog.features[(entity.name, name)]
        keys = self.keys_of(root, hops)
        if fd.view is not None:
            view = fd.view
            idx = self.lookup_index.get((root, hops, view.name))
            if idx is None:
                idx = len(self.steps)
                self.steps.append(None)  # filled in by finish()
                self.lookup_index[(root, hops, view.name)] = idx
                self.lookup_outputs[idx] = []
            self.lookup_outputs[idx].append(
                LookupOutput(fd.feature.name, fd.feature.source_column, fd.dtype, view.max_age_of(fd.feature), cid)
            )
            self.done.add(cid)
            return cid
        if fd.window is not None and fd.aggregate is not None:
            idx = self.lookup_index.get((root, hops, fd.window.name))
            if idx is None:
                idx = len(self.steps)
                self.steps.append(None)
                self.lookup_index[(root, hops, fd.window.name)] = idx
                self.window_outputs[idx] = []
            self.window_outputs[idx].append(WindowOutput(fd.aggregate.name, fd.width, fd.dtype, cid))
            self.done.add(cid)
            return cid
        res = fd.resolver
        if res is None:  # a catalog feature comes from a view or a resolver
            raise DefinitionError(f"feature {fd.ref!r} has neither a view nor a resolver")
        # A catalog that exists has no cycles (``Catalog._check_cycles``), so this recursion ends.
        inputs = []
        for inp in res.inputs:
            parts = inp.path.split(".")
            inputs.append((inp.param, self.need(root, hops + tuple(parts[:-1]), parts[-1])))
        outputs = tuple((o.name, column_id(root, hops, o.name), o.dtype) for o in res.outputs)
        self.steps.append(Compute(keys, res.name, tuple(inputs), outputs, res.wants_now))
        self.done.update(c for _, c, _ in outputs)
        return cid

    def finish(self) -> list[Step]:
        out: list[Step] = []
        for i, step in enumerate(self.steps):
            if step is None:
                root, hops, view = next(k for k, v in self.lookup_index.items() if v == i)
                if i in self.window_outputs:
                    out.append(WindowRead(self.keys[(root, hops)], view, tuple(self.window_outputs[i])))
                else:
                    out.append(Lookup(self.keys[(root, hops)], view, tuple(self.lookup_outputs[i])))
            else:
                out.append(step)
        return out


def plan(catalog: Catalog, references: Sequence[str]) -> Plan:
    """Plan ``references`` (``"user.country"``, ``"transaction.user.account_age_days"``)."""
    if not references:
        raise DefinitionError("no features requested; name at least one, e.g. 'user.country'")
    twice = sorted({r for r in references if list(references).count(r) > 1})
    if twice:
        raise DataError(f"feature(s) {twice} requested more than once; name each feature once")
    builder = _Builder(catalog)
    outputs = []
    roots: dict[str, tuple[str, ...]] = {}
    for text in references:
        ref = catalog.parse(text)
        outputs.append((text, builder.need(ref.root, ref.hops, ref.feature)))
        roots.setdefault(ref.root, tuple(catalog.entities[ref.root].keys))
    return Plan(tuple(builder.finish()), tuple(outputs), tuple(roots.items()))
