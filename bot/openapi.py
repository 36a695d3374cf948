"""The OpenAPI 3.1 description of the routes in ``bot.api``; request schemas come from the pydantic models."""

from __future__ import annotations

import functools
from typing import Any

from pydantic.json_schema import models_json_schema

from bot.batch_schemas import BatchBody
from bot.domain import RISKS, STATUSES
from bot.schemas import CancelBody, DecisionBody, LabelsBody, PolicyEvaluateBody, ResultBody, SubmitBody

_REF = "#/components/schemas/{model}"

_NULLABLE_STR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_PERSON_PROPS: dict[str, Any] = {"id": _NULLABLE_STR, "name": _NULLABLE_STR}
_PERSON: dict[str, Any] = {"type": "object", "properties": _PERSON_PROPS}

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "action", "risk", "labels", "agent", "created_at", "expires_at", "version"],
    "properties": {
        "id": {"type": "string", "pattern": "^req_[0-9a-z]{26}$"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "action": {"type": "object", "properties": {"tool": {"type": "string"}, "args": {"type": "object"}}},
        "final_args": {"type": ["object", "null"]},
        "context": {"type": "object"},
        "risk": {"type": "string", "enum": list(RISKS)},
        "labels": {"type": "array", "items": {"type": "string"}},
        "agent": {"type": "string"},
        "channel": _NULLABLE_STR,
        "reviewers": {"type": "array", "items": {"type": "string"}},
        "required_approvals": {"type": "integer"},
        "approvals": {"type": "array", "items": {"type": "object", "properties": {
            "reviewer": _PERSON, "at": _TIME, "version": {"type": "integer"}, "via": {"type": "string"}}}},
        "decision": {"type": ["object", "null"], "properties": {
            "kind": {"type": "string"},
            "by": {"type": "object", "properties": {**_PERSON_PROPS, "via": _NULLABLE_STR}},
            "at": _NULLABLE_TIME, "feedback": _NULLABLE_STR, "rule": _NULLABLE_STR}},
        "created_at": _TIME,
        "expires_at": _TIME,
        "decided_at": _NULLABLE_TIME,
        "result": {"type": ["object", "null"]},
        "slack": {"type": ["object", "null"]},
        "version": {"type": "integer"},
        "rule": _NULLABLE_STR,
    },
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}}}}},
}


def _json_body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}}}


def _resp(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


_REQ = {"$ref": _REF.format(model="Request")}
_ERR = {"$ref": _REF.format(model="Error")}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_BATCH: dict[str, Any] = {"type": "object", "required": ["id", "status", "requests"], "properties": {
    "id": {"type": "string"}, "kind": {"type": "string"}, "agent": _NULLABLE_STR, "channel": _NULLABLE_STR,
    "created_at": _TIME, "status": {"type": "string", "enum": ["pending", "done"]},
    "counts": {"type": "object"}, "requests": {"type": "array", "items": _REQ}, "slack": {"type": ["object", "null"]}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Malformed body", 401: "Missing or unknown token", 403: "Not allowed for this token",
            404: "No such request", 409: "Conflict: already decided, version changed or idempotency key reused",
            413: "Body larger than 1 MiB", 415: "Body is not JSON", 422: "A field is invalid (named)",
            503: "The server is stopping or its database is busy: call again after Retry-After"}
    return {str(c): _resp(text[c], _ERR) for c in codes}


def _op(summary: str, ok: dict[str, Any], *errs: int, body: str | None = None, params: Any = None,
        body_required: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(401, *errs)}}
    if body:
        op["requestBody"] = _json_body(body, body_required)
    if params:
        op["parameters"] = params
    return op


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "validation") for m in (SubmitBody, DecisionBody, CancelBody, LabelsBody, ResultBody,
                                       PolicyEvaluateBody, BatchBody)],
        ref_template=_REF,
    )
    schemas = dict(defs.get("$defs", {}))
    schemas.update(Request=REQUEST_SCHEMA, Error=ERROR_SCHEMA)
    q = lambda name, schema: {"name": name, "in": "query", "required": False, "schema": schema}  # noqa: E731
    list_params = [
        q("status", {"type": "string", "enum": list(STATUSES)}),
        q("label", {"type": "string"}), q("tool", {"type": "string"}), q("agent", {"type": "string"}),
        q("risk", {"type": "string", "enum": list(RISKS)}), q("channel", {"type": "string"}),
        q("limit", {"type": "integer", "minimum": 1, "maximum": 200}), q("cursor", {"type": "string"}),
    ]
    listing = {"type": "object", "properties": {"requests": {"type": "array", "items": _REQ},
                                                "next_cursor": _NULLABLE_STR}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "signoff", "version": "1", "description": "Human sign-off for AI agent actions."},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/requests": {
                "post": _op("Submit an action for sign-off",
                            {"201": _resp("Created", _REQ), "200": _resp("Idempotent replay", _REQ)},
                            400, 409, 413, 415, 422, body="SubmitBody"),
                "get": _op("List requests, newest first", {"200": _resp("A page", listing)}, 422,
                           params=list_params),
            },
            "/v1/requests/{id}": {"get": _op("Get a request", {"200": _resp("The request", _REQ)}, 404,
                                             params=[_ID])},
            "/v1/requests/{id}/wait": {"get": _op(
                "Wait until the request is decided or timeout_s passes", {"200": _resp("The request", _REQ)},
                404, 422, 503, params=[_ID, q("timeout_s", {"type": "number", "minimum": 0, "maximum": 60})])},
            "/v1/requests/{id}/decision": {"post": _op(
                "Approve, edit or reject (reviewer or admin token)", {"200": _resp("Decided", _REQ)},
                400, 403, 404, 409, 413, 415, 422, body="DecisionBody", params=[_ID])},
            "/v1/requests/{id}/cancel": {"post": _op(
                "Withdraw a pending request (its agent or an admin)", {"200": _resp("Cancelled", _REQ)},
                400, 403, 404, 409, 413, 415, 422, body="CancelBody", params=[_ID], body_required=False)},
            "/v1/requests/{id}/labels": {"post": _op(
                "Add or remove labels", {"200": _resp("Updated", _REQ)}, 400, 404, 413, 415, 422,
                body="LabelsBody", params=[_ID])},
            "/v1/requests/{id}/result": {"post": _op(
                "Report the outcome after executing", {"200": _resp("Recorded", _REQ)},
                400, 403, 404, 409, 413, 415, 422, body="ResultBody", params=[_ID])},
            "/v1/policy/evaluate": {"post": _op(
                "Explain what the policies would do with a submission, without creating it",
                {"200": _resp("The explanation", {"type": "object", "properties": {
                    "decision": {"type": "object"}, "summary": {"type": "string"}, "outcome": {"type": "string"},
                    "rules": {"type": "array", "items": {"type": "object"}}, "routing": {"type": "object"},
                    "grant": {"type": ["object", "null"]}, "agent": {"type": "string"}}})},
                400, 403, 413, 415, 422, body="PolicyEvaluateBody")},
            "/v1/batches": {"post": _op(
                "Submit up to 100 actions reviewed together",
                {"201": _resp("Created", _BATCH), "200": _resp("Idempotent replay", _BATCH)},
                400, 409, 413, 415, 422, body="BatchBody")},
            "/v1/batches/{id}": {"get": _op("Get a batch", {"200": _resp("The batch", _BATCH)}, 404,
                                            params=[_ID])},
            "/v1/batches/{id}/wait": {"get": _op(
                "Wait until every request of the batch is decided or timeout_s passes",
                {"200": _resp("The batch", _BATCH)}, 404, 422,
                params=[_ID, q("timeout_s", {"type": "number", "minimum": 0, "maximum": 60})])},
            "/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                         "responses": {"200": _resp("OpenAPI", {"type": "object"})}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [],
                                 "responses": {"200": _resp("Alive", {"type": "object"})}}},
            "/readyz": {"get": {"summary": "Readiness (database reachable)", "security": [], "responses": {
                "200": _resp("Ready", {"type": "object"}), "503": _resp("Not ready", {"type": "object"})}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {
                "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
    }
