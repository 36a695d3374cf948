"""The use cases: submit, read, wait, decide, cancel, label, report a result, expire.

This is the one place that combines database writes with outgoing work (as outbox rows in the same
transaction) and with waking waiting agents after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import orjson

from bot import domain
from bot.clock import Clock
from bot.config import Config
from bot.domain import Actor, Principal
from bot.effects import Change, Effects, OutboxRow
from bot.errors import AlreadyDecided, Conflict, Forbidden, IdempotencyConflict, NotFound, ValidationFailed
from bot.grants import Grants
from bot.intake import GroupCommitter
from bot.ladder import ladder_fields
from bot.schemas import SubmitBody
from bot.serialize import request_json, row_json
from bot.waiters import NOTIFY_CHANNEL, Waiters
from storage import repository as repo
from storage import writes
from storage.db import Database
from storage.models import Request
from storage.repository import ListFilter

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger("signoff.service")

MAX_WAIT_S = 60.0
EXPIRY_BATCH = 1000


@dataclass(slots=True)
class WaitTicket:
    """An agent waiting on a request: woken through ``fut`` by the decision, answered at ``deadline`` (event
    loop time) at the latest. Small, because ten thousand of them may be parked at once."""

    request_id: str
    fut: asyncio.Future[dict[str, Any] | None]
    deadline: float
    principal: Principal | None


@dataclass
class _Prepared:
    row: dict[str, Any]
    labels: list[str]
    audit: list[dict[str, Any]]
    idem: tuple[str, str] | None
    body_hash: str
    budget: tuple[str, int, int] | None = None  # (rule, max per window, window seconds)
    public: dict[str, Any] | None = None
    body: SubmitBody | None = None  # kept for comparing with a hash stored in the earlier format


@dataclass(frozen=True)
class Submitted:
    request: dict[str, Any]
    created: bool


@dataclass
class ServiceHooks:
    """Callbacks for metrics; the service never imports the metrics library."""

    on_submitted: list[Any] = field(default_factory=list)
    on_terminal: list[Any] = field(default_factory=list)

    def submitted(self, req: dict[str, Any]) -> None:
        for f in self.on_submitted:
            f(req)

    def terminal(self, req: dict[str, Any]) -> None:
        for f in self.on_terminal:
            f(req)


class ApprovalService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        config: Config,
        effects: Sequence[Effects] = (),
        waiters: Waiters | None = None,
        default_channel: str | None = None,
        mode: str = "on",
        hooks: ServiceHooks | None = None,
        grants: Grants | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.policy = config.policy  # compiled once (a pydantic private attribute is slow to read per request)
        self.effects = list(effects)
        self.waiters = waiters or Waiters()
        self.default_channel = default_channel
        self.mode = mode
        self.hooks = hooks or ServiceHooks()
        self.grants = grants
        self.outbox_wakeup = asyncio.Event()
        self._intake: GroupCommitter[_Prepared, Submitted | _Failed] = GroupCommitter(self._commit_submissions)

    # --- submit -----------------------------------------------------------------------------------------

    async def submit(self, *, agent: str, body: SubmitBody) -> Submitted:
        prepared = self.prepare(agent=agent, body=body)
        result = await self._intake.submit(prepared)
        if isinstance(result, _Failed):
            raise result.error
        if result.created:
            self.hooks.submitted(result.request)
            if domain.is_terminal(result.request["status"]):
                self.hooks.terminal(result.request)
        return result

    def prepare(self, *, agent: str, body: SubmitBody) -> _Prepared:
        now = self.clock.now()
        cfg = self.config
        tool, args = body.action.tool, body.action.args
        matched = domain.match_route(cfg.routes, tool=tool, risk=body.risk, labels=body.labels, agent=agent)
        route = matched[1] if matched else None
        policy = self.policy
        verdict = policy.evaluate(tool=tool, agent=agent, risk=body.risk, labels=body.labels, args=args,
                                  now=now) if len(policy) else None
        grant = None
        if self.grants is not None and (verdict is None or verdict.effect != "deny"):
            grant = self.grants.match(agent=agent, tool=tool, args=args, now=now)
        routed = verdict if verdict is not None and verdict.effect in ("require", "budget") else None
        channel = (body.channel or (routed and routed.channel) or (route and route.channel)
                   or cfg.slack.default_channel or self.default_channel)
        reviewers = body.reviewers or list((routed and routed.reviewers) or (route and route.reviewers)
                                           or cfg.reviewers)
        required = (body.required_approvals or (routed and routed.required_approvals)
                    or (route and route.required_approvals) or 1)
        timeout_s = (body.timeout_s or (routed and routed.timeout_s) or (route and route.timeout_s)
                     or cfg.timeouts.default_s)
        rid = domain.new_id("req_", now)
        body_hash = _hash_body(body)
        rule = f"policy:{verdict.rule_name}" if verdict is not None else (f"route:{matched[0]}" if matched else None)
        row: dict[str, Any] = dict(
            id=rid,
            status="pending",
            tool=tool,
            args=args,
            final_args=None,
            context=body.context.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
            agent=agent,
            risk=body.risk,
            channel=channel,
            reviewers=list(reviewers),
            required_approvals=required,
            version=1,
            created_at=now,
            expires_at=now + timedelta(seconds=timeout_s),
            idempotency_key=body.idempotency_key,
            body_hash=body_hash,
            callback_url=str(body.callback_url) if body.callback_url else None,
            rule=rule,
            **ladder_fields(cfg, route, now=now),
        )
        audit = [_audit(rid, "created", Actor(agent, agent, "api"), now, {"tool": tool})]
        if verdict is not None or grant is not None:
            audit.append(_audit(rid, "policy-evaluated", _POLICY, now, {
                "rule": verdict.rule_name if verdict else None, "effect": verdict.effect if verdict else None,
                "grant": grant.id if grant else None}))
        budget = None
        if self.mode == "off":
            _decide_at_submit(row, audit, "approved", "SIGNOFF_MODE=off", None, now)
        elif verdict is not None and verdict.effect == "deny":
            _decide_at_submit(row, audit, "rejected", rule, verdict.reason, now)
        elif grant is not None:
            _decide_at_submit(row, audit, "approved", f"grant:{grant.id}", None, now)
        elif verdict is not None and verdict.effect == "auto_approve":
            _decide_at_submit(row, audit, "approved", rule, None, now, watch=verdict.watch)
        elif verdict is not None and verdict.effect == "budget":
            assert verdict.budget_max is not None and verdict.budget_window_s is not None
            budget = (verdict.rule_name, verdict.budget_max, verdict.budget_window_s)
        idem = (agent, body.idempotency_key) if body.idempotency_key else None
        return _Prepared(row, list(body.labels), audit, idem, body_hash, budget, body=body)

    def evaluate_policy(self, *, agent: str, body: SubmitBody) -> dict[str, Any]:
        """What submitting ``body`` as ``agent`` would do now, without creating anything."""
        from bot.policy import explain

        now = self.clock.now()
        tool, args = body.action.tool, body.action.args
        out = explain(self.config.policy, tool=tool, agent=agent, risk=body.risk, labels=body.labels, args=args,
                      now=now)
        prepared = self.prepare(agent=agent, body=body)
        row = prepared.row
        grant = self.grants.match(agent=agent, tool=tool, args=args, now=now) if self.grants else None
        if self.mode == "off":
            outcome = "approved (SIGNOFF_MODE=off on the server)"
        elif prepared.budget is not None:
            outcome = "approved while the budget lasts, then waits for review"
        elif row["status"] == "pending":
            outcome = "waits for review"
        else:
            outcome = row["status"]
        out.update(
            agent=agent,
            outcome=outcome,
            grant=grant.to_json() if grant is not None and row.get("rule", "").startswith("grant:") else None,
            routing={"channel": row["channel"], "reviewers": row["reviewers"],
                     "required_approvals": row["required_approvals"],
                     "timeout_s": int((row["expires_at"] - row["created_at"]).total_seconds()),
                     "rule": row["rule"]},
        )
        return out

    def changes(self, p: _Prepared) -> list[Change]:
        public = _public(p)
        changes = [Change("created", public)]
        if domain.is_terminal(p.row["status"]):
            changes.append(Change(p.row["status"], public))
        return changes

    def _outbox_rows(self, submitted: Sequence[_Prepared], now: datetime) -> list[tuple[str, dict[str, Any]]]:
        """The outbox rows new requests cause (a card, a callback), each with the id of its request."""
        return [(p.row["id"], r.to_row(now)) for p in submitted for c in self.changes(p) for r in self.plan(c)]

    def take_budgets(self, conn: Connection, new: Sequence[_Prepared], now: datetime) -> None:
        """Budget rules auto-approve up to N per window per agent; the count is one atomic upsert per request,
        so concurrent submissions (on any replica) never exceed N. Beyond it the request waits for review.
        Runs inside the caller's write transaction (``Database.run_write``)."""
        for p in new:
            if p.budget is None:
                continue
            rule_name, maximum, window_s = p.budget
            start = datetime.fromtimestamp(int(now.timestamp()) // window_s * window_s, tz=UTC)
            if writes.take_budget(conn, rule=rule_name, agent=p.row["agent"], window_start=start, maximum=maximum):
                _decide_at_submit(p.row, p.audit, "approved", p.row["rule"], None, now)
                writes.finalise_at_submit(conn, request_id=p.row["id"], values={
                    k: p.row[k] for k in ("status", "decision_kind", "decided_by_id", "decided_by_name",
                                          "decided_via", "decided_at", "feedback", "rule", "channel", "final_args")})
            else:
                p.audit.append(_audit(p.row["id"], "budget-exhausted", _POLICY, now,
                                      {"rule": rule_name, "max": maximum, "window_s": window_s}))

    async def _commit_submissions(self, batch: Sequence[_Prepared]) -> list[Submitted | _Failed]:
        now = self.clock.now()
        # Within one batch, a repeated idempotency key is answered from the first occurrence.
        first_of: dict[tuple[str, str], int] = {}
        to_insert: list[_Prepared] = []
        for i, p in enumerate(batch):
            if p.idem is not None and p.idem in first_of:
                continue
            if p.idem is not None:
                first_of[p.idem] = i
            to_insert.append(p)

        labels = [(p.row["id"], lb) for p in to_insert for lb in p.labels]

        def statement(conn: Connection) -> tuple[set[str], int]:
            # PostgreSQL: the requests, their labels, outbox rows and audit events (of those inserted) in one
            # statement, committed on its own: a single round trip.
            owned = self._outbox_rows(to_insert, now)
            inserted = writes.pg_intake(conn, rows=[p.row for p in to_insert], labels=labels, outbox=owned,
                                        events=[e for p in to_insert for e in p.audit])
            return inserted, sum(1 for rid, _ in owned if rid in inserted)

        def transaction(conn: Connection) -> tuple[set[str], int]:
            inserted = writes.insert_requests(conn, rows=[p.row for p in to_insert], labels=labels)
            new = [p for p in to_insert if p.row["id"] in inserted]
            self.take_budgets(conn, new, now)  # may decide some at submit: their outbox rows are planned after
            queued = [row for _, row in self._outbox_rows(new, now)]
            writes.add_outbox(conn, items=queued)
            # Last: on PostgreSQL the audit chain's lock is held from here to the commit.
            writes.add_audit(conn, events=[e for p in new for e in p.audit])
            return inserted, len(queued)

        if (self.db.is_postgres and len(to_insert) <= writes.PG_ROWS_PER_INSERT
                and all(p.budget is None for p in to_insert)):
            inserted, queued = await self.db.run_statement(statement)
        else:
            inserted, queued = await self.db.run_write(transaction)
        if queued:  # only wake the outbox worker (a write transaction on SQLite) when there is work for it
            self.outbox_wakeup.set()
        lost = [p.idem for p in batch if p.idem is not None and p.row["id"] not in inserted]
        existing: dict[tuple[str, str], Request] = {}
        if lost:  # a retried submission: answer with the original, as committed
            async with self.db.read() as s:
                existing = await repo.find_by_idempotency(s, keys=lost)
        out: list[Submitted | _Failed] = []
        for p in batch:
            if p.row["id"] in inserted:
                out.append(Submitted(_public(p), created=True))
                continue
            assert p.idem is not None
            orig = existing.get(p.idem)
            if orig is None and p.idem in first_of and batch[first_of[p.idem]].row["id"] in inserted:
                first = batch[first_of[p.idem]]  # the first occurrence is in this very batch
                if first.body_hash != p.body_hash:
                    out.append(_idem_conflict(p.idem[1]))
                else:
                    out.append(Submitted(_public(first), created=False))
            elif orig is None:
                out.append(_Failed(Conflict("the request with this idempotency_key changed while submitting; "
                                            "retry the submission")))
            elif not _same_body(orig.body_hash, p):
                out.append(_idem_conflict(p.idem[1]))
            else:
                out.append(Submitted(request_json(orig, now=now), created=False))
        return out

    # --- read ---------------------------------------------------------------------------------------------

    async def get(self, *, request_id: str, principal: Principal | None = None) -> dict[str, Any]:
        def read(conn: Connection) -> writes.RequestView | None:
            return writes.request_view(conn, request_id=request_id)

        view = await self.db.run_read(read)  # on SQLite a reader thread: one hand-off for the whole read
        if view is None or (principal is not None and not _visible(view.row["agent"], principal)):
            raise NotFound(f"no request with id {request_id!r}")
        if domain.is_overdue(view.row["status"], view.row["expires_at"], self.clock.now()):
            await self.expire_due()
            view = await self.db.run_read(read)
            assert view is not None
        return row_json(view.row, view.labels, view.approvals, now=self.clock.now())

    async def list_requests(
        self, *, filt: ListFilter, limit: int, cursor: str | None, principal: Principal | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if principal is not None and not principal.sees_all:
            if filt.agent not in (None, principal.name):
                return [], None  # another agent's requests: none visible (not this agent's own instead)
            filt = ListFilter(**{**filt.__dict__, "agent": principal.name})
        now = self.clock.now()
        async with self.db.read() as s:
            rows = await repo.list_requests(s, filt=filt, now=now, limit=limit + 1, before_id=cursor)
        more = len(rows) > limit
        rows = rows[:limit]
        if any(domain.is_overdue(r.status, r.expires_at, now) for r in rows):
            self._kick_expiry()
        items = [request_json(r, now=now) for r in rows]
        return items, (rows[-1].id if more and rows else None)

    async def start_wait(
        self, *, request_id: str, timeout_s: float, principal: Principal | None = None
    ) -> dict[str, Any] | WaitTicket:
        """The request's view if there is nothing to wait for (terminal, or ``timeout_s`` 0), else a ticket
        registered to be woken by the decision, to be parked until its deadline and then handed to
        ``finish_wait``. The deadline is also the request's own (plus a little), so an expiry is reported at
        once even before the sweep runs."""
        timeout_s = max(0.0, min(timeout_s, MAX_WAIT_S))
        fut = self.waiters.register(request_id)
        try:
            current = await self.get(request_id=request_id, principal=principal)
        except BaseException:
            self.waiters.discard(request_id, fut)
            raise
        if domain.is_terminal(current["status"]) or timeout_s == 0:
            self.waiters.discard(request_id, fut)
            return current
        expires_in = _seconds_until(current["expires_at"], self.clock.now())
        deadline = asyncio.get_running_loop().time() + min(timeout_s, expires_in + 0.05)
        return WaitTicket(request_id, fut, deadline, principal)

    def end_wait(self, ticket: WaitTicket) -> None:
        """Stop waking the ticket (its agent went away, or it is being answered)."""
        self.waiters.discard(ticket.request_id, ticket.fut)

    async def finish_wait(self, ticket: WaitTicket) -> dict[str, Any]:
        """The answer to an ended wait, woken or at its deadline: the committed decision handed over by the
        decider (no second read), else the request read again."""
        fut = ticket.fut
        view = fut.result() if fut.done() and not fut.cancelled() else None
        if view is not None and domain.is_terminal(view["status"]):
            return view
        return await self.get(request_id=ticket.request_id, principal=ticket.principal)

    async def wait_out(self, ticket: WaitTicket) -> dict[str, Any]:
        """Hold this task until the ticket is woken or its deadline passes; then its answer."""
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(ticket.deadline):
                    await asyncio.shield(ticket.fut)
        finally:
            self.end_wait(ticket)
        return await self.finish_wait(ticket)

    async def wait(
        self, *, request_id: str, timeout_s: float, principal: Principal | None = None
    ) -> dict[str, Any]:
        """Return once the request is terminal, or after ``timeout_s`` with its current state."""
        ticket = await self.start_wait(request_id=request_id, timeout_s=timeout_s, principal=principal)
        return await self.wait_out(ticket) if isinstance(ticket, WaitTicket) else ticket

    # --- decide ---------------------------------------------------------------------------------------

    async def decide(
        self,
        *,
        request_id: str,
        kind: str,
        actor: Actor,
        args: dict[str, Any] | None = None,
        feedback: str | None = None,
        expected_version: int | None = None,
        audit_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if kind not in domain.DECISION_STATUS:
            raise ValidationFailed(f"decision: expected approve, edit or reject, got {kind!r}",
                                   details=[{"field": "decision"}])
        feedback = (feedback or "").strip() or None
        if kind == "reject" and not feedback:
            raise ValidationFailed("feedback: a rejection needs feedback telling the agent why",
                                   details=[{"field": "feedback"}])
        if kind == "edit" and args is None:
            raise ValidationFailed("args: an edit needs the new args", details=[{"field": "args"}])
        now = self.clock.now()
        extra = audit_extra or {}

        def transaction(conn: Connection) -> Change | datetime:
            """The decision, or the deadline of a request found overdue (expired after this transaction)."""
            row = writes.request_row(conn, request_id=request_id, for_update=True)  # labels etc. come after
            if row is None:
                raise NotFound(f"no request with id {request_id!r}")
            if domain.is_overdue(row["status"], row["expires_at"], now):
                return cast(datetime, row["expires_at"])
            if domain.is_terminal(row["status"]):
                raise AlreadyDecided(domain.lost_race_message(row["status"], row["decided_by_name"],
                                                              row["decided_at"]))
            return self._apply_decision(conn, row, kind, actor, args, feedback, expected_version, now, extra)

        # One transaction function: on SQLite a single hand-off to the writer thread for the whole decision.
        change = await self.db.run_write(transaction)
        if isinstance(change, datetime):
            await self.expire_due()  # finalises this request (and any other overdue one) and tells its waiters
            raise AlreadyDecided(domain.lost_race_message("expired", None, change))
        self._after_commit([request_id], {request_id: change.request})
        if domain.is_terminal(change.request["status"]):
            self.hooks.terminal(change.request)
        return change.request

    def _apply_decision(
        self,
        conn: Connection,
        req: dict[str, Any],
        kind: str,
        actor: Actor,
        args: dict[str, Any] | None,
        feedback: str | None,
        expected_version: int | None,
        now: datetime,
        audit_extra: dict[str, Any],
    ) -> Change:
        from bot.errors import VersionChanged

        rid, version, required = req["id"], req["version"], req["required_approvals"]
        if expected_version is not None and expected_version != version:
            raise VersionChanged(
                f"the args were edited since you looked (now version {version}, you saw "
                f"{expected_version}); review the new version"
            )
        current_args = req["final_args"] if req["final_args"] is not None else req["args"]
        if kind == "edit" and args == current_args:
            kind = "approve"
        audit_data: dict[str, Any] = {**audit_extra, "version": version}
        who: dict[str, Any] = dict(by_id=actor.id, by_name=actor.name, via=actor.via, at=now)
        if kind == "reject":
            won = writes.cas_finalise(conn, request_id=rid, status="rejected", kind="reject", feedback=feedback, **who)
            event = "rejected"
            audit_data["feedback"] = feedback
        elif kind == "approve":
            writes.add_approval(conn, request_id=rid, version=version, reviewer_id=actor.id,
                                reviewer_name=actor.name, via=actor.via, at=now)
            # With a quorum of one, this approval is the quorum: no need to read the others back.
            approvers = [actor.id] if required <= 1 else writes.approvers_of(conn, request_id=rid, version=version)
            event = "approved-by"
            won = True
            if domain.quorum_reached(required, approvers):
                edited = current_args != req["args"]  # later edits may have restored the original args
                status = "modified" if edited else "approved"
                won = writes.cas_finalise(conn, request_id=rid, status=status, kind="edit" if edited else "approve",
                                          feedback=feedback, final_args=current_args, version=version, **who)
                event = status
            audit_data["approvals"] = len(set(approvers))
        else:  # edit
            assert args is not None
            new_version = version + 1
            audit_data.update(changed=domain.changed_args(current_args, args), new_version=new_version)
            if required <= 1:
                won = writes.cas_finalise(conn, request_id=rid, status="modified", kind="edit", feedback=feedback,
                                          final_args=args, version=version, new_version=new_version, **who)
            else:
                won = writes.cas_new_version(conn, request_id=rid, version=version, args=args)
            if won:
                writes.add_approval(conn, request_id=rid, version=new_version, reviewer_id=actor.id,
                                    reviewer_name=actor.name, via=actor.via, at=now)
            event = "edited"
        if not won:
            lost = writes.request_row(conn, request_id=rid)
            assert lost is not None
            raise AlreadyDecided(domain.lost_race_message(lost["status"], lost["decided_by_name"], lost["decided_at"]))
        fresh = writes.request_view(conn, request_id=rid)
        assert fresh is not None
        public = row_json(fresh.row, fresh.labels, fresh.approvals)
        writes.add_audit(conn, events=[_audit(rid, event, actor, now, audit_data)])
        change = Change(event, public, extra=audit_data)
        writes.add_outbox(conn, items=[r.to_row(now) for r in self.plan(change)])
        if domain.is_terminal(public["status"]):
            writes.notify(conn, channel=NOTIFY_CHANNEL, payload=rid)
        return change

    # --- cancel, labels, result ---------------------------------------------------------------------------

    async def cancel(self, *, request_id: str, principal: Principal, reason: str | None = None) -> dict[str, Any]:
        async with self.db.write() as s:
            req = await repo.get_request(s, request_id=request_id, for_update=True)
            if req is None or not _visible(req.agent, principal):
                raise NotFound(f"no request with id {request_id!r}")
            if req.agent != principal.name and principal.role != "admin":
                raise Forbidden("only the agent that submitted a request (or an admin) may cancel it")
            now = self.clock.now()
            expired: list[dict[str, Any]] = []
            if domain.is_overdue(req.status, req.expires_at, now):
                expired = await self._expire_in(s, now)
                raise_after: Exception | None = AlreadyDecided(
                    domain.lost_race_message("expired", None, req.expires_at))
            elif domain.is_terminal(req.status):
                raise AlreadyDecided(domain.lost_race_message(req.status, req.decided_by_name, req.decided_at))
            else:
                raise_after = None
                actor = Actor(principal.name, principal.name, "api")
                won = await s.run_sync(lambda sync: writes.cas_finalise(
                    sync.connection(), request_id=req.id, status="cancelled", kind="cancel", by_id=actor.id,
                    by_name=actor.name, via="api", at=now, feedback=reason))
                if not won:
                    raise Conflict("the request changed while cancelling; read it again")
                fresh = await repo.get_request(s, request_id=req.id)
                assert fresh is not None
                public = request_json(fresh)
                await repo.add_audit(s, events=[_audit(req.id, "cancelled", actor, now, {"reason": reason})])
                await self._queue_effects(s, [Change("cancelled", public)], now)
                await repo.notify(s, channel=NOTIFY_CHANNEL, payload=req.id)
        if raise_after is not None:
            self._after_expiry(expired)
            raise raise_after
        self._after_commit([request_id], {request_id: public})
        self.hooks.terminal(public)
        return public

    async def change_labels(
        self, *, request_id: str, add: Sequence[str], remove: Sequence[str], actor: Actor,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        overlap = set(add) & set(remove)
        if overlap:
            raise ValidationFailed(f"labels both added and removed: {', '.join(sorted(overlap))}",
                                   details=[{"field": "add"}, {"field": "remove"}])
        async with self.db.write() as s:
            req = await repo.get_request(s, request_id=request_id, for_update=True)
            if req is None or (principal is not None and not _visible(req.agent, principal)):
                raise NotFound(f"no request with id {request_id!r}")
            before = {lb.label for lb in req.labels}
            await repo.insert_labels(s, pairs=[(request_id, lb) for lb in add if lb not in before])
            await repo.delete_labels(s, request_id=request_id, labels=[lb for lb in remove if lb in before])
            now = self.clock.now()
            s.expire(req, ["labels"])
            fresh = await repo.get_request(s, request_id=request_id)
            assert fresh is not None
            after = {lb.label for lb in fresh.labels}
            if after != before:
                data = {"added": sorted(after - before), "removed": sorted(before - after)}
                await repo.add_audit(s, events=[_audit(request_id, "labels", actor, now, data)])
                await self._queue_effects(s, [Change("labels", request_json(fresh), extra=data)], now)
            public = request_json(fresh, now=now)
        self.outbox_wakeup.set()
        return public

    async def report_result(
        self, *, request_id: str, ok: bool, detail: str | None, principal: Principal
    ) -> dict[str, Any]:
        async with self.db.write() as s:
            req = await repo.get_request(s, request_id=request_id, for_update=True)
            if req is None or not _visible(req.agent, principal):
                raise NotFound(f"no request with id {request_id!r}")
            if req.agent != principal.name and principal.role != "admin":
                raise Forbidden("only the agent that submitted a request (or an admin) may report its result")
            if req.status not in ("approved", "modified"):
                raise Conflict(f"a result can be reported only for an approved request; this one is {req.status}")
            if req.result is not None:
                raise Conflict("a result was already reported for this request")
            now = self.clock.now()
            result = {"ok": ok, "detail": detail, "at": _iso(now)}
            await repo.set_result(s, request_id=request_id, result=result)
            fresh = await repo.get_request(s, request_id=request_id)
            assert fresh is not None
            public = request_json(fresh)
            actor = Actor(principal.name, principal.name, "api")
            await repo.add_audit(s, events=[_audit(request_id, "result-reported", actor, now, {"ok": ok})])
            await self._queue_effects(s, [Change("result", public)], now)
        self.outbox_wakeup.set()
        return public

    # --- expiry ---------------------------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Finalise every overdue pending request as expired. Idempotent; safe on many replicas at once."""
        total = 0
        while True:
            async with self.db.write() as s:
                expired = await self._expire_in(s, self.clock.now())
            self._after_expiry(expired)
            total += len(expired)
            if len(expired) < EXPIRY_BATCH:
                return total

    async def _expire_in(self, s: Any, now: datetime) -> list[dict[str, Any]]:
        """Expire up to a batch of overdue requests in the caller's transaction; their JSON, for after the commit.

        One UPDATE … RETURNING, no ORM objects, bulk audit and outbox inserts: the same path serves a decision
        that finds its request overdue and a sweep expiring thousands at once."""
        rows = await repo.expire_overdue_rows(s, now=now, limit=EXPIRY_BATCH, reason=EXPIRY_REASON)
        if not rows:
            return []
        ids = [r.id for r in rows]
        labels, approvals = await repo.labels_and_approvals(s, ids=ids)
        publics = [row_json(r._mapping, labels.get(r.id, ()), approvals.get(r.id, [])) for r in rows]
        await repo.add_audit(s, events=[
            _audit(r.id, "expired", _SCHEDULER, now,
                   {"reason": _expiry_reason(r.created_at, r.expires_at), "expires_at": _iso(r.expires_at)})
            for r in rows
        ])
        await self._queue_effects(s, [Change("expired", pub) for pub in publics], now)
        for i in range(0, len(ids), 200):
            await repo.notify(s, channel=NOTIFY_CHANNEL, payload=",".join(ids[i : i + 200]))
        return publics

    def _after_expiry(self, expired: list[dict[str, Any]]) -> None:
        if not expired:
            return
        self._after_commit([pub["id"] for pub in expired], {pub["id"]: pub for pub in expired})
        for pub in expired:
            self.hooks.terminal(pub)

    def _kick_expiry(self) -> None:
        task = asyncio.get_running_loop().create_task(self.expire_due())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # --- Slack bookkeeping ---------------------------------------------------------------------------

    async def record_event(self, *, request_id: str | None, kind: str, actor: Actor, data: dict[str, Any]) -> None:
        """Append an audit event that changes nothing else (e.g. a click that was refused)."""
        async with self.db.write() as s:
            await repo.add_audit(s, events=[_audit(request_id, kind, actor, self.clock.now(), data)])

    async def refresh_card(self, *, request_id: str) -> None:
        """Queue a re-render of the request's Slack card from its current state."""
        now = self.clock.now()
        async with self.db.write() as s:
            req = await repo.get_request(s, request_id=request_id)
            if req is None:
                raise NotFound(f"no request with id {request_id!r}")
            await self._queue_effects(s, [Change("refresh", request_json(req, now=now))], now)
        self.outbox_wakeup.set()

    async def set_slack_message(self, *, request_id: str, channel: str, ts: str, permalink: str | None) -> bool:
        """Record where the card was posted; False if a card was already recorded for this request."""
        async with self.db.write() as s:
            won = await repo.set_slack_message(s, request_id=request_id, channel=channel, ts=ts,
                                               permalink=permalink)
            if won:
                await repo.add_audit(s, events=[_audit(request_id, "posted", Actor("slack", "signoff", "slack"),
                                                       self.clock.now(), {"channel": channel, "ts": ts})])
        return won

    # --- shared ---------------------------------------------------------------------------------------

    def plan(self, change: Change) -> list[OutboxRow]:
        return [row for eff in self.effects for row in eff.plan(change)]

    async def _queue_effects(self, s: Any, changes: Sequence[Change], now: datetime) -> None:
        await repo.add_outbox(s, items=[r.to_row(now) for c in changes for r in self.plan(c)])

    def _after_commit(self, ids: Sequence[str], views: dict[str, dict[str, Any]] | None = None) -> None:
        self.waiters.publish(ids, views)
        self.outbox_wakeup.set()

    async def recently_decided(self, since: datetime) -> list[str]:
        async with self.db.read() as s:
            return await repo.recently_decided(s, since=since)


EXPIRY_REASON = domain.EXPIRY_FEEDBACK


def _expiry_reason(created_at: datetime, expires_at: datetime) -> str:
    timeout = int((expires_at - created_at).total_seconds())
    return f"expired: no decision within {timeout} s (deadline {_iso(expires_at)})"


_POLICY = Actor("policy", "signoff", "policy")
_SCHEDULER = Actor("scheduler", "signoff", "scheduler")


def _decide_at_submit(row: dict[str, Any], audit: list[dict[str, Any]], status: str, rule: str | None,
                      feedback: str | None, now: datetime, *, watch: str | None = None) -> None:
    """A policy (or SIGNOFF_MODE=off, or a grant) decides before any human sees the request. Only an
    auto-approval with a ``watch`` channel keeps a channel: it gets an FYI card there, without buttons."""
    kind = "approve" if status == "approved" else "reject"
    row.update(status=status, decision_kind=kind, decided_by_id="policy", decided_by_name="signoff",
               decided_via="policy", decided_at=now, feedback=feedback, rule=rule, channel=watch)
    if status == "approved":
        row["final_args"] = row.get("args")
    audit.append(_audit(row.get("id"), status, _POLICY, now, {"rule": rule, "feedback": feedback}))


def _visible(agent: str, principal: Principal) -> bool:
    return principal.sees_all or agent == principal.name


def _audit(rid: str | None, kind: str, actor: Actor, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return dict(request_id=rid, kind=kind, actor_id=actor.id, actor_name=actor.name, via=actor.via, at=at,
                data=data)


def _public(p: _Prepared) -> dict[str, Any]:
    """The request JSON of a prepared submission, computed once (after any budget decision)."""
    if p.public is None:
        p.public = row_json(p.row, p.labels)
    return p.public


def _hash_body(body: SubmitBody) -> str:
    """The body's fingerprint for idempotency: SHA-256 of its canonical JSON (sorted keys, the key itself left
    out), as ``v2:`` and 60 hex digits. orjson makes the canonical form (the standard library encoder was a
    twentieth of intake); an integer beyond 64 bits, which orjson refuses, takes the standard library."""
    data = body.model_dump(mode="json", exclude={"idempotency_key"})
    try:
        canon = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        canon = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "v2:" + hashlib.sha256(canon).hexdigest()[:60]


def _hash_body_v1(body: SubmitBody) -> str:
    """The fingerprint stored before ``v2:``: the standard library's canonical JSON, all 64 hex digits."""
    canon = json.dumps(body.model_dump(mode="json", exclude={"idempotency_key"}), sort_keys=True,
                       separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def _same_body(stored: str | None, p: _Prepared) -> bool:
    """Whether a retried submission carries the body stored with its key, in whichever format it was stored."""
    if stored is None or stored.startswith("v2:") or p.body is None:
        return stored == p.body_hash
    return stored == _hash_body_v1(p.body)


def _idem_conflict(key: str) -> _Failed:
    return _Failed(IdempotencyConflict(
        f"idempotency_key {key!r} was already used with a different body; use a new key for a new request"
    ))


@dataclass(frozen=True)
class _Failed:
    error: Exception


def _iso(dt: datetime) -> str:
    from bot.clock import iso

    out = iso(dt)
    assert out is not None
    return out


def _seconds_until(iso_text: str, now: datetime) -> float:
    when = datetime.fromisoformat(iso_text.replace("Z", "+00:00"))
    return max(0.0, (when - now).total_seconds())
