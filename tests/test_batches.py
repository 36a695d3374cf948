"""Batches: ``POST /v1/batches`` and reading and waiting on them, one card listing the items with per-item and
all-at-once decisions (each item decided on its own), and ``gate.batch()`` in the client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.blocks_batch import ITEMS_PER_MESSAGE
from bot.ids import Action, Block, View
from signoff import AsyncSignoff, Signoff
from storage import repository as repo
from tests.support.fakeslack import Message
from tests.support.polling import until
from tests.support.slack_live import CHANNEL, DANA, ERIN, MALLORY, SlackLive, slack_app
from tests.support.slack_requests import block_action, view_submission


@pytest.fixture
async def sl(db_url: str) -> AsyncIterator[SlackLive]:
    async with slack_app(db_url) as s:
        yield s


def _actions(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"action": {"tool": "send_email", "args": {"to": f"c{i}@example.com"}}, **extra} for i in range(n)]


async def _submit(sl: SlackLive, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    status, out = await sl.live.call("POST", "/v1/batches", json=body, token=token)
    assert status == 201, out
    return dict(out)


async def _card(sl: SlackLive, batch_id: str, timeout: float = 10.0) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        _, batch = await sl.live.call("GET", f"/v1/batches/{batch_id}", token=sl.live.admin_token)
        if batch.get("slack"):
            return sl.slack.message(batch["slack"]["channel"], batch["slack"]["ts"])
        assert time.monotonic() < deadline, f"no card for {batch_id}"
        await asyncio.sleep(0.02)


def _elements(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [el for b in blocks if b["type"] == "actions" for el in b["elements"]]


def _item_buttons(blocks: list[dict[str, Any]], action_id: str) -> list[str]:
    return [el["value"] for el in _elements(blocks) if el["action_id"] == action_id]


def _click(sl: SlackLive, msg: Message, action_id: str, value: str, user: str) -> Any:
    url = sl.slack.response_url(channel=msg.channel, user=user, message_ts=msg.ts)
    return block_action(action_id=action_id, value=value, user_id=user, channel=msg.channel, message_ts=msg.ts,
                        message=msg.to_payload(), response_url=url)


async def _audit(sl: SlackLive, request_id: str) -> list[tuple[str, str | None]]:
    async with sl.live.app.db.read() as s:
        return [(e.kind, e.actor_id) for e in await repo.audit_for(s, request_id=request_id)]


# --- the API ---------------------------------------------------------------------------------------------------


async def test_submit_read_and_roles(sl: SlackLive) -> None:
    body = {"actions": [*_actions(2), {"action": {"tool": "issue_refund", "args": {"amount": 5}}, "risk": "high",
                                       "labels": ["refunds"], "context": {"summary": "the third"}}],
            "labels": ["needs-human-review"], "risk": "low", "context": {"summary": "shared", "session_id": "s-1"}}
    batch = await _submit(sl, body)
    assert batch["id"].startswith("bat_") and batch["kind"] == "api" and batch["agent"] == "agent-1"
    assert batch["status"] == "pending" and batch["counts"] == {"pending": 3}
    reqs = batch["requests"]
    assert [r["action"]["tool"] for r in reqs] == ["send_email", "send_email", "issue_refund"]
    assert [r["risk"] for r in reqs] == ["low", "low", "high"]
    assert reqs[2]["labels"] == ["needs-human-review", "refunds"] and reqs[0]["labels"] == ["needs-human-review"]
    assert reqs[2]["context"] == {"summary": "the third", "session_id": "s-1"}
    assert {r["channel"] for r in reqs} == {CHANNEL} and all("callback_url" not in r for r in reqs)
    status, again = await sl.live.call("GET", f"/v1/batches/{batch['id']}")
    assert status == 200 and [r["id"] for r in again["requests"]] == [r["id"] for r in reqs]
    status, one = await sl.live.call("GET", f"/v1/requests/{reqs[1]['id']}")
    assert status == 200 and one["status"] == "pending"
    # Another agent does not see it; reviewers and admins do.
    other = await sl.live.app.tokens.create(name="agent-2", role="agent")
    assert (await sl.live.call("GET", f"/v1/batches/{batch['id']}", token=other))[0] == 404
    assert (await sl.live.call("GET", f"/v1/batches/{batch['id']}", token=sl.live.reviewer_token))[0] == 200
    assert (await sl.live.call("GET", "/v1/batches/bat_nope"))[0] == 404


async def test_idempotency_and_bad_bodies(sl: SlackLive) -> None:
    body = {"actions": _actions(2), "idempotency_key": "k-1"}
    first = await _submit(sl, body)
    status, replay = await sl.live.call("POST", "/v1/batches", json=body)
    assert status == 200 and replay["id"] == first["id"]
    status, conflict = await sl.live.call("POST", "/v1/batches", json={**body, "actions": _actions(3)})
    assert status == 409 and conflict["error"]["code"] == "idempotency_conflict"
    for bad, field in [({"actions": []}, "actions"), ({"actions": _actions(101)}, "actions"),
                       ({"actions": [{**_actions(1)[0], "idempotency_key": "x"}]}, "actions.0.idempotency_key"),
                       ({"actions": _actions(1), "timout_s": 5}, "timout_s"),
                       ({"actions": [{"action": {"tool": "bad tool!"}}]}, "actions.0.action.tool")]:
        status, err = await sl.live.call("POST", "/v1/batches", json=bad)
        assert status == 422, (bad, err)
        assert err["error"]["details"][0]["field"] == field
    async with sl.live.app.db.read() as s:
        assert len(await repo.get_outbox(s, kind="slack.batch")) == 1  # the replay created nothing


async def test_wait_returns_when_all_are_terminal_with_each_outcome(sl: SlackLive) -> None:
    batch = await _submit(sl, {"actions": _actions(3)})
    bid, ids = batch["id"], [r["id"] for r in batch["requests"]]
    status, early = await sl.live.call("GET", f"/v1/batches/{bid}/wait?timeout_s=0.2")
    assert status == 200 and early["status"] == "pending"
    waiter = asyncio.create_task(sl.live.call("GET", f"/v1/batches/{bid}/wait?timeout_s=30"))
    for rid, decision in zip(ids, [{"decision": "approve"}, {"decision": "reject", "feedback": "no"},
                                   {"decision": "edit", "args": {"to": "z@example.com"}}], strict=True):
        await asyncio.sleep(0.1)
        assert not waiter.done()
        status, _ = await sl.live.call("POST", f"/v1/requests/{rid}/decision", json=decision,
                                       token=sl.live.reviewer_token)
        assert status == 200
    status, done = await asyncio.wait_for(waiter, 10)
    assert status == 200 and done["status"] == "done"
    assert [(r["id"], r["status"]) for r in done["requests"]] == list(zip(ids, ["approved", "rejected", "modified"],
                                                                          strict=True))
    assert done["counts"] == {"approved": 1, "rejected": 1, "modified": 1}
    assert (await sl.live.call("GET", f"/v1/batches/{bid}/wait?timeout_s=61"))[0] == 422


# --- the card ---------------------------------------------------------------------------------------------------


async def test_one_card_decided_partly_item_by_item_and_partly_with_approve_all(sl: SlackLive) -> None:
    batch = await _submit(sl, {"actions": _actions(4)})
    bid, ids = batch["id"], [r["id"] for r in batch["requests"]]
    card = await _card(sl, bid)
    assert len(sl.slack.calls("chat.postMessage", ok=True)) == 1  # one card, not four
    assert _item_buttons(card.blocks, Action.BATCH_APPROVE_ITEM) == ids
    approve_all = next(el for el in _elements(card.blocks) if el["action_id"] == Action.BATCH_APPROVE_ALL)
    assert approve_all["confirm"]["title"]["text"] == "Approve all?"
    for rid in ids:  # each request's card is the batch card
        _, req = await sl.live.call("GET", f"/v1/requests/{rid}")
        assert req["slack"]["ts"] == card.ts and req["slack"]["permalink"]
    # Item 1 approved on its own, item 2 rejected through the reject modal.
    await sl.send(_click(sl, card, Action.BATCH_APPROVE_ITEM, ids[0], DANA))
    await sl.send(_click(sl, card, Action.BATCH_REJECT_ITEM, ids[1], ERIN))
    view = (await sl.slack.wait_for("views.open", 1))[-1].params["view"]
    assert view["callback_id"] == View.REJECT
    fb = next(b["element"]["action_id"] for b in view["blocks"] if b.get("block_id") == Block.FEEDBACK)
    ok = await sl.send(view_submission(callback_id=View.REJECT, private_metadata=view["private_metadata"],
                                       user_id=ERIN, values={Block.FEEDBACK: {fb: "not this customer"}}))
    assert ok.status == 200
    await until(lambda: _item_buttons(sl.slack.message(card.channel, card.ts).blocks, Action.BATCH_APPROVE_ITEM)
                == ids[2:], "the card still offers the decided items")
    # Then Approve all takes the rest, each recorded as its own decision.
    await sl.send(_click(sl, sl.slack.message(card.channel, card.ts), Action.BATCH_APPROVE_ALL, bid, DANA))
    _, done = await sl.live.call("GET", f"/v1/batches/{bid}/wait?timeout_s=10")
    assert [r["status"] for r in done["requests"]] == ["approved", "rejected", "approved", "approved"]
    assert done["requests"][1]["decision"]["feedback"] == "not this customer"
    for rid, who in zip(ids, [DANA, ERIN, DANA, DANA], strict=True):
        events = await _audit(sl, rid)
        assert sum(kind in ("approved", "rejected") for kind, _ in events) == 1
        assert any(kind in ("approved", "rejected") and actor == who for kind, actor in events)
    summary = next(e for e in sl.slack.ephemerals(user=DANA) if "Approved 2" in e.text)
    assert "request(s) of the batch" in summary.text
    await until(lambda: not _elements(sl.slack.message(card.channel, card.ts).blocks), "buttons left on the card")
    final = json.dumps(sl.slack.message(card.channel, card.ts).blocks)
    assert "3 approved" in final and "1 rejected" in final and "not this customer" in final


async def test_reject_all_asks_for_feedback_and_leaves_what_i_may_not_decide(sl: SlackLive) -> None:
    batch = await _submit(sl, {"actions": [*_actions(2), {**_actions(1)[0], "reviewers": [MALLORY]}]})
    bid, ids = batch["id"], [r["id"] for r in batch["requests"]]
    card = await _card(sl, bid)
    await sl.send(_click(sl, card, Action.BATCH_REJECT_ALL, bid, DANA))
    view = (await sl.slack.wait_for("views.open", 1))[-1].params["view"]
    assert view["callback_id"] == View.BATCH_REJECT and view["private_metadata"] == bid
    fb = next(b["element"]["action_id"] for b in view["blocks"] if b.get("block_id") == Block.FEEDBACK)
    empty = await sl.send(view_submission(callback_id=View.BATCH_REJECT, private_metadata=bid, user_id=DANA,
                                          values={Block.FEEDBACK: {fb: "  "}}))
    assert empty.json()["response_action"] == "errors"
    ok = await sl.send(view_submission(callback_id=View.BATCH_REJECT, private_metadata=bid, user_id=DANA,
                                       values={Block.FEEDBACK: {fb: "wrong week"}}))
    assert ok.status == 200
    await until(lambda: any("Rejected 2" in m.text for m in sl.slack.messages_in(sl.slack.dm_channel(DANA))),
                "no summary in the reviewer's DM")
    _, now = await sl.live.call("GET", f"/v1/batches/{bid}")
    assert [r["status"] for r in now["requests"]] == ["rejected", "rejected", "pending"]
    assert {r["decision"]["feedback"] for r in now["requests"][:2]} == {"wrong week"}
    dm = next(m for m in sl.slack.messages_in(sl.slack.dm_channel(DANA)) if "Rejected 2" in m.text)
    assert "1 you may not decide" in dm.text and ids[2] not in dm.text


async def test_a_big_batch_continues_in_the_cards_thread(sl: SlackLive) -> None:
    n = 2 * ITEMS_PER_MESSAGE + 5
    batch = await _submit(sl, {"actions": _actions(n)})
    card = await _card(sl, batch["id"], timeout=15)
    await until(lambda: len(sl.slack.replies(card.channel, card.ts)) == 2, "no thread parts", timeout=15)
    listed = _item_buttons(card.blocks, Action.BATCH_APPROVE_ITEM)
    for reply in sl.slack.replies(card.channel, card.ts):
        listed += _item_buttons(reply.blocks, Action.BATCH_APPROVE_ITEM)
        assert len(reply.blocks) <= 50
    assert listed == [r["id"] for r in batch["requests"]] and len(card.blocks) <= 50
    # A decision on an item listed in the thread updates that part (and the counts on the card).
    last = sl.slack.replies(card.channel, card.ts)[-1]
    await sl.send(_click(sl, last, Action.BATCH_APPROVE_ITEM, listed[-1], DANA))
    await until(lambda: listed[-1] not in _item_buttons(sl.slack.message(last.channel, last.ts).blocks,
                                                         Action.BATCH_APPROVE_ITEM), "the thread part was not updated")
    await until(lambda: "1 approved" in json.dumps(sl.slack.message(card.channel, card.ts).blocks),
                "the card's counts were not updated")


# --- the client ---------------------------------------------------------------------------------------------------


async def test_client_batch_submits_one_server_batch_and_waits_for_it(sl: SlackLive) -> None:
    live = sl.live
    with Signoff(live.url, live.agent_token) as gate:
        batch = gate.batch(labels=["needs-human-review"], context="weekly refunds")
        batch.add("issue_refund", {"order": "A-1", "amount": 5})
        batch.add("issue_refund", {"order": "A-2", "amount": 7}, risk="high")
        handles = await asyncio.to_thread(batch.submit)
        assert len(handles) == 2
        waiting = asyncio.create_task(asyncio.to_thread(batch.wait_all, 20))
        await live.call("POST", f"/v1/requests/{handles[1].id}/decision", token=live.reviewer_token,
                        json={"decision": "reject", "feedback": "too much"})
        await live.call("POST", f"/v1/requests/{handles[0].id}/decision", token=live.reviewer_token,
                        json={"decision": "approve"})
        decisions = await waiting
    assert [(d.request_id, d.status) for d in decisions] == [(handles[0].id, "approved"),
                                                             (handles[1].id, "rejected")]
    _, stored = await live.call("GET", f"/v1/requests/{handles[1].id}")
    assert stored["risk"] == "high" and stored["labels"] == ["needs-human-review"]
    assert stored["context"] == {"summary": "weekly refunds"}
    async with live.app.db.read() as s:
        assert len(await repo.get_outbox(s, kind="slack.batch")) == 1  # one server batch, one card


async def test_async_client_batch_add_and_wait_all(sl: SlackLive) -> None:
    live = sl.live
    async with AsyncSignoff(live.url, live.agent_token) as gate, gate.batch(risk="low") as batch:
        batch.add("send_email", {"to": "a@b.com"})
        batch.add("send_email", {"to": "b@b.com"})
        handles = await batch.submit()
        waiting = asyncio.create_task(batch.wait_all(timeout=20))
        for h in handles:
            await live.call("POST", f"/v1/requests/{h.id}/decision", token=live.reviewer_token,
                            json={"decision": "approve"})
        decisions = await waiting
    assert [d.status for d in decisions] == ["approved", "approved"]
    assert all(h.data["risk"] == "low" for h in batch.handles)


def test_batch_card_parts_stay_within_limits_and_confirm_critical_items() -> None:
    from datetime import UTC, datetime

    from bot.blocks_batch import batch_message, parts
    from bot.blocks_limits import check_message_limits

    now = datetime.now(UTC)
    items = [{"id": f"req_{i:026d}", "status": "pending" if i % 3 else "rejected", "risk": "critical",
              "action": {"tool": "t" * 64, "args": {}}, "agent": "a" * 128, "labels": ["x" * 64] * 32,
              "context": {"summary": "<&>" * 3000}, "created_at": "2026-01-01T00:00:00Z",
              "expires_at": "2026-01-02T00:00:00Z", "required_approvals": 3, "approvals": [],
              "decision": {"by": {"id": "U0DANA", "name": "Dana"}, "feedback": "no " * 2000,
                           "at": "2026-01-01T00:05:00Z"}} for i in range(100)]
    batch = {"id": "bat_" + "0" * 26, "kind": "api", "agent": "a" * 200, "requests": items}
    assert parts(100) == 5
    for part in range(parts(100)):
        message = batch_message(batch, part=part, now=now)
        check_message_limits(message)
        assert len(message["blocks"]) <= 50
    first = batch_message(batch, part=0, now=now)["blocks"]
    approve = next(el for b in first if b["type"] == "actions" for el in b["elements"]
                   if el["action_id"] == Action.BATCH_APPROVE_ITEM)
    assert approve["confirm"]["title"]["text"] == "Approve a critical action?"
