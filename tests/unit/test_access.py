"""Access control declared in code: one decision for online queries, training sets and the
catalog — deny by default, pii only by name or tag, masked values, use inside a plan only."""

from __future__ import annotations

import polars as pl
import pytest

import parity as pt
from parity.errors import AccessDenied, DefinitionError, UnknownFeatureError
from tests.support import at

READ, MASKED, DENIED = "read", "masked", "denied"


def _definitions(roles: list[pt.Role]) -> list[object]:
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    payment = pt.Entity("payment", keys={"payment_id": pt.String},
                        relationships={"user": pt.HasOne(user, via="user_id")})
    profile = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                             features=[pt.Feature("country", pt.String, tags=["geo"]), pt.Feature("limit", pt.Float64),
                                       pt.Feature("email", pt.String, tags=["pii", "contact"])])
    secrets = pt.FeatureView("secrets", entity=user, tags=["pii"],
                             source=pt.ParquetSource("s", path="s.parquet", event_time="ts"),
                             features=[pt.Feature("ssn", pt.String)])
    payments = pt.FeatureView("payments", entity=payment,
                              source=pt.ParquetSource("p", path="p.parquet", event_time="ts"),
                              features=[pt.Feature("user_id", pt.Int64), pt.Feature("amount", pt.Float64)])

    @pt.resolver(entity=user, outputs=pt.Feature("email_domain", pt.String))
    def domain(email: str | None) -> str | None:
        return None if email is None else email.split("@")[1]

    velocity = pt.WindowView("velocity", entity=payment, source=pt.ParquetSource("p2", path="p.parquet", event_time="ts"),
                             columns={"amount": pt.Float64}, windows=["1d", "30d"],
                             features=[pt.Aggregate("n", pt.agg.count())])
    return [user, payment, profile, secrets, payments, domain, velocity, *roles]


def _project(tmp_path, roles: list[pt.Role]) -> pt.Project:  # type: ignore[no-untyped-def]
    pl.DataFrame({"user_id": [1, 2], "ts": [at(1), at(1)], "country": ["DE", "FR"], "limit": [10.0, 20.0],
                  "email": ["a@x.org", "b@y.org"]}).write_parquet(tmp_path / "u.parquet")
    pl.DataFrame({"user_id": [1, 2], "ts": [at(1), at(1)], "ssn": ["111", "222"]}).write_parquet(tmp_path / "s.parquet")
    pl.DataFrame({"payment_id": ["p1", "p2"], "ts": [at(1), at(1)], "user_id": [1, 2],
                  "amount": [5.0, 7.0]}).write_parquet(tmp_path / "p.parquet")
    project = pt.Project.from_definitions(_definitions(roles), root=str(tmp_path),
                                          online_store_path=str(tmp_path / "o.db"))
    project.materialize(until=at(2), incremental=False)
    return project


ROLES = [
    pt.Role("analyst", grants=[pt.Grant(entity="user")]),
    pt.Role("masker", grants=[pt.Grant(entity="user")], pii="mask"),
    pt.Role("contact", grants=[pt.Grant(entity="user", tags=["contact"], use="masked")]),
    pt.Role("domains", grants=[pt.Grant(namespace="domain"), pt.Grant(features="user.email", use="internal")]),
    pt.Role("pii_reader", grants=[pt.Grant(tags="pii")]),
    pt.Role("payments", grants=[pt.Grant(entity="payment"), pt.Grant(features="user.country")]),
    pt.Role("one_width", grants=[pt.Grant(features="payment.n[1d]"), pt.Grant(features="payment.user_id",
                                                                             use="internal")]),
]

# (roles, feature) → what it gets, written out by hand from the rules in define/access.py
EXPECTED: dict[tuple[str, ...], dict[str, str]] = {
    (): {},
    ("analyst",): {"user.country": READ, "user.limit": READ, "user.email_domain": DENIED},  # its input is pii
    # masked feeds no plan: email_domain (a resolver over email) could hand email back
    ("masker",): {"user.country": READ, "user.limit": READ, "user.email": MASKED, "user.ssn": MASKED},
    ("contact",): {},  # email has the tag "contact", but pii is granted only by its own tag or by name
    ("domains",): {"user.email_domain": READ},
    ("pii_reader",): {"user.email": READ, "user.ssn": READ},
    ("payments",): {"payment.amount": READ, "payment.user_id": READ, "payment.n[1d]": READ, "payment.n[30d]": READ,
                    "payment.user.country": READ, "user.country": READ},
    ("one_width",): {"payment.n[1d]": READ},
    ("analyst", "pii_reader"): {"user.country": READ, "user.limit": READ, "user.email": READ, "user.ssn": READ,
                                "user.email_domain": READ},
    ("masker", "pii_reader"): {"user.country": READ, "user.limit": READ, "user.email": READ, "user.ssn": READ,
                               "user.email_domain": READ},  # the strongest grant wins
}
ALL = ["user.country", "user.limit", "user.email", "user.ssn", "user.email_domain", "payment.amount",
       "payment.user_id", "payment.n[1d]", "payment.n[30d]", "payment.user.country", "payment.user.email"]
VALUES = {"user.country": "DE", "user.limit": 10.0, "user.email": "a@x.org", "user.ssn": "111",
          "user.email_domain": "x.org", "payment.amount": 5.0, "payment.user_id": 1, "payment.n[1d]": 0,
          "payment.n[30d]": 1, "payment.user.country": "DE", "payment.user.email": "a@x.org"}


def _keys(ref: str) -> dict[str, list[object]]:
    return {"user_id": [1]} if ref.startswith("user.") else {"payment_id": ["p1"]}


@pytest.mark.parametrize("roles", list(EXPECTED), ids=lambda r: "+".join(r) or "none")
def test_every_role_set_gets_exactly_its_grants_online_offline_and_in_the_catalog(tmp_path, roles):
    project = _project(tmp_path, ROLES)
    who = pt.Principal("svc", roles)
    expected = {ref: EXPECTED[roles].get(ref, DENIED) for ref in ALL}
    catalog = {row["feature"]: row["access"] for row in project.catalog_for(who)}
    for ref in ALL:
        spine = pl.DataFrame({**_keys(ref), "timestamp": [at(2)]})
        if expected[ref] == DENIED:
            with pytest.raises(AccessDenied):  # naming it, or the input it needs and may not use
                project.query(_keys(ref), [ref], now=at(2), principal=who)
            with pytest.raises(AccessDenied):
                project.training_set(spine, [ref], principal=who)
            continue
        online = project.query(_keys(ref), [ref], now=at(2), with_status=True, principal=who)
        offline = project.training_set(spine, [ref], with_status=True, principal=who).to_pylist()[0]
        if expected[ref] == READ:
            assert online.rows == [{ref: VALUES[ref]}] and offline[ref] == VALUES[ref], ref
            assert online.details[0][ref].status == offline[ref + ":status"] == "present"
        else:
            assert online.rows == [{ref: None}] and offline[ref] is None, ref
            assert online.details[0][ref].status == offline[ref + ":status"] == "masked"
    # the catalog lists a feature itself (not a path to it) exactly when it may be requested
    own = {ref: level for ref, level in expected.items() if ref.count(".") == 1 and level != DENIED}
    assert catalog == own
    project.close()


def test_the_owner_without_a_principal_reads_everything(tmp_path):
    project = _project(tmp_path, ROLES)
    for ref in ALL:
        assert project.query(_keys(ref), [ref], now=at(2)).rows == [{ref: VALUES[ref]}]
    catalog = {row["feature"]: row for row in project.catalog_for()}
    assert len(catalog) == 9
    assert catalog["payment.n[30d]"]["window"] == {"width": "30d", "aggregation": "count", "column": None,
                                                   "filtered": False}
    assert (catalog["payment.n[30d]"]["kind"], catalog["payment.n[30d]"]["source"]) == ("window", "p2")
    assert catalog["user.ssn"]["tags"] == ["pii"]  # the view's tag, shown on its feature
    assert catalog["user.email_domain"]["kind"] == "resolver" and "source" not in catalog["user.email_domain"]
    project.close()


def test_a_denial_names_every_refused_feature_and_why(tmp_path):
    project = _project(tmp_path, ROLES)
    with pytest.raises(AccessDenied) as caught:
        project.query({"user_id": [1]}, ["user.email_domain", "user.ssn", "user.country"], now=at(2),
                      principal=pt.Principal("svc", ["analyst"]))
    assert caught.value.denied == {  # email_domain is granted, but not the input it is computed from
        "user.ssn": "requested; not granted to this principal",
        "user.email": "used by the plan; not granted to this principal",
    }
    with pytest.raises(AccessDenied, match="granted for use inside plans only"):
        project.query({"user_id": [1]}, ["user.email"], now=at(2), principal=pt.Principal("svc", ["domains"]))
    project.close()


def test_an_unknown_role_grants_nothing(tmp_path):
    project = _project(tmp_path, ROLES)
    with pytest.raises(AccessDenied):
        project.query({"user_id": [1]}, ["user.country"], now=at(2), principal=pt.Principal("svc", ["admin"]))
    project.close()


@pytest.mark.parametrize(("grant", "message"), [
    (lambda: pt.Grant(entity="usr"), "unknown entity 'usr'"),
    (lambda: pt.Grant(namespace="profil"), "unknown namespace 'profil'"),
    (lambda: pt.Grant(features="user.emial"), "unknown feature 'user.emial'"),
    (lambda: pt.Grant(features="payment.n[1h]"), "has no 1h window"),
])
def test_a_grant_naming_nothing_is_a_definition_error_with_its_line(tmp_path, grant, message):
    with pytest.raises(DefinitionError, match=message) as caught:
        pt.Project.from_definitions(_definitions([pt.Role("r", grants=[grant()])]), root=str(tmp_path))
    assert "test_access.py" in str(caught.value)
    assert isinstance(caught.value, UnknownFeatureError) == ("feature" in message)


def test_bad_grants_and_roles_are_refused_where_written():
    with pytest.raises(DefinitionError, match="grant use 'write'"):
        pt.Grant(entity="user", use="write")
    with pytest.raises(DefinitionError, match="pii='show'"):
        pt.Role("r", grants=[], pii="show")
    with pytest.raises(DefinitionError, match="role name"):
        pt.Role("a role", grants=[])
    with pytest.raises(DefinitionError, match="must be pt.Grant"):
        pt.Role("r", grants=["user"])  # type: ignore[list-item]


def test_the_policy_version_changes_with_what_is_granted_tags_included(tmp_path):
    def version(defs: list[object]) -> str:
        return pt.Project.from_definitions(defs, root=str(tmp_path)).access_policy().version

    user = pt.Entity("user", keys={"user_id": pt.Int64})

    def project(tags: list[str]) -> list[object]:
        view = pt.FeatureView("v", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                              features=[pt.Feature("email", pt.String, tags=tags)])
        return [user, view, pt.Role("r", grants=[pt.Grant(entity="user")])]

    assert version(project(["pii"])) != version(project([]))  # the same role now reads email
    assert version(project(["pii", "contact"])) == version(project(["pii"]))  # nothing granted changed


def test_the_policy_version_changes_with_a_grant_and_not_with_a_description(tmp_path):
    from parity.plan.access import policy_version

    base = {"r": pt.Role("r", grants=[pt.Grant(entity="user")])}
    assert policy_version(base) == policy_version({"r": pt.Role("r", grants=[pt.Grant(entity="user")],
                                                                description="said otherwise")})
    assert policy_version(base) != policy_version({"r": pt.Role("r", grants=[pt.Grant(entity="user", use="masked")])})
    assert policy_version(base) != policy_version({"r": pt.Role("r", grants=[pt.Grant(entity="user")], pii="mask")})


def test_a_principal_sees_no_error_detail_that_could_quote_an_input_it_may_not_read(tmp_path):
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    pl.DataFrame({"user_id": [1], "ts": [at(1)], "dob": ["17/05/1990 SECRET"]}).write_parquet(tmp_path / "d.parquet")
    view = pt.FeatureView("people", entity=user, source=pt.ParquetSource("d", path="d.parquet", event_time="ts"),
                          features=[pt.Feature("dob", pt.String)])

    @pt.resolver(entity=user, outputs=pt.Feature("birth_year", pt.Int64))
    def birth_year(dob: str | None) -> int | None:
        import datetime as dt

        return None if dob is None else dt.date.fromisoformat(dob).year

    role = pt.Role("yearly", grants=[pt.Grant(features="user.birth_year"), pt.Grant(features="user.dob", use="internal")])
    project = pt.Project.from_definitions([user, view, birth_year, role], root=str(tmp_path),
                                          online_store_path=str(tmp_path / "o.db"))
    project.materialize(until=at(2), incremental=False)
    who = pt.Principal("svc", ["yearly"])
    online = project.query({"user_id": [1]}, ["user.birth_year"], now=at(2), with_status=True, principal=who)
    error = online.details[0]["user.birth_year"].error
    assert error is not None and "SECRET" not in error and error.startswith("resolver 'birth_year' raised ValueError")
    table = project.training_set(pl.DataFrame({"user_id": [1], "timestamp": [at(2)]}), ["user.birth_year"],
                                 principal=who)
    assert b"SECRET" not in table.schema.metadata[b"parity.fallbacks"]
    owner = project.query({"user_id": [1]}, ["user.birth_year"], now=at(2), with_status=True)
    assert "SECRET" in owner.details[0]["user.birth_year"].error  # the owner's API keeps the detail
    project.close()


def test_caches_of_plans_and_decisions_stay_bounded(tmp_path, monkeypatch):
    from parity.plan import access
    from parity.runtime import project as project_module

    monkeypatch.setattr(project_module, "PLAN_CACHE", 5)
    monkeypatch.setattr(access, "DECISION_CACHE", 5)
    project = _project(tmp_path, ROLES)
    who = pt.Principal("svc", ["payments"])
    for spaces in range(20):  # endless spellings of one feature
        project.query({"payment_id": ["p1"]}, [f"payment.n[{' ' * spaces}1d]"], now=at(2), principal=who)
    assert len(project._plans) <= 5 and len(project.access_policy()._decisions) <= 5
    project.close()


def test_entity_rows_naming_endless_keys_are_refused(tmp_path):
    from parity.errors import EntityKeyError

    project = _project(tmp_path, ROLES)
    rows = [{"user_id": 1, **{f"junk{i}_{j}": 0 for j in range(10)}} for i in range(10)]
    with pytest.raises(EntityKeyError, match="at most 64"):
        project.query(rows, ["user.country"], now=at(2))
    project.close()


def test_a_masked_feature_feeds_no_resolver_even_when_asked_for_beside_it(tmp_path):
    project = _project(tmp_path, ROLES)
    who = pt.Principal("svc", ["masker"])
    masked = project.query({"user_id": [1]}, ["user.email"], now=at(2), with_status=True, principal=who)
    assert masked.rows == [{"user.email": None}]
    with pytest.raises(AccessDenied) as caught:
        project.query({"user_id": [1]}, ["user.email", "user.email_domain"], now=at(2), principal=who)
    assert caught.value.denied == {"user.email": "used by the plan; granted masked, and a masked value feeds no plan"}
    project.close()


def _with_stream(roles: list[pt.Role]) -> pt.Project:
    card = pt.Entity("card", keys={"card_id": pt.Int64})
    stream = pt.StreamSource(name="txns", schema={"id": pt.String, "card_id": pt.Int64, "ts": pt.Timestamp},
                             event_time="ts", event_id="id")
    view = pt.WindowView("v", entity=card, source=stream, columns={}, windows=["1h"],
                         features=[pt.Aggregate("n", pt.agg.count())])
    return pt.Project.from_definitions([card, view, *roles])


def test_pushing_is_granted_by_name_only_and_is_part_of_the_policy_version():
    readers = pt.Role("readers", grants=[pt.Grant()])  # every feature: still no push
    pushers = pt.Role("pushers", push="txns")
    project = _with_stream([readers, pushers])
    policy = project.access_policy()
    policy.check_push(pt.Principal("p", ["pushers"]), "txns")
    for roles, source in ((["readers"], "txns"), ([], "txns"), (["pushers"], "other"), (["nobody"], "txns")):
        with pytest.raises(AccessDenied, match="may not push into"):
            policy.check_push(pt.Principal("p", roles), source)
    plain = _with_stream([readers, pt.Role("pushers")]).access_policy().version
    assert plain != policy.version
    with pytest.raises(DefinitionError, match="push names 'txn', which is not a stream source.*txns"):
        _with_stream([pt.Role("typo", push=["txn"])])


def test_metrics_are_for_roles_that_say_so():
    project = _with_stream([pt.Role("readers", grants=[pt.Grant()]), pt.Role("ops", metrics=True)])
    policy = project.access_policy()
    policy.check_metrics(pt.Principal("o", ["ops", "readers"]))
    for roles in (["readers"], [], ["nobody"]):
        with pytest.raises(AccessDenied, match="may not scrape"):
            policy.check_metrics(pt.Principal("p", roles))
    assert _with_stream([pt.Role("readers", grants=[pt.Grant()]), pt.Role("ops")]).access_policy().version != \
        policy.version
    with pytest.raises(DefinitionError, match="metrics='yes'"):
        pt.Role("ops", metrics="yes")  # type: ignore[arg-type]
