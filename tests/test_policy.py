"""The pure policy engine: operators, rule order, effects, config errors, time windows, grants, explain."""

from __future__ import annotations

import fnmatch
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError
from bot.policy import Grant, Policy, Verdict, explain, grant_matches, parse_policies

NOW = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)  # a Wednesday
SRC = "signoff.yml"


def policy(*rules: dict[str, Any]) -> Policy:
    return parse_policies(list(rules), source=SRC)


def request(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"tool": "send_email", "agent": "mailer", "risk": "medium", "labels": [],
                            "args": {}, "now": NOW}
    return base | overrides


def arg_matches(spec: dict[str, Any], args: dict[str, Any], field: str = "x") -> bool:
    """Whether a one-rule policy with ``args: {field: spec}`` matches these args."""
    p = policy({"name": "r", "effect": "auto_approve", "match": {"args": {field: spec}}})
    return p.evaluate(**request(args=args)) is not None


def config_error(*rules: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_policies(list(rules), source=SRC)
    return str(info.value)


# ---------------------------------------------------------------- operators, table-driven

OPERATOR_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # eq: JSON equality, every element of a list
    ("eq-string", {"eq": "refund"}, {"x": "refund"}, True),
    ("eq-case-sensitive", {"eq": "refund"}, {"x": "Refund"}, False),
    ("eq-int-float", {"eq": 1}, {"x": 1.0}, True),
    ("eq-number-is-not-bool", {"eq": 1}, {"x": True}, False),
    ("eq-bool-is-not-number", {"eq": True}, {"x": 1}, False),
    ("eq-bool", {"eq": False}, {"x": False}, True),
    ("eq-null", {"eq": None}, {"x": None}, True),
    ("eq-null-missing", {"eq": None}, {}, False),
    ("eq-object", {"eq": {"a": 1}}, {"x": {"a": 1}}, True),
    ("eq-list-every", {"eq": "a"}, {"x": ["a", "a"]}, True),
    ("eq-list-one-differs", {"eq": "a"}, {"x": ["a", "b"]}, False),
    ("eq-empty-list", {"eq": "a"}, {"x": []}, False),
    ("eq-missing", {"eq": "a"}, {"y": "a"}, False),
    # in
    ("in-member", {"in": ["a", "b"]}, {"x": "b"}, True),
    ("in-not-member", {"in": ["a", "b"]}, {"x": "c"}, False),
    ("in-list-subset", {"in": ["a", "b"]}, {"x": ["b", "a"]}, True),
    ("in-list-one-outside", {"in": ["a", "b"]}, {"x": ["a", "c"]}, False),
    ("in-empty-list", {"in": ["a"]}, {"x": []}, False),
    ("in-int-float", {"in": [1]}, {"x": 1.0}, True),
    ("in-bool-is-not-number", {"in": [1]}, {"x": True}, False),
    ("in-number-is-not-bool", {"in": [True]}, {"x": 1}, False),
    ("in-object-never", {"in": ["a"]}, {"x": {"a": 1}}, False),
    ("in-missing", {"in": ["a"]}, {}, False),
    # glob: fnmatch, case-sensitive, whole string
    ("glob-star", {"glob": "/srv/*"}, {"x": "/srv/app/log"}, True),
    ("glob-no-match", {"glob": "/srv/*"}, {"x": "/home/me"}, False),
    ("glob-case", {"glob": "/srv/*"}, {"x": "/SRV/app"}, False),
    ("glob-question", {"glob": "v?.txt"}, {"x": "v1.txt"}, True),
    ("glob-class", {"glob": "[ab]x"}, {"x": "cx"}, False),
    ("glob-whole-string", {"glob": "srv"}, {"x": "/srv/"}, False),
    ("glob-non-string", {"glob": "5*"}, {"x": 55}, False),
    ("glob-list-every", {"glob": "/srv/*"}, {"x": ["/srv/a", "/srv/b"]}, True),
    ("glob-list-one-outside", {"glob": "/srv/*"}, {"x": ["/srv/a", "/etc/passwd"]}, False),
    # regex: re.search
    ("regex-drop", {"regex": r"(?i)\bdrop\s+table\b"}, {"x": "select 1; DROP  TABLE users"}, True),
    ("regex-word-boundary", {"regex": r"(?i)\bdrop\s+table\b"}, {"x": "dropped tables"}, False),
    ("regex-search-anywhere", {"regex": "b"}, {"x": "abc"}, True),
    ("regex-anchored", {"regex": "^b"}, {"x": "abc"}, False),
    ("regex-non-string", {"regex": "1"}, {"x": 1}, False),
    ("regex-list-every", {"regex": "^INV-"}, {"x": ["INV-1", "INV-2"]}, True),
    ("regex-list-one-fails", {"regex": "^INV-"}, {"x": ["INV-1", "X-2"]}, False),
    # domain_in
    ("domain-bare", {"domain_in": ["a.com"]}, {"x": "dana@a.com"}, True),
    ("domain-case-insensitive", {"domain_in": ["A.com"]}, {"x": "dana@A.COM"}, True),
    ("domain-subdomain-not-listed", {"domain_in": ["a.com"]}, {"x": "dana@mail.a.com"}, False),
    ("domain-subdomain-listed", {"domain_in": ["a.com", "mail.a.com"]}, {"x": "dana@mail.a.com"}, True),
    ("domain-suffix-lookalike", {"domain_in": ["a.com"]}, {"x": "dana@evila.com"}, False),
    ("domain-name-addr", {"domain_in": ["a.com"]}, {"x": "Dana Scully <dana@a.com>"}, True),
    ("domain-quoted-name-with-comma", {"domain_in": ["a.com"]}, {"x": '"Scully, Dana" <dana@a.com>'}, True),
    ("domain-comma-separated", {"domain_in": ["a.com", "b.org"]}, {"x": "x@a.com, Bo <y@b.org>"}, True),
    ("domain-comma-separated-one-out", {"domain_in": ["a.com"]}, {"x": "x@a.com, y@evil.com"}, False),
    ("domain-semicolon-separated", {"domain_in": ["a.com"]}, {"x": "x@a.com; y@a.com"}, True),
    ("domain-trailing-comma", {"domain_in": ["a.com"]}, {"x": "x@a.com, "}, True),
    ("domain-list", {"domain_in": ["a.com"]}, {"x": ["x@a.com", "Y <y@a.com>"]}, True),
    ("domain-list-one-out", {"domain_in": ["a.com"]}, {"x": ["x@a.com", "y@evil.com"]}, False),
    ("domain-list-of-comma-strings", {"domain_in": ["a.com"]}, {"x": ["x@a.com, y@evil.com"]}, False),
    ("domain-list-non-string", {"domain_in": ["a.com"]}, {"x": ["x@a.com", 5]}, False),
    ("domain-empty-list", {"domain_in": ["a.com"]}, {"x": []}, False),
    ("domain-empty-string", {"domain_in": ["a.com"]}, {"x": ""}, False),
    ("domain-not-an-address", {"domain_in": ["a.com"]}, {"x": "a.com"}, False),
    ("domain-display-name-trick", {"domain_in": ["a.com"]}, {"x": '"x@a.com" <y@evil.com>'}, False),
    ("domain-comment-trick", {"domain_in": ["a.com"]}, {"x": "y@evil.com (x@a.com)"}, False),
    ("domain-double-at", {"domain_in": ["a.com"]}, {"x": "y@evil.com@a.com"}, False),
    ("domain-quoted-local", {"domain_in": ["a.com"]}, {"x": '"y@evil.com"@a.com'}, True),
    ("domain-unbalanced-bracket", {"domain_in": ["a.com"]}, {"x": "Y <y@a.com"}, False),
    ("domain-unbalanced-quote", {"domain_in": ["a.com"]}, {"x": '"Y <y@a.com>'}, False),
    ("domain-two-brackets", {"domain_in": ["a.com"]}, {"x": "<y@evil.com> <y@a.com>"}, False),
    ("domain-trailing-dot", {"domain_in": ["a.com"]}, {"x": "y@a.com."}, True),
    ("domain-number", {"domain_in": ["a.com"]}, {"x": 5}, False),
    ("domain-missing", {"domain_in": ["a.com"]}, {}, False),
    # gt / gte / lt / lte
    ("gt-above", {"gt": 500}, {"x": 501}, True),
    ("gt-equal", {"gt": 500}, {"x": 500}, False),
    ("gt-float", {"gt": 500}, {"x": 500.01}, True),
    ("gt-numeric-string", {"gt": 500}, {"x": "600"}, False),
    ("gt-bool", {"gt": 0}, {"x": True}, False),
    ("gt-null", {"gt": 0}, {"x": None}, False),
    ("gt-missing", {"gt": 0}, {}, False),
    ("gt-list-every", {"gt": 500}, {"x": [600, 700]}, True),
    ("gt-list-one-below", {"gt": 500}, {"x": [600, 400]}, False),
    ("gte-equal", {"gte": 500}, {"x": 500}, True),
    ("gte-below", {"gte": 500}, {"x": 499.5}, False),
    ("lt-below", {"lt": 10}, {"x": 9.99}, True),
    ("lt-equal", {"lt": 10}, {"x": 10}, False),
    ("lte-equal", {"lte": 10}, {"x": 10}, True),
    ("lte-above", {"lte": 10}, {"x": 10.5}, False),
    ("lt-negative", {"lt": -1.5}, {"x": -2}, True),
    # not
    ("not-eq-other", {"not": {"eq": "x"}}, {"x": "y"}, True),
    ("not-eq-same", {"not": {"eq": "x"}}, {"x": "x"}, False),
    ("not-missing-matches", {"not": {"eq": "x"}}, {}, True),
    ("not-domain-one-outside", {"not": {"domain_in": ["a.com"]}}, {"x": ["a@a.com", "b@b.com"]}, True),
    ("not-domain-all-inside", {"not": {"domain_in": ["a.com"]}}, {"x": ["a@a.com", "c@a.com"]}, False),
    ("not-domain-empty-list", {"not": {"domain_in": ["a.com"]}}, {"x": []}, True),
    ("not-gt-non-number", {"not": {"gt": 500}}, {"x": "600"}, True),
    ("not-not", {"not": {"not": {"eq": 1}}}, {"x": 1}, True),
    ("not-of-two-ops", {"not": {"gt": 0, "lt": 10}}, {"x": 5}, False),
    ("not-of-two-ops-outside", {"not": {"gt": 0, "lt": 10}}, {"x": 50}, True),
    # several operators: all must hold
    ("range-inside", {"gt": 0, "lte": 500}, {"x": 250}, True),
    ("range-low", {"gt": 0, "lte": 500}, {"x": 0}, False),
    ("range-high", {"gt": 0, "lte": 500}, {"x": 501}, False),
    ("in-but-not", {"in": ["a", "b"], "not": {"eq": "b"}}, {"x": "a"}, True),
    ("in-but-not-excluded", {"in": ["a", "b"], "not": {"eq": "b"}}, {"x": "b"}, False),
    ("glob-and-regex", {"glob": "INV-*", "regex": r"\d{4}$"}, {"x": "INV-2024"}, True),
    ("glob-and-regex-fails", {"glob": "INV-*", "regex": r"\d{4}$"}, {"x": "INV-abcd"}, False),
]


@pytest.mark.parametrize(("spec", "args", "expected"), [c[1:] for c in OPERATOR_CASES],
                         ids=[c[0] for c in OPERATOR_CASES])
def test_operator(spec: dict[str, Any], args: dict[str, Any], expected: bool) -> None:
    assert arg_matches(spec, args) is expected


DOTTED_CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], bool]] = [
    ("nested", "payment.amount", {"gt": 500}, {"payment": {"amount": 600}}, True),
    ("nested-below", "payment.amount", {"gt": 500}, {"payment": {"amount": 6}}, False),
    ("parent-not-object", "payment.amount", {"gt": 500}, {"payment": 600}, False),
    ("parent-missing", "payment.amount", {"gt": 500}, {}, False),
    ("leaf-missing-under-not", "payment.amount", {"not": {"gt": 500}}, {"payment": {}}, True),
    ("literal-key-wins", "payment.amount", {"gt": 500}, {"payment.amount": 600, "payment": {"amount": 1}},
     True),
    ("deep", "a.b.c", {"eq": "x"}, {"a": {"b": {"c": "x"}}}, True),
    ("list-index", "items.0.sku", {"eq": "A"}, {"items": [{"sku": "A"}, {"sku": "B"}]}, True),
    ("list-index-out-of-range", "items.2.sku", {"eq": "A"}, {"items": [{"sku": "A"}]}, False),
    ("list-non-index", "items.sku", {"eq": "A"}, {"items": [{"sku": "A"}]}, False),
    ("nested-list-every", "mail.to", {"domain_in": ["a.com"]}, {"mail": {"to": ["x@a.com", "y@a.com"]}}, True),
]


@pytest.mark.parametrize(("field", "spec", "args", "expected"), [c[1:] for c in DOTTED_CASES],
                         ids=[c[0] for c in DOTTED_CASES])
def test_dotted_path(field: str, spec: dict[str, Any], args: dict[str, Any], expected: bool) -> None:
    assert arg_matches(spec, args, field=field) is expected


def test_every_field_must_hold() -> None:
    p = policy({"name": "r", "effect": "auto_approve",
                "match": {"args": {"a": {"eq": 1}, "b": {"eq": 2}}}})
    assert p.evaluate(**request(args={"a": 1, "b": 2})) is not None
    assert p.evaluate(**request(args={"a": 1, "b": 3})) is None
    assert p.evaluate(**request(args={"a": 1})) is None


# ---------------------------------------------------------------- tool, agent, risk, labels, order


def test_rule_level_conditions() -> None:
    p = policy({"name": "r", "effect": "auto_approve",
                "match": {"tool": "send_*", "agent": ["mail-*", "ops"], "risk": ["low", "medium"],
                          "labels": ["fyi", "team:x"]}})
    ok = request(tool="send_sms", agent="mail-bot", risk="low", labels=["team:x", "fyi", "extra"])
    assert p.evaluate(**ok) is not None
    assert p.evaluate(**ok | {"agent": "ops"}) is not None
    assert p.evaluate(**ok | {"tool": "resend_sms"}) is None
    assert p.evaluate(**ok | {"tool": "Send_sms"}) is None
    assert p.evaluate(**ok | {"agent": "billing"}) is None
    assert p.evaluate(**ok | {"risk": "high"}) is None
    assert p.evaluate(**ok | {"labels": ["fyi"]}) is None


def test_single_risk_and_tool_list() -> None:
    p = policy({"name": "r", "effect": "auto_approve", "match": {"tool": ["a", "b*"], "risk": "critical"}})
    assert p.evaluate(**request(tool="a", risk="critical")) is not None
    assert p.evaluate(**request(tool="bz", risk="critical")) is not None
    assert p.evaluate(**request(tool="c", risk="critical")) is None
    assert p.evaluate(**request(tool="a", risk="high")) is None


def test_first_match_wins_across_exact_and_glob_tools() -> None:
    p = policy(
        {"name": "big", "effect": "require", "match": {"tool": "refund", "args": {"amount": {"gt": 100}}}},
        {"name": "any-glob", "effect": "deny", "reason": "r", "match": {"tool": "ref*", "agent": "intern"}},
        {"name": "exact-later", "effect": "auto_approve", "match": {"tool": "refund"}},
        {"name": "catch-all", "effect": "require"},
    )

    def rule(**kw: Any) -> str | None:
        verdict = p.evaluate(**request(tool="refund", agent="bot") | kw)
        return verdict.rule_name if verdict else None

    assert rule(args={"amount": 500}) == "big"
    assert rule(args={"amount": 500}, agent="intern") == "big"
    assert rule(args={"amount": 5}, agent="intern") == "any-glob"
    assert rule(args={"amount": 5}) == "exact-later"
    assert rule(tool="other") == "catch-all"
    assert p.rule_names == ["big", "any-glob", "exact-later", "catch-all"]


def test_memo_of_candidates_does_not_leak_between_args_or_labels() -> None:
    p = policy(
        {"name": "labelled", "effect": "deny", "reason": "r", "match": {"labels": ["escalation"]}},
        {"name": "small", "effect": "auto_approve", "match": {"args": {"n": {"lt": 10}}}},
    )
    seen = [p.evaluate(**request(args=args, labels=labels))
            for args, labels in [({"n": 1}, []), ({"n": 1}, ["escalation"]), ({"n": 99}, []), ({"n": 1}, [])]]
    assert [v.rule_name if v else None for v in seen] == ["small", "labelled", None, "small"]


def test_no_rules_and_no_match() -> None:
    assert policy().evaluate(**request()) is None
    assert len(policy()) == 0
    p = policy({"name": "r", "effect": "auto_approve", "match": {"tool": "other"}})
    assert p.evaluate(**request()) is None


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        policy().evaluate(**request(now=datetime(2026, 1, 1, 12, 0)))


# ---------------------------------------------------------------- effects and verdicts


@pytest.mark.parametrize(("rule", "expected"), [
    ({"name": "fyi", "effect": "auto_approve", "watch": "C0WATCH"},
     Verdict("fyi", "auto_approve", watch="C0WATCH")),
    ({"name": "quiet", "effect": "auto_approve", "reason": "routine"},
     Verdict("quiet", "auto_approve", reason="routine")),
    ({"name": "no", "effect": "deny", "reason": "Recipients must be on the allowlist"},
     Verdict("no", "deny", reason="Recipients must be on the allowlist")),
    ({"name": "finance", "effect": "require", "channel": "C0FIN", "reviewers": ["S0FINANCE", "U0DANA"],
      "required_approvals": 2, "timeout_s": 600},
     Verdict("finance", "require", channel="C0FIN", reviewers=("S0FINANCE", "U0DANA"), required_approvals=2,
             timeout_s=600)),
    ({"name": "plain", "effect": "require"}, Verdict("plain", "require")),
    ({"name": "posts", "effect": "budget", "budget": {"max": 20, "window_s": 3600}, "channel": "C0POSTS"},
     Verdict("posts", "budget", channel="C0POSTS", budget_max=20, budget_window_s=3600)),
], ids=["auto_approve-watch", "auto_approve-reason", "deny", "require-routing", "require-plain", "budget"])
def test_effect_verdicts(rule: dict[str, Any], expected: Verdict) -> None:
    assert policy(rule).evaluate(**request()) == expected


def test_verdict_json() -> None:
    verdict = Verdict("posts", "budget", channel="C0POSTS", reviewers=("S0X",), budget_max=20,
                      budget_window_s=3600)
    assert verdict.to_json() == {
        "effect": "budget", "rule": "posts", "reason": None, "watch": None, "channel": "C0POSTS",
        "reviewers": ["S0X"], "required_approvals": None, "timeout_s": None,
        "budget": {"max": 20, "window_s": 3600},
    }


# ---------------------------------------------------------------- config errors

ERROR_CASES: list[tuple[str, list[Any], str]] = [
    ("bad-regex", [{"name": "no-drop", "effect": "require", "match": {"args": {"query": {"regex": "(drop"}}}}],
     "signoff.yml: policies.0 (no-drop).match.args.query.regex: invalid regular expression '(drop'"),
    ("bad-regex-under-not",
     [{"name": "r", "effect": "require", "match": {"args": {"q": {"not": {"regex": "[a-"}}}}}],
     "signoff.yml: policies.0 (r).match.args.q.not.regex: invalid regular expression"),
    ("unknown-operator", [{"name": "r", "effect": "require", "match": {"args": {"q": {"equals": 1}}}}],
     "signoff.yml: policies.0 (r).match.args.q: unknown operator 'equals'; operators are eq, in, glob"),
    ("empty-operators", [{"name": "r", "effect": "require", "match": {"args": {"q": {}}}}],
     "signoff.yml: policies.0 (r).match.args.q: give at least one operator"),
    ("spec-not-mapping", [{"name": "r", "effect": "require", "match": {"args": {"q": 5}}}],
     "signoff.yml: policies.0 (r).match.args.q: expected a mapping of operators"),
    ("gt-not-number",
     [{"name": "a", "effect": "require"},
      {"name": "b", "effect": "require"},
      {"name": "c", "effect": "require"},
      {"name": "big-refunds", "effect": "require", "match": {"args": {"amount": {"gt": "500"}}}}],
     "signoff.yml: policies.3 (big-refunds).match.args.amount.gt: expected a number"),
    ("lte-bool", [{"name": "r", "effect": "require", "match": {"args": {"n": {"lte": True}}}}],
     "signoff.yml: policies.0 (r).match.args.n.lte: expected a number"),
    ("eq-list", [{"name": "r", "effect": "require", "match": {"args": {"n": {"eq": [1, 2]}}}}],
     "signoff.yml: policies.0 (r).match.args.n.eq: expected one value"),
    ("in-empty", [{"name": "r", "effect": "require", "match": {"args": {"n": {"in": []}}}}],
     "signoff.yml: policies.0 (r).match.args.n.in: expected a non-empty list of plain values"),
    ("domain-with-at", [{"name": "r", "effect": "require", "match": {"args": {"to": {"domain_in": ["@a.com"]}}}}],
     "signoff.yml: policies.0 (r).match.args.to.domain_in: '@a.com' is not a domain name"),
    ("bad-arg-path", [{"name": "r", "effect": "require", "match": {"args": {"a..b": {"eq": 1}}}}],
     "signoff.yml: policies.0 (r).match.args: 'a..b' is not an argument name or dotted path"),
    ("unknown-effect", [{"name": "r", "effect": "allow"}],
     "signoff.yml: policies.0 (r).effect: unknown effect 'allow'; effects are auto_approve, deny, require, budget"),
    ("missing-effect", [{"name": "r"}], "signoff.yml: policies.0 (r).effect: required"),
    ("deny-without-reason", [{"name": "r", "effect": "deny"}],
     "signoff.yml: policies.0 (r).reason: required when effect is deny"),
    ("deny-blank-reason", [{"name": "r", "effect": "deny", "reason": "  "}],
     "signoff.yml: policies.0 (r).reason: required when effect is deny"),
    ("budget-without-max", [{"name": "r", "effect": "budget", "budget": {"window_s": 60}}],
     "signoff.yml: policies.0 (r).budget.max: required"),
    ("budget-without-budget", [{"name": "r", "effect": "budget"}],
     "signoff.yml: policies.0 (r).budget: required when effect is budget"),
    ("budget-zero", [{"name": "r", "effect": "budget", "budget": {"max": 0, "window_s": 60}}],
     "signoff.yml: policies.0 (r).budget.max: Input should be greater than or equal to 1"),
    ("budget-on-require", [{"name": "r", "effect": "require", "budget": {"max": 1, "window_s": 60}}],
     "signoff.yml: policies.0 (r).budget: only allowed with effect budget"),
    ("watch-on-deny", [{"name": "r", "effect": "deny", "reason": "x", "watch": "C0WATCH"}],
     "signoff.yml: policies.0 (r).watch: only allowed with effect auto_approve"),
    ("channel-on-auto", [{"name": "r", "effect": "auto_approve", "channel": "C0X"}],
     "signoff.yml: policies.0 (r).channel: only allowed with effect require or budget"),
    ("quorum-on-deny", [{"name": "r", "effect": "deny", "reason": "x", "required_approvals": 2}],
     "signoff.yml: policies.0 (r).required_approvals: only allowed with effect require or budget"),
    ("bad-channel", [{"name": "r", "effect": "require", "channel": "#general"}],
     "signoff.yml: policies.0 (r).channel: '#general' is not a Slack channel id"),
    ("bad-reviewer", [{"name": "r", "effect": "require", "reviewers": ["dana"]}],
     "signoff.yml: policies.0 (r).reviewers: 'dana' is not a Slack user"),
    ("bad-timezone",
     [{"name": "r", "effect": "require", "match": {"time": {"inside": {"timezone": "Europe/Berln"}}}}],
     "signoff.yml: policies.0 (r).match.time.inside.timezone: unknown timezone 'Europe/Berln'"),
    ("bad-hours-shape", [{"name": "r", "effect": "require", "match": {"time": {"outside": {"hours": "9-17"}}}}],
     "signoff.yml: policies.0 (r).match.time.outside.hours: '9-17' is not 'HH:MM-HH:MM'"),
    ("bad-hours-range",
     [{"name": "r", "effect": "require", "match": {"time": {"inside": {"hours": "09:00-24:30"}}}}],
     "signoff.yml: policies.0 (r).match.time.inside.hours: '09:00-24:30' is not a valid time range"),
    ("empty-hours",
     [{"name": "r", "effect": "require", "match": {"time": {"inside": {"hours": "10:00-10:00"}}}}],
     "signoff.yml: policies.0 (r).match.time.inside.hours: '10:00-10:00' is an empty range"),
    ("bad-day", [{"name": "r", "effect": "require", "match": {"time": {"inside": {"days": ["monday"]}}}}],
     "signoff.yml: policies.0 (r).match.time.inside.days: unknown day 'monday'; days are mon, tue"),
    ("time-without-window", [{"name": "r", "effect": "require", "match": {"time": {}}}],
     "signoff.yml: policies.0 (r).match.time: give 'inside' or 'outside'"),
    ("unknown-risk", [{"name": "r", "effect": "require", "match": {"risk": ["urgent"]}}],
     "signoff.yml: policies.0 (r).match.risk: unknown risk 'urgent'"),
    ("tool-not-string", [{"name": "r", "effect": "require", "match": {"tool": 5}}],
     "signoff.yml: policies.0 (r).match.tool: expected a tool name or glob"),
    ("unknown-rule-key", [{"name": "r", "effect": "require", "efect": "deny"}],
     "signoff.yml: policies.0 (r).efect: unknown key"),
    ("unknown-match-key", [{"name": "r", "effect": "require", "match": {"tools": "x"}}],
     "signoff.yml: policies.0 (r).match.tools: unknown key"),
    ("missing-name", [{"effect": "require"}], "signoff.yml: policies.0.name: required"),
    ("rule-not-mapping", [{"name": "r", "effect": "require"}, "deny everything"],
     "signoff.yml: policies.1: expected a mapping"),
    ("duplicate-name", [{"name": "r", "effect": "require"}, {"name": "r", "effect": "deny"}],
     "signoff.yml: policies.1 (r).name: repeated; rule names must be unique (first used by policies.0)"),
]


@pytest.mark.parametrize(("rules", "expected"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_config_error_names_file_key_and_problem(rules: list[Any], expected: str) -> None:
    assert expected in config_error(*rules)


def test_every_problem_is_reported_one_per_line() -> None:
    message = config_error(
        {"name": "a", "effect": "deny"},
        {"name": "b", "effect": "require", "match": {"args": {"n": {"gt": "x"}, "q": {"regex": "("}}}},
    )
    lines = message.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("signoff.yml: policies.0 (a).reason:")
    assert lines[1].startswith("signoff.yml: policies.1 (b).match.args.n.gt:")
    assert lines[2].startswith("signoff.yml: policies.1 (b).match.args.q.regex:")


def test_policies_must_be_a_list() -> None:
    with pytest.raises(ConfigError, match=r"^signoff\.yml: policies: expected a list of rules"):
        parse_policies({"name": "r"}, source=SRC)  # type: ignore[arg-type]


# ---------------------------------------------------------------- time windows


def window_policy(**window: Any) -> Policy:
    return policy({"name": "w", "effect": "require", "match": {"time": window}})


def berlin(side: str = "inside", **window: Any) -> Policy:
    return window_policy(**{side: {"timezone": "Europe/Berlin"} | window})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# 2026-03-29 (Sunday): Berlin goes from 02:00 CET (UTC+1) to 03:00 CEST (UTC+2).
# 2026-10-25 (Sunday): Berlin goes from 03:00 CEST back to 02:00 CET.
DST_CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    ("winter-0930-cet", {"hours": "09:00-18:00"}, "2026-03-28T08:30", True),
    ("winter-0830-cet", {"hours": "09:00-18:00"}, "2026-03-28T07:30", False),
    ("spring-day-0930-cest", {"hours": "09:00-18:00"}, "2026-03-29T07:30", True),
    ("spring-day-0830-cest", {"hours": "09:00-18:00"}, "2026-03-29T06:30", False),
    ("spring-day-1759-cest", {"hours": "09:00-18:00"}, "2026-03-29T15:59", True),
    ("spring-day-1800-cest", {"hours": "09:00-18:00"}, "2026-03-29T16:00", False),
    ("spring-before-gap", {"hours": "02:00-03:00"}, "2026-03-29T00:59", False),
    ("spring-gap-skipped", {"hours": "02:00-03:00"}, "2026-03-29T01:00", False),
    ("spring-0100-0400-before", {"hours": "01:00-04:00"}, "2026-03-29T00:30", True),
    ("spring-0100-0400-after", {"hours": "01:00-04:00"}, "2026-03-29T01:30", True),
    ("spring-0100-0400-end", {"hours": "01:00-04:00"}, "2026-03-29T02:00", False),
    ("autumn-eve-0930-cest", {"hours": "09:00-18:00"}, "2026-10-24T07:30", True),
    ("autumn-day-0830-cet", {"hours": "09:00-18:00"}, "2026-10-25T07:30", False),
    ("autumn-day-0930-cet", {"hours": "09:00-18:00"}, "2026-10-25T08:30", True),
    ("autumn-day-1759-cet", {"hours": "09:00-18:00"}, "2026-10-25T16:59", True),
    ("autumn-day-1800-cet", {"hours": "09:00-18:00"}, "2026-10-25T17:00", False),
    ("autumn-0159-cest", {"hours": "02:00-03:00"}, "2026-10-24T23:59", False),
    ("autumn-first-0230-cest", {"hours": "02:00-03:00"}, "2026-10-25T00:30", True),
    ("autumn-second-0230-cet", {"hours": "02:00-03:00"}, "2026-10-25T01:30", True),
    ("autumn-0300-cet", {"hours": "02:00-03:00"}, "2026-10-25T02:00", False),
    ("sunday-starts-cet-midnight", {"days": ["sun"], "hours": "00:00-24:00"}, "2026-03-28T23:00", True),
    ("saturday-2359-cet", {"days": ["sun"], "hours": "00:00-24:00"}, "2026-03-28T22:59", False),
    ("sunday-2359-cest", {"days": ["sun"], "hours": "00:00-24:00"}, "2026-03-29T21:59", True),
    ("monday-0000-cest", {"days": ["sun"], "hours": "00:00-24:00"}, "2026-03-29T22:00", False),
    ("sunday-only-autumn-late-cet", {"days": ["sun"], "hours": "00:00-24:00"}, "2026-10-25T22:59", True),
    ("sunday-only-autumn-midnight", {"days": ["sun"], "hours": "00:00-24:00"}, "2026-10-25T23:00", False),
    ("sunday-starts-cest-midnight", {"days": ["sun"], "hours": "00:00-24:00"}, "2026-10-24T22:00", True),
]


@pytest.mark.parametrize(("window", "utc", "inside"), [c[1:] for c in DST_CASES], ids=[c[0] for c in DST_CASES])
def test_window_across_dst_in_berlin(window: dict[str, Any], utc: str, inside: bool) -> None:
    now = at(utc)
    assert (berlin("inside", **window).evaluate(**request(now=now)) is not None) is inside
    assert (berlin("outside", **window).evaluate(**request(now=now)) is not None) is (not inside)


def test_deploys_off_hours_example() -> None:
    p = policy({"name": "deploys-off-hours", "effect": "require", "channel": "C0ONCALL",
                "match": {"tool": "deploy*", "time": {"outside": {
                    "days": ["mon", "tue", "wed", "thu", "fri"], "hours": "09:00-18:00",
                    "timezone": "Europe/Berlin"}}}})

    def off_hours(utc: str) -> bool:
        return p.evaluate(**request(tool="deploy_web", now=at(utc))) is not None

    assert not off_hours("2026-03-27T16:59")  # Friday 17:59 CET
    assert off_hours("2026-03-27T17:00")  # Friday 18:00 CET
    assert off_hours("2026-03-28T12:00")  # Saturday
    assert off_hours("2026-03-30T06:30")  # Monday 08:30 CEST (07:30 CET would be 06:30 UTC too late)
    assert not off_hours("2026-03-30T07:00")  # Monday 09:00 CEST
    assert off_hours("2026-03-23T07:30")  # the Monday before, 08:30 CET
    assert not off_hours("2026-03-23T08:00")  # 09:00 CET


@pytest.mark.parametrize(("local", "inside"), [
    ("2026-01-09T21:59", False),  # Friday before the window
    ("2026-01-09T22:00", True),  # Friday 22:00
    ("2026-01-10T05:59", True),  # Saturday morning belongs to Friday's window
    ("2026-01-10T06:00", False),
    ("2026-01-10T23:00", False),  # Saturday night: Saturday is not listed
    ("2026-01-09T03:00", False),  # Friday early morning belongs to Thursday, not listed
])
def test_window_wrapping_midnight(local: str, inside: bool) -> None:
    p = window_policy(inside={"days": ["fri"], "hours": "22:00-06:00", "timezone": "America/New_York"})
    now = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("America/New_York"))
    assert (p.evaluate(**request(now=now.astimezone(UTC))) is not None) is inside


def test_wrapping_window_over_spring_forward() -> None:
    p = berlin("inside", days=["sat"], hours="22:00-06:00")
    assert p.evaluate(**request(now=at("2026-03-28T21:00"))) is not None  # Sat 22:00 CET
    assert p.evaluate(**request(now=at("2026-03-29T03:59"))) is not None  # Sun 05:59 CEST
    assert p.evaluate(**request(now=at("2026-03-29T04:00"))) is None  # Sun 06:00 CEST


def test_inside_and_outside_together() -> None:
    p = window_policy(inside={"days": ["mon", "tue", "wed", "thu", "fri"], "hours": "08:00-18:00"},
                      outside={"hours": "12:00-13:00"})
    assert p.evaluate(**request(now=at("2026-03-25T10:00"))) is not None
    assert p.evaluate(**request(now=at("2026-03-25T12:30"))) is None
    assert p.evaluate(**request(now=at("2026-03-28T10:00"))) is None  # Saturday


def test_window_defaults_are_every_day_all_day_utc() -> None:
    p = window_policy(inside={"hours": "23:00-24:00"})
    assert p.evaluate(**request(now=at("2026-03-29T23:30"))) is not None
    assert p.evaluate(**request(now=at("2026-03-29T22:59"))) is None


# ---------------------------------------------------------------- explain

EXAMPLE: list[dict[str, Any]] = [
    {"name": "no-drop", "effect": "deny", "reason": "DROP TABLE is never allowed; write a migration instead",
     "match": {"tool": "run_sql", "args": {"query": {"regex": r"(?i)\bdrop\s+table\b"}}}},
    {"name": "trusted-recipients", "effect": "auto_approve", "watch": "C0WATCH",
     "match": {"tool": "send_email", "args": {"to": {"domain_in": ["trusted-customer.com", "partner-corp.com"]}}}},
    {"name": "outside-allowlist", "effect": "deny", "reason": "Recipients must be on the allowlist",
     "match": {"tool": "send_email",
               "args": {"to": {"not": {"domain_in": ["trusted-customer.com", "partner-corp.com"]}}}}},
    {"name": "big-refunds", "effect": "require", "required_approvals": 2, "reviewers": ["S0FINANCE"],
     "match": {"tool": "issue_refund", "args": {"amount": {"gt": 500}}}},
    {"name": "update-budget", "effect": "budget", "budget": {"max": 20, "window_s": 3600},
     "match": {"tool": "post_update"}},
    {"name": "deploys-off-hours", "effect": "require", "channel": "C0ONCALL",
     "match": {"tool": "deploy*", "time": {"outside": {"days": ["mon", "tue", "wed", "thu", "fri"],
                                                       "hours": "09:00-18:00", "timezone": "Europe/Berlin"}}}},
]


@pytest.mark.parametrize(("tool", "args", "rule"), [
    ("run_sql", {"query": "DROP TABLE users"}, "no-drop"),
    ("run_sql", {"query": "select 1"}, None),
    ("send_email", {"to": "Ann <ann@trusted-customer.com>, bo@Partner-Corp.com"}, "trusted-recipients"),
    ("send_email", {"to": ["ann@trusted-customer.com", "eve@evil.com"]}, "outside-allowlist"),
    ("send_email", {"subject": "no recipients"}, "outside-allowlist"),
    ("issue_refund", {"amount": 501}, "big-refunds"),
    ("issue_refund", {"amount": 500}, None),
    ("post_update", {}, "update-budget"),
    ("deploy_web", {}, None),  # Wednesday 13:00 in Berlin: inside office hours
])
def test_product_example(tool: str, args: dict[str, Any], rule: str | None) -> None:
    verdict = parse_policies(EXAMPLE, source=SRC).evaluate(**request(tool=tool, args=args))
    assert (verdict.rule_name if verdict else None) == rule


def test_explain_reports_first_failing_condition_per_rule() -> None:
    p = parse_policies(EXAMPLE, source=SRC)
    out = explain(p, **request(tool="send_email", args={"to": ["ann@trusted-customer.com", "eve@evil.com"]}))
    assert out["decision"] == {
        "effect": "deny", "rule": "outside-allowlist", "reason": "Recipients must be on the allowlist",
        "watch": None, "channel": None, "reviewers": None, "required_approvals": None, "timeout_s": None,
        "budget": None,
    }
    assert out["rules"][0] == {"index": 0, "rule": "no-drop", "matched": False, "condition": "match.tool",
                               "why": "tool 'send_email' does not match 'run_sql'"}
    second = out["rules"][1]
    assert second["condition"] == "match.args.to.domain_in"
    assert "address 1 has domain 'evil.com'" in second["why"]
    assert out["rules"][2] == {"index": 2, "rule": "outside-allowlist", "matched": True}
    assert len(out["rules"]) == 3  # stops at the rule that decides
    assert "denies" in out["summary"]
    json.dumps(out)


def test_explain_without_match_lists_every_rule() -> None:
    p = parse_policies(EXAMPLE, source=SRC)
    out = explain(p, **request(tool="issue_refund", args={"amount": "900"}))
    assert out["decision"]["effect"] is None and out["decision"]["rule"] is None
    assert [r["rule"] for r in out["rules"]] == [r["name"] for r in EXAMPLE]
    assert not any(r["matched"] for r in out["rules"])
    refund = out["rules"][3]
    assert refund["condition"] == "match.args.amount.gt"
    assert refund["why"] == "amount: '900' is not a number"
    assert "waits for a human" in out["summary"]


@pytest.mark.parametrize(("rule", "req", "condition", "why"), [
    ({"match": {"agent": "ops-*"}}, {"agent": "intern"}, "match.agent", "agent 'intern' does not match 'ops-*'"),
    ({"match": {"risk": ["high", "critical"]}}, {}, "match.risk",
     "risk 'medium' is not any of ['high', 'critical']"),
    ({"match": {"labels": ["a", "b"]}}, {"labels": ["b"]}, "match.labels", "missing label(s): a"),
    ({"match": {"args": {"n": {"gt": 0, "lt": 10}}}}, {"args": {"n": 50}}, "match.args.n.lt",
     "n: 50 is not < 10"),
    ({"match": {"args": {"n": {"gt": 0}}}}, {"args": {"n": [5, -1]}}, "match.args.n.gt",
     "n: element 1: -1 is not > 0"),
    ({"match": {"args": {"n": {"eq": 1}}}}, {}, "match.args.n.eq", "n: the argument is missing"),
    ({"match": {"args": {"n": {"not": {"in": [1, 2]}}}}}, {"args": {"n": 2}}, "match.args.n.not",
     "n: 2 satisfies in [1, 2], which is negated"),
    ({"match": {"time": {"inside": {"days": ["sat", "sun"], "timezone": "Europe/Berlin"}}}}, {},
     "match.time.inside", "not inside the window: wed 13:00 Europe/Berlin is outside sat,sun 00:00-24:00"),
])
def test_explain_why(rule: dict[str, Any], req: dict[str, Any], condition: str, why: str) -> None:
    p = policy({"name": "r", "effect": "require"} | rule)
    step = explain(p, **request(**req))["rules"][0]
    assert (step["condition"], step["why"]) == (condition, why)


# ---------------------------------------------------------------- grants

GRANT = Grant(agent="mailer", tool="send_email", expires_at=NOW + timedelta(hours=1))


def test_grant_matches_until_it_expires() -> None:
    kw: dict[str, Any] = {"agent": "mailer", "tool": "send_email", "args": {"to": "a@b.com"}}
    assert grant_matches(GRANT, **kw, now=NOW)
    assert grant_matches(GRANT, **kw, now=NOW + timedelta(minutes=59, seconds=59))
    assert not grant_matches(GRANT, **kw, now=NOW + timedelta(hours=1))
    assert not grant_matches(GRANT, **kw, now=NOW + timedelta(days=1))


def test_grant_is_scoped_to_agent_and_tool() -> None:
    assert not grant_matches(GRANT, agent="other", tool="send_email", args={}, now=NOW)
    assert not grant_matches(GRANT, agent="mailer", tool="send_sms", args={}, now=NOW)
    assert not grant_matches(GRANT, agent="mail*", tool="send_email", args={}, now=NOW)


@pytest.mark.parametrize(("granted", "submitted", "expected"), [
    ({"to": "a@b.com", "n": 1}, {"n": 1, "to": "a@b.com"}, True),
    ({"n": 1}, {"n": 1.0}, True),
    ({"n": 1}, {"n": True}, False),
    ({"n": 1}, {"n": 2}, False),
    ({"n": 1}, {"n": 1, "extra": 0}, False),
    ({"to": ["a", "b"]}, {"to": ["b", "a"]}, False),
    ({"p": {"amount": 5, "ok": False}}, {"p": {"ok": False, "amount": 5}}, True),
    ({"p": {"ok": False}}, {"p": {"ok": 0}}, False),
    ({}, {}, True),
])
def test_grant_with_exact_args(granted: dict[str, Any], submitted: dict[str, Any], expected: bool) -> None:
    grant = Grant(agent="mailer", tool="send_email", args=granted, expires_at=NOW + timedelta(hours=1))
    assert grant_matches(grant, agent="mailer", tool="send_email", args=submitted, now=NOW) is expected


def test_grant_needs_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        grant_matches(GRANT, agent="mailer", tool="send_email", args={}, now=datetime(2026, 3, 25, 12))


# ---------------------------------------------------------------- properties

LEAF_SPECS = st.one_of(
    st.builds(lambda v: {"eq": v}, st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"]), st.booleans())),
    st.builds(lambda v: {"in": v}, st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"])),
                                            min_size=1, max_size=3)),
    st.builds(lambda v: {"glob": v}, st.sampled_from(["a*", "?", "[ab]", "*"])),
    st.builds(lambda v: {"regex": v}, st.sampled_from(["^a", "b$", r"\d"])),
    st.builds(lambda op, v: {op: v}, st.sampled_from(["gt", "gte", "lt", "lte"]), st.integers(-3, 3)),
    st.builds(lambda v: {"domain_in": v}, st.lists(st.sampled_from(["a.com", "b.org"]), min_size=1)),
)
SCALARS = st.one_of(st.integers(-4, 4), st.floats(-4, 4, allow_nan=False), st.booleans(), st.none(),
                    st.sampled_from(["a", "b", "ab", "1", "x@a.com", "y@b.org", "z@c.net"]))


@settings(deadline=None, max_examples=300)
@given(spec=LEAF_SPECS, value=SCALARS)
def test_not_inverts_for_present_scalar_fields(spec: dict[str, Any], value: Any) -> None:
    assert arg_matches({"not": spec}, {"x": value}) is (not arg_matches(spec, {"x": value}))


NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False))


@settings(deadline=None, max_examples=300)
@given(op=st.sampled_from(["gt", "gte", "lt", "lte"]), bound=NUMBERS, value=NUMBERS)
def test_numeric_comparisons_agree_with_python(op: str, bound: float, value: float) -> None:
    python = {"gt": value > bound, "gte": value >= bound, "lt": value < bound, "lte": value <= bound}[op]
    assert arg_matches({op: bound}, {"x": value}) is python


@settings(deadline=None, max_examples=100)
@given(op=st.sampled_from(["gt", "gte", "lt", "lte"]), bound=NUMBERS,
       value=st.one_of(st.text(max_size=4), st.booleans(), st.none(), st.dictionaries(st.text(), st.integers())))
def test_numeric_comparisons_never_hold_for_non_numbers(op: str, bound: float, value: Any) -> None:
    assert not arg_matches({op: bound}, {"x": value})


ADDRESSES = st.builds(
    lambda user, domain, named: f"{user.title()} <{user}@{domain}>" if named else f"{user}@{domain}",
    st.sampled_from(["ann", "bo", "cy"]), st.sampled_from(["a.com", "B.org", "c.net", "sub.a.com"]),
    st.booleans(),
)


@settings(deadline=None, max_examples=300)
@given(domains=st.lists(st.sampled_from(["a.com", "b.org", "c.net"]), min_size=1, max_size=3),
       recipients=st.lists(ADDRESSES, max_size=5))
def test_domain_in_on_a_list_equals_all(domains: list[str], recipients: list[str]) -> None:
    spec = {"domain_in": domains}
    each = [arg_matches(spec, {"x": r}) for r in recipients]
    expected = bool(recipients) and all(each)
    assert arg_matches(spec, {"x": recipients}) is expected
    assert arg_matches(spec, {"x": ", ".join(recipients)}) is expected
    assert arg_matches({"not": spec}, {"x": recipients}) is (not expected)


GLOB_TEXT = st.text(alphabet="ab/.-*?[]!", max_size=8)


@settings(deadline=None, max_examples=400)
@given(pattern=GLOB_TEXT, text=st.text(alphabet="ab/.-*?[]!", max_size=8))
def test_glob_agrees_with_fnmatchcase(pattern: str, text: str) -> None:
    assert arg_matches({"glob": pattern}, {"x": text}) is fnmatch.fnmatchcase(text, pattern)


@settings(deadline=None, max_examples=200)
@given(pattern=st.text(alphabet="abAB_*?", min_size=1, max_size=6), tool=st.text(alphabet="abAB_", min_size=1,
                                                                                  max_size=6))
def test_tool_glob_agrees_with_fnmatchcase(pattern: str, tool: str) -> None:
    p = policy({"name": "r", "effect": "auto_approve", "match": {"tool": pattern}})
    assert (p.evaluate(**request(tool=tool)) is not None) is fnmatch.fnmatchcase(tool, pattern)


@settings(deadline=None, max_examples=300)
@given(tool=st.sampled_from(["run_sql", "send_email", "issue_refund", "post_update", "deploy_web", "other"]),
       to=st.one_of(st.lists(ADDRESSES, max_size=3),
                    st.lists(st.sampled_from(["ann@trusted-customer.com", "bo@partner-corp.com"]), max_size=3)),
       amount=st.one_of(st.integers(0, 1000), st.just("700")),
       query=st.sampled_from(["select 1", "drop table x"]),
       hours=st.integers(0, 24 * 14))
def test_explain_agrees_with_evaluate(tool: str, to: list[str], amount: Any, query: str, hours: int) -> None:
    p = parse_policies(EXAMPLE, source=SRC)
    req = request(tool=tool, args={"to": to, "amount": amount, "query": query},
                  now=datetime(2026, 10, 19, tzinfo=UTC) + timedelta(hours=hours))
    verdict = p.evaluate(**req)
    out = explain(p, **req)
    assert out["decision"]["rule"] == (verdict.rule_name if verdict else None)
    assert out["decision"] == (verdict.to_json() if verdict else out["decision"])
    assert out["rules"][-1]["matched"] is (verdict is not None)
