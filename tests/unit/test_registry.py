import datetime as dt
import textwrap

import parity as pt
from parity.plan.catalog import Catalog
from parity.registry.store import Registry


def _defs(tmp_path, *, resolver_body: str = "return amount * 2", description: str = "", max_age_days: int = 1):
    code = textwrap.dedent(f'''
        import datetime as dt
        import parity as pt
        user = pt.Entity("user", keys={{"user_id": pt.Int64}})
        src = pt.ParquetSource("s", path="x.parquet", event_time="ts")
        view = pt.FeatureView("v", entity=user, source=src, max_age=dt.timedelta(days={max_age_days}),
                              features=[pt.Feature("amount", pt.Float64, description={description!r})])

        @pt.resolver(entity=user, outputs=pt.Feature("double", pt.Float64))
        def double(amount: float) -> float:
            {resolver_body}

        @pt.resolver(entity=user, outputs=pt.Feature("quad", pt.Float64))
        def quad(double: float) -> float:
            return double * 2
    ''')
    path = tmp_path / "defs_mod.py"
    path.write_text(code)
    namespace: dict[str, object] = {"__name__": "defs_mod"}
    exec(compile(code, str(path), "exec"), namespace)
    return Catalog([v for v in namespace.values() if isinstance(v, (pt.Entity, pt.FeatureView)) or type(v).__name__ == "Resolver"])


def test_apply_reports_added_then_nothing(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    diff = reg.apply(_defs(tmp_path))
    assert sorted(ref for ref, _ in diff.added) == ["user.amount", "user.double", "user.quad"]
    again = reg.apply(_defs(tmp_path))
    assert again.empty and again.unchanged == 3


def test_resolver_code_change_versions_it_and_everything_downstream(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    reg.apply(_defs(tmp_path))
    before = {ref: f.version for ref, f in reg.features().items()}
    diff = reg.apply(_defs(tmp_path, resolver_body="return amount * 2.0"))
    changed = {ref for ref, _, _ in diff.changed}
    assert changed == {"user.double", "user.quad"}  # quad reads double: its version follows
    after = {ref: f.version for ref, f in reg.features().items()}
    assert after["user.amount"] == before["user.amount"]
    assert len(reg.history("user.double")) == 2


def test_metadata_change_keeps_version_but_is_reported(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    reg.apply(_defs(tmp_path))
    diff = reg.apply(_defs(tmp_path, description="amount in EUR"))
    assert diff.metadata_changed == ["user.amount"] and not diff.changed


def test_max_age_is_part_of_the_version(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    reg.apply(_defs(tmp_path))
    diff = reg.apply(_defs(tmp_path, max_age_days=2))
    assert {ref for ref, _, _ in diff.changed} >= {"user.amount"}


def test_as_of_choice_is_part_of_the_version(tmp_path):
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    versions = []
    for as_of in ("visible", "event_time"):
        src = pt.ParquetSource("s", path="x.parquet", event_time="ts", created_time="cr", as_of=as_of)
        view = pt.FeatureView("v", entity=user, source=src, features=[pt.Feature("a", pt.Int64)])
        reg = Registry(str(tmp_path / f"{as_of}.db"))
        reg.apply(Catalog([user, view]))
        versions.append(reg.features()["user.a"].version)
    assert versions[0] != versions[1]


def test_removed_features_are_reported(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    reg.apply(_defs(tmp_path))
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    src = pt.ParquetSource("s", path="x.parquet", event_time="ts")
    view = pt.FeatureView("v", entity=user, source=src, max_age=dt.timedelta(days=1),
                          features=[pt.Feature("amount", pt.Float64)])
    diff = reg.apply(Catalog([user, view]))
    assert sorted(ref for ref, _ in diff.removed) == ["user.double", "user.quad"]
