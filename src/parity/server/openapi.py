"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /v1/openapi.json`` and checked
against the running server by schemathesis in the test suite: every status code and body the
server can answer is in here, and nothing else.
"""

from __future__ import annotations

from typing import Any

from parity import __version__

_ERROR_CODES = ["unauthenticated", "forbidden", "bad_json", "bad_request", "invalid_field", "unknown_feature",
                "invalid_entity_key", "invalid_request", "body_too_large", "too_many_entities", "too_many_features",
                "body_timeout", "client_disconnected", "audit_unavailable", "too_many_rows", "not_done", "overloaded", "store_unavailable", "not_ready",
                "too_many_events", "invalid_events", "push_unavailable", "not_found", "method_not_allowed",
                "http_error", "internal"]

_ERROR = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "enum": _ERROR_CODES, "description": "machine-readable"},
            "message": {"type": "string", "description": "one line for a human, naming the field"},
            "field": {"type": "string", "description": "the request field at fault"},
            "denied": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "403: each refused feature, and why"},
            "suggestions": {"type": "array", "items": {"type": "string"}},
            "errors": {"type": "array", "description": "422: each refused event (its index in events), and why",
                       "items": {"type": "object", "required": ["index", "reason"], "additionalProperties": False,
                                 "properties": {"index": {"type": "integer"}, "reason": {"type": "string"}}}},
        }}},
}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "bad input", 401: "no token, or one that is malformed, unknown, expired or revoked",
            403: "what the token's roles do not grant (a feature, a push, the metrics)", 404: "no such job for this token",
            405: "method not allowed", 409: "the job is not done (its status says why)",
            408: "the body did not arrive in time", 413: "a limit was passed (body, entities, features, events)",
            422: "an event does not fit the source's schema, or is later than its max_lateness: nothing of the "
                 "push was written",
            503: "overloaded, or the online store (or the source's writer) is unavailable"}
    return {str(s): {"description": text[s], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for s in statuses}


_KEY_VALUE = {"type": ["string", "integer", "number", "boolean", "null"]}
_VALUE: dict[str, Any] = {"description": "a feature value: JSON, with NaN/Infinity/-Infinity as strings and times as "
                                         "ISO-8601 (see dtypes)"}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "parity feature server", "version": __version__,
             "description": "Online feature values, as a training set at the same time would hold them."},
    "servers": [{"url": "/"}],
    "components": {
        "securitySchemes": {"token": {"type": "http", "scheme": "bearer", "description": "pty_… (parity token create)"}},
        "schemas": {
            "Error": _ERROR,
            "QueryRequest": {
                "type": "object", "required": ["entities", "features"], "additionalProperties": False,
                "properties": {
                    "entities": {"oneOf": [
                        {"type": "object", "description": "key columns, or one entity's keys",
                         "additionalProperties": {"oneOf": [_KEY_VALUE, {"type": "array", "items": _KEY_VALUE}]}},
                        {"type": "array", "items": {"type": "object", "additionalProperties": _KEY_VALUE}}]},
                    "features": {"type": "array", "minItems": 1, "maxItems": 500, "items": {"type": "string"}},
                    "now": {"type": "string", "description": "ISO-8601 with a zone; default: the server's now"},
                    "with_status": {"type": "boolean", "default": False},
                }},
            "QueryResponse": {
                "type": "object", "required": ["features", "dtypes", "rows"], "additionalProperties": False,
                "properties": {
                    "features": {"type": "array", "items": {"type": "string"}},
                    "dtypes": {"type": "object", "additionalProperties": {"type": "string"}},
                    "rows": {"type": "array", "items": {"type": "object", "additionalProperties": _VALUE}},
                    "details": {"type": "array", "items": {"type": "object", "additionalProperties": {
                        "type": "object", "required": ["status", "event_time", "error"], "additionalProperties": False,
                        "properties": {
                            "status": {"type": "string",
                                       "enum": ["present", "missing", "expired", "future", "error", "masked"]},
                            "event_time": {"type": ["string", "null"]},
                            "error": {"type": ["string", "null"]}}}}},
                }},
            "TrainingSetRequest": {
                "type": "object", "required": ["spine", "features"], "additionalProperties": False,
                "properties": {
                    "spine": {"type": "object", "description": "columns: entity keys, the time column (ISO-8601 with "
                              "a zone) and anything else (labels), each a list of values",
                              "additionalProperties": {"type": "array", "items": _KEY_VALUE}},
                    "features": {"type": "array", "minItems": 1, "maxItems": 500, "items": {"type": "string"}},
                    "timestamp_column": {"type": "string", "default": "timestamp"},
                    "with_status": {"type": "boolean", "default": False},
                }},
            "TrainingSetJob": {
                "type": "object", "required": ["id", "status", "features", "spine_rows", "created"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"}, "status": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
                    "features": {"type": "array", "items": {"type": "string"}}, "spine_rows": {"type": "integer"},
                    "rows": {"type": "integer"}, "error": {"type": "string"}, "created": {"type": "number"},
                    "finished": {"type": "number"}}},
            "PushRequest": {
                "type": "object", "required": ["events"], "additionalProperties": False,
                "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 10_000,
                                          "items": {"type": "object", "description": "one event: the source's "
                                                    "schema, times as ISO-8601 text with a zone"}}}},
            "PushResponse": {
                "type": "object", "required": ["accepted", "duplicates", "late_applied", "first_seq", "last_seq"],
                "additionalProperties": False,
                "properties": {"accepted": {"type": "integer"},
                               "duplicates": {"type": "integer", "description": "events whose id the log holds"},
                               "late_applied": {"type": "integer"},
                               "warned": {"type": "integer", "description": "applied events that broke a "
                                          "warn-mode expectation of the source"},
                               "first_seq": {"type": ["integer", "null"], "description": "the log sequences given"},
                               "last_seq": {"type": ["integer", "null"]}}},
            "MonitorPoints": {"type": "object", "required": ["points"], "properties": {"points": {"type": "array", "items": {
                "type": "object", "required": ["metric", "feature", "version", "window_start", "window_end", "value",
                                               "threshold", "status"],
                "properties": {"metric": {"type": "string"}, "feature": {"type": "string"}, "version": {"type": "string"},
                               "window_start": {"type": "string"}, "window_end": {"type": "string"},
                               "value": {"type": ["number", "null"]}, "threshold": {"type": ["number", "null"]},
                               "status": {"type": "string"}}}}}},
            "Catalog": {
                "type": "object", "required": ["features", "entities", "sources", "policy_version"],
                "additionalProperties": False,
                "properties": {
                    "policy_version": {"type": "string"},
                    "entities": {"type": "array", "items": {
                        "type": "object", "required": ["name", "keys"], "additionalProperties": False,
                        "properties": {"name": {"type": "string"},
                                       "keys": {"type": "object", "additionalProperties": {"type": "string"}}}}},
                    "sources": {"type": "array", "items": {
                        "type": "object", "required": ["name", "kind", "push"], "additionalProperties": False,
                        "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                       "push": {"type": "boolean", "description": "this token may push into it"}}}},
                    "features": {"type": "array", "items": {
                        "type": "object", "required": ["feature", "dtype", "version", "access"],
                        "properties": {"feature": {"type": "string"}, "dtype": {"type": "string"},
                                       "version": {"type": "string"}, "namespace": {"type": "string"},
                                       "kind": {"type": "string", "enum": ["view", "window", "resolver"]},
                                       "source": {"type": "string"},
                                       "window": {"type": "object", "required": ["width", "aggregation", "column",
                                                                                 "filtered"],
                                                  "properties": {"width": {"type": "string"},
                                                                 "aggregation": {"type": "string"},
                                                                 "column": {"type": ["string", "null"]},
                                                                 "filtered": {"type": "boolean"}}},
                                       "entity": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                                       "owner": {"type": ["string", "null"]}, "description": {"type": "string"},
                                       "access": {"type": "string", "enum": ["read", "masked"]}}}},
                }},
        },
    },
    "paths": {
        "/v1/health": {"get": {"operationId": "health", "summary": "liveness (no token)", "security": [],
                               "responses": {"200": {"description": "alive", "content": {"application/json": {"schema": {
                                   "type": "object", "required": ["status"],
                                   "properties": {"status": {"const": "ok"}}}}}}, **_errors(405)}}},
        "/v1/ready": {"get": {"operationId": "ready", "summary": "readiness: the online store opens (no token)",
                              "security": [],
                              "responses": {"200": {"description": "ready", "content": {"application/json": {"schema": {
                                  "type": "object", "required": ["status", "policy_version"],
                                  "properties": {"status": {"const": "ready"},
                                                 "policy_version": {"type": "string"}}}}}},
                                  **_errors(405, 503)}}},
        "/v1/query": {"post": {
            "operationId": "query", "summary": "feature values for entities",
            "security": [{"token": []}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/QueryRequest"}}}},
            "responses": {"200": {"description": "values, in request order", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/QueryResponse"}}}}, **_errors(400, 401, 403, 405, 408, 413, 503)},
        }},
        "/v1/catalog": {"get": {
            "operationId": "catalog", "summary": "the features this token may request", "security": [{"token": []}],
            "responses": {"200": {"description": "features", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Catalog"}}}}, **_errors(401, 405, 503)}}},
        "/v1/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics, summed over the workers", "security": [{"token": []}],
            "responses": {"200": {"description": "the text exposition format", "content": {
                "text/plain": {"schema": {"type": "string"}}}}, **_errors(401, 403, 405, 503)}}},
        "/v1/monitor": {"get": {
            "operationId": "monitor", "summary": "monitor results as a time series (drift, null rate, expectations, "
                                                 "freshness), of the features the principal may see",
            "security": [{"token": []}],
            "parameters": [
                {"name": "metric", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "feature", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "since", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
                {"name": "until", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}],
            "responses": {"200": {"description": "points, oldest first", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/MonitorPoints"}}}}, **_errors(400, 401, 403, 405, 503)}}},
        "/v1/push/{source}": {"post": {
            "operationId": "push", "summary": "events into a stream source: all or none, answered after the commit "
                                              "that logged them; idempotent by event id",
            "security": [{"token": []}],
            "parameters": [{"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PushRequest"}}}},
            "responses": {"200": {"description": "committed", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PushResponse"}}}},
                **_errors(400, 401, 403, 405, 408, 413, 422, 503)}}},
        "/v1/training-sets": {"post": {
            "operationId": "submit_training_set",
            "summary": "a point-in-time-correct training set, as a job; the spine as JSON columns or a Parquet body "
                       "(then features, timestamp_column and with_status are query parameters)",
            "security": [{"token": []}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/TrainingSetRequest"}}}},
            "responses": {"202": {"description": "accepted: poll its status", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/TrainingSetJob"}}}},
                **_errors(400, 401, 403, 405, 408, 413, 503)}}},
        "/v1/training-sets/{job}": {"get": {
            "operationId": "training_set_status", "summary": "a job's status", "security": [{"token": []}],
            "parameters": [{"name": "job", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the job", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/TrainingSetJob"}}}}, **_errors(400, 401, 403, 404, 405, 503)}}},
        "/v1/training-sets/{job}/result": {"get": {
            "operationId": "training_set_result", "summary": "the training set, as Parquet", "security": [{"token": []}],
            "parameters": [{"name": "job", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "Parquet", "content": {
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}},
                **_errors(400, 401, 403, 404, 405, 409, 503)}}},
        "/v1/openapi.json": {"get": {"operationId": "openapi", "summary": "this document", "security": [],
                                     "responses": {"200": {"description": "OpenAPI 3.1",
                                                           "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    },
}
