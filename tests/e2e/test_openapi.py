"""schemathesis against the OpenAPI document the server serves, over loopback: for generated
requests (valid and invalid) no 5xx, and every status, content type and body is what the
document says — for the token of a role that reads, and for one that is refused."""

from __future__ import annotations

import copy

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from parity.server.openapi import DOCUMENT
from tests.e2e.test_server import ALL_READ, server  # noqa: F401 - the running server, as a fixture

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The document as the server serves it (a test below checks they are equal), with the request's
# feature names narrowed to this project's (and one unknown), so generated requests reach the
# answers — 200s, masked values, entity key errors, 403s — and not only "unknown feature".
_GUIDED = copy.deepcopy(DOCUMENT)
_GUIDED["components"]["schemas"]["QueryRequest"]["properties"]["features"]["items"] = {
    "enum": [*ALL_READ, "user.countyr"]}
_GUIDED["paths"]["/v1/push/{source}"]["post"]["parameters"][0]["schema"] = {"enum": ["pings", "nope"]}
schema = schemathesis.openapi.from_dict(_GUIDED)
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
                                deterministic=True)


@schema.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much,
                                 HealthCheck.too_slow])
def test_every_answer_is_what_the_document_says(case, server):  # noqa: F811
    for role in ("scoring", "support", None):  # reads; is refused pii and resolvers; has no token
        headers = {} if role is None else {"Authorization": f"Bearer {server['tokens'][role]}"}
        case.call_and_validate(base_url=server["base"], headers=headers, checks=CHECKS)


def test_the_document_is_served_and_names_every_route(server):  # noqa: F811
    document = httpx.get(server["base"] + "/v1/openapi.json").json()
    assert document == DOCUMENT
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {"/v1/health", "/v1/ready", "/v1/query", "/v1/catalog", "/v1/metrics", "/v1/monitor",
                                      "/v1/training-sets", "/v1/training-sets/{job}", "/v1/training-sets/{job}/result",
                                      "/v1/openapi.json", "/v1/push/{source}"}
