"""The agent HTTP API (``/v1``), health, readiness and metrics: parse, call the service, serialise."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot import domain, jsonfast
from bot.domain import Actor, Principal
from bot.effects import public_request
from bot.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    SignoffError,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from bot.metrics import Metrics
from bot.openapi import openapi_document
from bot.parking import CountedLater, ParkedWaits
from bot.schemas import CancelBody, DecisionBody, LabelsBody, PolicyEvaluateBody, ResultBody, SubmitBody
from bot.service import ApprovalService, WaitTicket
from bot.tokens import Tokens

if TYPE_CHECKING:
    from bot.batches import BatchService
from storage.db import DatabaseBusy
from storage.repository import ListFilter

log = logging.getLogger("signoff.api")

MAX_BODY = 1024 * 1024
ID_PATTERN = re.compile(r"^req_[0-9a-z]{26}$")
B = TypeVar("B", bound=BaseModel)
WAIT_ROUTE = "/v1/requests/{id}/wait"
PRINCIPAL = web.AppKey("principal", Principal)


@dataclass
class ApiDeps:
    service: ApprovalService
    tokens: Tokens
    metrics: Metrics
    ready: Callable[[], Awaitable[None]]
    counts: Callable[[], Awaitable[tuple[dict[str, int], int]]]
    batches: BatchService | None = None
    parking: ParkedWaits | None = None


def error_response(err: SignoffError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(err.to_json(), status=err.status, headers=headers)


def response_for_error(method: str, path: str, exc: Exception) -> web.Response:
    """The JSON error answer to an exception raised while handling ``method path``; re-raises a redirect."""
    try:
        raise exc
    except SignoffError as e:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(e, Unauthenticated) else None
        return error_response(e, headers)
    except DatabaseBusy:
        log.warning("database busy: no connection free for %s %s", method, path)
        return error_response(Unavailable("the database is busy; retry in a second"), {"Retry-After": "1"})
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLarge(f"the body is larger than the limit of {MAX_BODY} bytes (1 MiB)"))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
        err = SignoffError(e.reason or "error")
        err.status, err.code = e.status, code
        if e.status == 404:
            err.message = f"no route for {method} {path}"
        elif e.status == 405:
            err.message = f"{method} is not allowed on {path}"
        return error_response(err, {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None)
    except Exception:
        log.exception("unhandled error on %s %s", method, path)
        return error_response(SignoffError("internal error; the request was not applied"))


def route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource else "unmatched"


def make_error_middleware(metrics: Metrics) -> Any:
    @web.middleware
    async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        try:
            resp = await handler(request)
        except Exception as e:
            resp = response_for_error(request.method, request.path, e)
        if not isinstance(resp, CountedLater):
            metrics.count_http(request.method, route_name(request), resp.status)
        return resp

    return errors


async def _principal(request: web.Request, tokens: Tokens) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing 'Authorization: Bearer <token>' header")
    return await tokens.authenticate(token.strip())


async def _body(request: web.Request, model: type[B]) -> B:
    ctype = request.content_type
    if ctype != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {ctype or 'none'!r}")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes; the limit is {MAX_BODY} (1 MiB)")
    raw = await request.read()
    try:
        data = json.loads(raw, parse_constant=_not_json_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    except RecursionError:  # e.g. a megabyte of "[": refuse it rather than answer 500
        raise BadRequest("the body is nested too deeply to be accepted as JSON") from None
    if not isinstance(data, dict):
        raise ValidationFailed("the body must be a JSON object", details=[{"field": "(body)"}])
    nul_at = _nul_path(data) if b"\\u0000" in raw else None  # JSON can only carry NUL escaped
    if nul_at is not None:
        raise ValidationFailed(f"{nul_at}: text must not contain the NUL character (\\u0000)",
                               details=[{"field": nul_at, "message": "contains NUL"}])
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _validation_error(e) from None


def _nul_path(data: Any) -> str | None:
    """Where a string or key holds U+0000 (which PostgreSQL cannot store), else None."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str) and "\x00" in node:
            return path or "(body)"
        if isinstance(node, list):
            stack.extend((v, f"{path}.{i}") for i, v in enumerate(node))
        elif isinstance(node, dict):
            for k, v in node.items():
                sub = f"{path}.{k}" if path else k
                if "\x00" in k:
                    return sub.replace("\x00", "\\u0000")
                stack.append((v, sub))
    return None


def _not_json_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not (and PostgreSQL's jsonb refuses them).
    raise ValueError(f"{name} is not a JSON value")


def _validation_error(e: ValidationError) -> ValidationFailed:
    details = []
    for err in e.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-")) or "(body)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        details.append({"field": loc, "message": msg})
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ValidationFailed(f"{first['field']}: {first['message']}{more}", details=details)


def _request_id(request: web.Request) -> str:
    rid = request.match_info["id"]
    if not ID_PATTERN.match(rid):
        raise NotFound(f"no request with id {rid!r}")
    return rid


_QUERY = {
    "list": {"status", "label", "tool", "agent", "risk", "channel", "limit", "cursor"},
    "wait": {"timeout_s"},
}


def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise ValidationFailed(f"{unknown[0]}: unknown query parameter; allowed: {', '.join(sorted(allowed))}",
                               details=[{"field": u, "message": "unknown query parameter"} for u in unknown])
    for k in request.query:
        if "\x00" in request.query.getone(k):
            raise ValidationFailed(f"{k}: must not contain the NUL character", details=[{"field": k}])
    return {k: request.query.getone(k) for k in request.query}


def _int_param(q: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    if name not in q:
        return default
    try:
        value = int(q[name])
    except ValueError:
        raise ValidationFailed(f"{name}: expected an integer, got {q[name]!r}", details=[{"field": name}]) from None
    if not lo <= value <= hi:
        raise ValidationFailed(f"{name}: must be between {lo} and {hi}", details=[{"field": name}])
    return value


def _float_param(q: dict[str, str], name: str, default: float, lo: float, hi: float) -> float:
    if name not in q:
        return default
    try:
        value = float(q[name])
    except ValueError:
        raise ValidationFailed(f"{name}: expected a number, got {q[name]!r}", details=[{"field": name}]) from None
    if not lo <= value <= hi:  # also false for NaN
        raise ValidationFailed(f"{name}: must be between {lo:g} and {hi:g}", details=[{"field": name}])
    return value


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsonfast.dumps(data), status=status, content_type="application/json")


class Api:
    def __init__(self, deps: ApiDeps) -> None:
        self.d = deps

    def routes(self) -> list[web.RouteDef]:
        from bot.api_batches import batch_routes

        batches = batch_routes(self.d.batches, self._who) if self.d.batches is not None else []
        return [
            *batches,
            web.post("/v1/requests", self.submit),
            web.get("/v1/requests", self.list),
            web.get("/v1/requests/{id}", self.get),
            web.get(WAIT_ROUTE, self.wait),
            web.post("/v1/requests/{id}/decision", self.decide),
            web.post("/v1/requests/{id}/cancel", self.cancel),
            web.post("/v1/requests/{id}/labels", self.labels),
            web.post("/v1/requests/{id}/result", self.result),
            web.post("/v1/policy/evaluate", self.evaluate_policy),
            web.get("/v1/openapi.json", self.openapi),
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
        ]

    async def _who(self, request: web.Request) -> Principal:
        return await _principal(request, self.d.tokens)

    async def submit(self, request: web.Request) -> web.Response:
        principal = await self._who(request)
        body = await _body(request, SubmitBody)
        out = await self.d.service.submit(agent=principal.name, body=body)
        return _json(public_request(out.request), status=201 if out.created else 200)

    async def get(self, request: web.Request) -> web.Response:
        principal = await self._who(request)
        req = await self.d.service.get(request_id=_request_id(request), principal=principal)
        return _json(public_request(req))

    async def wait(self, request: web.Request) -> web.StreamResponse:
        principal = await self._who(request)
        q = _query(request, _QUERY["wait"])
        timeout_s = _float_param(q, "timeout_s", 30.0, 0.0, 60.0)
        service = self.d.service
        ticket = await service.start_wait(request_id=_request_id(request), timeout_s=timeout_s, principal=principal)
        if not isinstance(ticket, WaitTicket):
            return _json(public_request(ticket))
        parking = self.d.parking
        parked = parking.park(request, ticket, self._answer_parked) if parking is not None else None
        if parked is not None:
            return parked  # the connection is held by ParkedWaits until the answer (see bot/parking.py)
        return _json(public_request(await service.wait_out(ticket)))

    async def _answer_parked(self, ticket: WaitTicket) -> web.Response:
        """The answer to a wait parked in ``ParkedWaits``: what the handler would have sent, counted alike."""
        try:
            resp = _json(public_request(await self.d.service.finish_wait(ticket)))
        except Exception as e:
            resp = response_for_error("GET", f"/v1/requests/{ticket.request_id}/wait", e)
        self.d.metrics.count_http("GET", WAIT_ROUTE, resp.status)
        return resp

    async def list(self, request: web.Request) -> web.Response:
        principal = await self._who(request)
        q = _query(request, _QUERY["list"])
        if "status" in q and q["status"] not in domain.STATUSES:
            raise ValidationFailed(f"status: expected one of {', '.join(domain.STATUSES)}, got {q['status']!r}",
                                   details=[{"field": "status"}])
        if "risk" in q and q["risk"] not in domain.RISKS:
            raise ValidationFailed(f"risk: expected one of {', '.join(domain.RISKS)}, got {q['risk']!r}",
                                   details=[{"field": "risk"}])
        cursor = q.get("cursor")
        if cursor is not None and not ID_PATTERN.match(cursor):
            raise ValidationFailed("cursor: not a cursor this API returned", details=[{"field": "cursor"}])
        limit = _int_param(q, "limit", 50, 1, 200)
        filt = ListFilter(status=q.get("status"), label=q.get("label"), tool=q.get("tool"),
                          agent=q.get("agent"), risk=q.get("risk"), channel=q.get("channel"))
        items, next_cursor = await self.d.service.list_requests(filt=filt, limit=limit, cursor=cursor,
                                                                principal=principal)
        return _json({"requests": [public_request(r) for r in items], "next_cursor": next_cursor})

    async def decide(self, request: web.Request) -> web.Response:
        principal = await self._who(request)
        if not principal.may_decide:
            raise Forbidden("deciding needs a reviewer or admin token; this token has the agent role")
        rid = _request_id(request)
        body = await _body(request, DecisionBody)
        if isinstance(body.reviewer, str):
            actor = Actor(body.reviewer, body.reviewer, "api")
        elif body.reviewer is not None:
            actor = Actor(body.reviewer.id, body.reviewer.name or body.reviewer.id, "api")
        else:
            actor = Actor(principal.name, principal.name, "api")
        req = await self.d.service.decide(request_id=rid, kind=body.decision, actor=actor, args=body.args,
                                          feedback=body.feedback, expected_version=body.version)
        return _json(public_request(req))

    async def cancel(self, request: web.Request) -> web.Response:
        principal = await self._who(request)
        rid = _request_id(request)
        body = await _body(request, CancelBody) if request.can_read_body else CancelBody()
        req = await self.d.service.cancel(request_id=rid, principal=principal, reason=body.reason)
        return _json(public_request(req))

    async def labels(self, request: web.Request) -> web.Response:
        principal = await self._who(request)
        rid = _request_id(request)
        body = await _body(request, LabelsBody)
        actor = Actor(principal.name, principal.name, "api")
        req = await self.d.service.change_labels(request_id=rid, add=body.add, remove=body.remove, actor=actor,
                                                 principal=principal)
        return _json(public_request(req))

    async def result(self, request: web.Request) -> web.Response:
        principal = await self._who(request)
        rid = _request_id(request)
        body = await _body(request, ResultBody)
        req = await self.d.service.report_result(request_id=rid, ok=body.ok, detail=body.detail,
                                                 principal=principal)
        return _json(public_request(req))

    async def evaluate_policy(self, request: web.Request) -> web.Response:
        principal = await self._who(request)
        body = await _body(request, PolicyEvaluateBody)
        agent = principal.name
        if body.agent is not None and body.agent != principal.name:
            if principal.role != "admin":
                raise Forbidden("only an admin token may evaluate on behalf of another agent")
            agent = body.agent
        return _json(self.d.service.evaluate_policy(agent=agent, body=body))

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document())

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            await self.d.ready()
        except Exception as e:
            log.warning("not ready: %s: %s", type(e).__name__, e)
            return _json({"status": "unavailable", "reason": "database unreachable"}, status=503)
        return _json({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        counts, backlog = await self.d.counts()
        self.d.metrics.set_counts(counts, waiting=len(self.d.service.waiters), outbox_backlog=backlog)
        return web.Response(body=self.d.metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})
