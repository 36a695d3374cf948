"""``/v1/batches``: submit up to 100 actions reviewed together, read a batch, long-poll until all are decided.

Roles as for requests: any token submits (as itself); an agent token reads only its own batches, reviewer and
admin tokens read all.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.api import _QUERY, _body, _float_param, _json, _query
from bot.batch_schemas import BatchBody
from bot.batches import BatchService
from bot.domain import Principal
from bot.effects import public_request
from bot.errors import NotFound

BATCH_ID = re.compile(r"^bat_[0-9a-z]{26}$")


def _batch_id(request: web.Request) -> str:
    bid = request.match_info["id"]
    if not BATCH_ID.match(bid):
        raise NotFound(f"no batch with id {bid!r}")
    return bid


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {**batch, "requests": [public_request(r) for r in batch["requests"]]}


def batch_routes(batches: BatchService, who: Callable[[web.Request], Awaitable[Principal]]) -> list[web.RouteDef]:
    async def submit(request: web.Request) -> web.Response:
        principal = await who(request)
        body = await _body(request, BatchBody)
        out, created = await batches.submit(agent=principal.name, body=body)
        return _json(_public(out), status=201 if created else 200)

    async def get(request: web.Request) -> web.Response:
        principal = await who(request)
        return _json(_public(await batches.get(batch_id=_batch_id(request), principal=principal)))

    async def wait(request: web.Request) -> web.Response:
        principal = await who(request)
        q = _query(request, _QUERY["wait"])
        timeout_s = _float_param(q, "timeout_s", 30.0, 0.0, 60.0)
        out = await batches.wait(batch_id=_batch_id(request), timeout_s=timeout_s, principal=principal)
        return _json(_public(out))

    return [
        web.post("/v1/batches", submit),
        web.get("/v1/batches/{id}", get),
        web.get("/v1/batches/{id}/wait", wait),
    ]
