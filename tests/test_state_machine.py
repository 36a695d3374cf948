"""A hypothesis state machine drives the approval service against a model of §3's rules.

Each step submits, approves (alone or towards a quorum, with or without the version the reviewer saw),
edits, rejects, cancels, moves the fake clock or runs an expiry sweep (the service's or the scheduler's
bulk one), and compares what the service
answers with what the model predicts. The invariants read the stored requests after every step: one
decision per request, terminal states never change, a rejection carries feedback, ``modified`` means the
final args differ, and approvals are counted per version.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from bot.app import build_core
from bot.clock import FakeClock
from bot.config import Config
from bot.domain import Actor, Principal
from bot.errors import AlreadyDecided, ValidationFailed, VersionChanged
from bot.schedule_service import ScheduleService
from bot.schemas import SubmitBody
from bot.serialize import request_json
from bot.settings import Settings
from storage import repository as repo
from storage.db import Database
from storage.migrate import upgrade

REVIEWERS = {"U1": "Ann", "U2": "Bob", "U3": "Cyd"}
ARGS = [{"n": 1}, {"n": 2}, {"n": 3}]
TERMINAL = {"approved", "modified", "rejected", "expired", "cancelled"}
AGENT = Principal(name="agent-1", role="agent")

_template: dict[str, Path] = {}


def _migrated_template() -> Path:
    """One migrated SQLite file per test session; each example starts from a copy of it."""
    if "db" not in _template:
        path = Path(tempfile.mkdtemp(prefix="signoff-sm-template-")) / "template.db"
        loop = asyncio.new_event_loop()
        try:
            db = Database(f"sqlite:///{path}")
            loop.run_until_complete(upgrade(db))
            loop.run_until_complete(db.close())
        finally:
            loop.close()
        _template["db"] = path
    return _template["db"]


@dataclass
class Model:
    """What the rules say one request should look like."""

    args: dict[str, Any]
    required: int
    expires_at: datetime
    status: str = "pending"
    version: int = 1
    current_args: dict[str, Any] = field(default_factory=dict)
    approvals: dict[int, set[str]] = field(default_factory=dict)
    winner: str | None = None  # name of whoever decided


class ApprovalMachine(RuleBasedStateMachine):
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="signoff-sm-"))
        shutil.copy(_migrated_template(), self.tmp / "signoff.db")
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.db, self.service, _tokens, _metrics = build_core(
            Settings(database_url=f"sqlite:///{self.tmp / 'signoff.db'}"), config=Config(), clock=self.clock
        )
        self.schedule = ScheduleService(service=self.service, slack_enabled=False)
        self.model: dict[str, Model] = {}
        self.first_terminal: dict[str, tuple[Any, ...]] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.db.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------------------

    def _expire_if_overdue(self, m: Model) -> bool:
        """The model's view of the deadline: an overdue pending request is expired by whoever looks."""
        if m.status == "pending" and self.clock.now() >= m.expires_at:
            m.status = "expired"
            m.winner = None
            return True
        return False

    def _check_lost(self, m: Model, err: AlreadyDecided) -> None:
        assert m.status in TERMINAL
        if m.status == "expired":
            assert "expired" in err.message, err.message
        else:
            assert m.winner is not None and m.winner in err.message, (m.winner, err.message)

    def _assert_matches(self, out: dict[str, Any], m: Model) -> None:
        assert out["status"] == m.status, (out["status"], m)
        assert out["version"] == m.version
        if m.status in ("approved", "modified"):
            assert out["final_args"] == m.current_args
        if m.winner is not None:
            assert out["decision"]["by"]["name"] == m.winner

    # --- rules ---------------------------------------------------------------------------------------

    @rule(target=requests, required=st.sampled_from([1, 2, 2, 3]), timeout_s=st.sampled_from([5, 60, 600]))
    def submit(self, required: int, timeout_s: int) -> str:
        body = SubmitBody.model_validate({"action": {"tool": "send_email", "args": ARGS[0]},
                                          "required_approvals": required, "timeout_s": timeout_s})
        out = self.run(self.service.submit(agent=AGENT.name, body=body))
        assert out.created
        req = out.request
        assert req["status"] == "pending" and req["version"] == 1
        self.model[req["id"]] = Model(
            args=dict(ARGS[0]), required=required, current_args=dict(ARGS[0]),
            expires_at=self.clock.now() + timedelta(seconds=timeout_s),
        )
        return str(req["id"])

    def _decide(self, rid: str, kind: str, reviewer: str, *, args: dict[str, Any] | None = None,
                feedback: str | None = None, seen_version: int | None = None) -> None:
        m = self.model[rid]
        actor = Actor(reviewer, REVIEWERS[reviewer], "api")
        try:
            out = self.run(self.service.decide(request_id=rid, kind=kind, actor=actor, args=args,
                                               feedback=feedback, expected_version=seen_version))
        except ValidationFailed:
            assert kind == "reject" and not (feedback or "").strip()
            return
        except VersionChanged:
            assert m.status == "pending" and seen_version != m.version
            return
        except AlreadyDecided as err:
            self._expire_if_overdue(m)
            self._check_lost(m, err)
            return
        assert not self._expire_if_overdue(m), "a decision after the deadline was accepted"
        assert m.status == "pending", f"a {m.status} request accepted a {kind}"
        assert seen_version in (None, m.version)
        if kind == "edit" and args == m.current_args:
            kind = "approve"
        if kind == "reject":
            m.status, m.winner = "rejected", actor.name
        elif kind == "approve":
            m.approvals.setdefault(m.version, set()).add(reviewer)
            if len(m.approvals[m.version]) >= m.required:
                m.status = "modified" if m.current_args != m.args else "approved"
                m.winner = actor.name
        else:
            assert args is not None
            m.version += 1
            m.current_args = dict(args)
            m.approvals[m.version] = {reviewer}
            if m.required <= 1:
                m.status, m.winner = "modified", actor.name
        self._assert_matches(out, m)

    @rule(rid=requests, reviewer=st.sampled_from(sorted(REVIEWERS)), stale=st.sampled_from([None, 0, -1]))
    def approve(self, rid: str, reviewer: str, stale: int | None) -> None:
        """``stale``: None sends no version, 0 the current one, -1 the one before it (a stale screen)."""
        m = self.model[rid]
        seen = None if stale is None else max(1, m.version + stale)
        self._decide(rid, "approve", reviewer, seen_version=seen)

    @rule(rid=requests, reviewer=st.sampled_from(sorted(REVIEWERS)), args=st.sampled_from(ARGS))
    def edit(self, rid: str, reviewer: str, args: dict[str, Any]) -> None:
        self._decide(rid, "edit", reviewer, args=dict(args), seen_version=self.model[rid].version)

    @rule(rid=requests, reviewer=st.sampled_from(sorted(REVIEWERS)),
          feedback=st.sampled_from([None, "", "  ", "not now", "use a READ ONLY transaction"]))
    def reject(self, rid: str, reviewer: str, feedback: str | None) -> None:
        self._decide(rid, "reject", reviewer, feedback=feedback)

    @rule(rid=requests)
    def cancel(self, rid: str) -> None:
        m = self.model[rid]
        try:
            out = self.run(self.service.cancel(request_id=rid, principal=AGENT, reason="withdrawn"))
        except AlreadyDecided as err:
            self._expire_if_overdue(m)
            self._check_lost(m, err)
            return
        assert not self._expire_if_overdue(m), "a cancel after the deadline was accepted"
        assert m.status == "pending", f"a {m.status} request was cancelled"
        m.status, m.winner = "cancelled", AGENT.name
        self._assert_matches(out, m)

    @rule(seconds=st.sampled_from([1, 4, 30, 300]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire_due(self) -> None:
        overdue = {rid for rid, (req, _, _) in self._stored().items()
                   if req.status == "pending" and req.expires_at <= self.clock.now()}
        assert self.run(self.service.expire_due()) == len(overdue)
        for rid in overdue:
            assert self._expire_if_overdue(self.model[rid]) or self.model[rid].status == "expired"
        assert {rid for rid, (req, _, _) in self._stored().items() if req.status == "expired"} >= overdue

    @rule()
    def scheduler_sweep(self) -> None:
        """The scheduler's own (bulk) expiry sweep must agree with the service's."""
        overdue = {rid for rid, (req, _, _) in self._stored().items()
                   if req.status == "pending" and req.expires_at <= self.clock.now()}
        assert self.run(self.schedule.expire_due()) == len(overdue)
        for rid in overdue:
            assert self._expire_if_overdue(self.model[rid]) or self.model[rid].status == "expired"

    @rule(rid=requests)
    def read(self, rid: str) -> None:
        out = self.run(self.service.get(request_id=rid))
        m = self.model[rid]
        self._expire_if_overdue(m)
        self._assert_matches(out, m)

    @rule(rid=consumes(requests))
    def forget(self, rid: str) -> None:
        """Stop picking this request for new steps (the invariants still watch it)."""

    # --- invariants ---------------------------------------------------------------------------------

    def _stored(self) -> dict[str, Any]:
        async def load() -> dict[str, Any]:
            async with self.db.read() as s:
                out = {}
                for rid in self.model:
                    req = await repo.get_request(s, request_id=rid)
                    assert req is not None
                    events = [e.kind for e in await repo.audit_for(s, request_id=rid)]
                    out[rid] = (req, request_json(req, now=self.clock.now()), events)
                return out

        return self.run(load())

    @invariant()
    def stored_requests_obey_the_rules(self) -> None:
        for rid, (req, public, events) in self._stored().items():
            m = self.model[rid]
            status = public["status"]
            view = (status, public["decided_at"], public["decision"], public["final_args"], public["version"])
            # Terminal states never change, and neither does their decision.
            if rid in self.first_terminal:
                assert view == self.first_terminal[rid], (rid, self.first_terminal[rid], view)
            elif status in TERMINAL:
                self.first_terminal[rid] = view
            # Reads never say pending past the deadline; the model and the store agree.
            if self.clock.now() >= m.expires_at:
                assert status != "pending"
            self._expire_if_overdue(m)
            assert status == m.status, (rid, status, m)
            # One decision per request: one terminal audit event once stored as terminal (an edit that
            # decides alone is recorded as "edited").
            decisive = [e for e in events if e in TERMINAL]
            if req.status == "modified" and "modified" not in events:
                decisive.append("edited")
                assert "edited" in events, events
            assert len(decisive) == (1 if req.status in TERMINAL else 0), (req.status, events)
            if status == "rejected":
                assert (public["decision"]["feedback"] or "").strip()
            if status == "modified":
                assert public["final_args"] != public["action"]["args"]
            if status == "approved":
                assert public["final_args"] == public["action"]["args"]
            # Approvals are counted per version: only distinct approvers of the current version count.
            current = {a["reviewer"]["id"] for a in public["approvals"] if a["version"] == public["version"]}
            if status == "pending":
                assert len(current) < public["required_approvals"]
            elif status in ("approved", "modified") and public["decision"]["by"]["via"] == "api":
                assert len(current) >= public["required_approvals"]
            assert current == m.approvals.get(m.version, set()) or status in ("expired", "cancelled", "rejected")


ApprovalMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestApprovalStateMachine = ApprovalMachine.TestCase
