"""Prometheus metrics on a registry owned by the app (no globals)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.domain import STATUSES

DECISION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests_by_status = Gauge(
            "signoff_requests", "Requests stored, by status", ["status"], registry=self.registry
        )
        self.pending = Gauge("signoff_pending_requests", "Requests waiting for a decision", registry=self.registry)
        self.submitted = Counter(
            "signoff_submissions", "Requests accepted by this process", ["risk"], registry=self.registry
        )
        self.decisions = Counter(
            "signoff_decisions", "Requests that reached a terminal status in this process",
            ["status", "via"], registry=self.registry,
        )
        self.time_to_decision = Histogram(
            "signoff_time_to_decision_seconds", "From submission to the terminal decision",
            ["status"], buckets=DECISION_BUCKETS, registry=self.registry,
        )
        self.http = Counter(
            "signoff_http_requests", "HTTP requests served", ["method", "route", "code"], registry=self.registry
        )
        self.waiting = Gauge("signoff_waiting_agents", "Agents blocked in /wait on this process",
                             registry=self.registry)
        self.outbox_backlog = Gauge("signoff_outbox_backlog", "Outbox rows not yet delivered",
                                    registry=self.registry)
        # Labelled children looked up once: ``labels()`` takes a lock and builds a key on every call.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, **labels: str) -> Any:
        key = (id(metric), *labels.values())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(**labels)
        return child

    def count_http(self, method: str, route: str, code: int) -> None:
        self._child(self.http, method=method, route=route, code=str(code)).inc()

    def on_submitted(self, req: dict[str, Any]) -> None:
        self._child(self.submitted, risk=req["risk"]).inc()

    def on_terminal(self, req: dict[str, Any]) -> None:
        decision = req.get("decision") or {}
        via = (decision.get("by") or {}).get("via") or "unknown"
        self.decisions.labels(status=req["status"], via=via).inc()
        created, decided = req.get("created_at"), req.get("decided_at")
        if created and decided:
            seconds = (_parse(decided) - _parse(created)).total_seconds()
            self.time_to_decision.labels(status=req["status"]).observe(max(seconds, 0.0))

    def set_counts(self, counts: dict[str, int], *, waiting: int, outbox_backlog: int) -> None:
        for status in STATUSES:
            self.requests_by_status.labels(status=status).set(counts.get(status, 0))
        self.pending.set(counts.get("pending", 0))
        self.waiting.set(waiting)
        self.outbox_backlog.set(outbox_backlog)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
