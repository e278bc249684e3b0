from parity.plan.catalog import Catalog
from parity.plan.nodes import Compute, Lookup
from parity.plan.planner import plan

from tests.support import small_definitions

EXPECTED = """\
plan:
  input payment keys payment_id at time t
  input user keys user_id at time t
  1. lookup payment [payment by payment_id] view facts: amount, user_id
  2. lookup payment.user [user by payment.user_id] view profile: limit (max_age 10d)
  3. resolve payment [payment] share_of_limit(amount=payment.amount, limit=payment.user.limit) -> share_of_limit
  4. lookup user [user by user_id] view profile: country (max_age 10d)
  output: payment.share_of_limit, user.country"""


def test_explain_is_stable_golden_text(tmp_path):
    catalog = Catalog(small_definitions(str(tmp_path)))
    assert plan(catalog, ["payment.share_of_limit", "user.country"]).explain() == EXPECTED


def test_steps_come_after_what_they_read(tmp_path):
    catalog = Catalog(small_definitions(str(tmp_path)))
    p = plan(catalog, ["payment.share_of_limit", "payment.user.country", "payment.amount"])
    produced: set[str] = set(k for _, keys in p.roots for k in keys)
    for step in p.steps:
        assert set(step.keys.columns) <= produced, step
        if isinstance(step, Lookup):
            produced.update(o.column_id for o in step.outputs)
        else:
            assert isinstance(step, Compute)
            assert {c for _, c in step.inputs} <= produced
            produced.update(c for _, c, _ in step.outputs)
    # one lookup per (path, view): the two features of profile at payment.user share one step
    lookups = [(s.keys.hops, s.view) for s in p.steps if isinstance(s, Lookup)]
    assert len(lookups) == len(set(lookups))
