"""Policies (PRODUCT.md §5): ordered rules that auto-approve, deny, require review or budget an action.

Pure: no I/O, no await. ``parse_policies`` validates the ``policies:`` list of the YAML file and compiles it
once into a ``Policy``; ``Policy.evaluate`` returns the first matching rule's ``Verdict`` (or None: the request
waits for a human); ``explain`` says, rule by rule, why each did or did not match. Operator semantics — lists,
missing fields, ``not``, ``domain_in`` — are documented in ``bot.policy_ops``.

A rule without ``match`` (or with ``match: {}``) matches every request — a catch-all for the end of the list.
Conditions are checked in this order, and ``explain`` reports the first that fails: tool, agent, risk,
labels, args (fields in the order written, operators in the order of ``policy_models.OPERATORS``), time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from bot.errors import ConfigError
from bot.policy_models import ArgSpec, Effect, PolicyRule
from bot.policy_ops import (
    MISSING,
    ArgCheck,
    DomainIn,
    Not,
    Op,
    compare_op,
    eq_op,
    glob_op,
    glob_test,
    in_op,
    regex_op,
    walk,
)
from bot.policy_time import LocalClock, Window

CANDIDATE_CACHE_SIZE: Final = 8192
_UNSEEN: Final = object()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the first matching rule decides, with the routing it asks for (None: use the route's)."""

    rule_name: str
    effect: Effect
    reason: str | None = None
    watch: str | None = None
    channel: str | None = None
    reviewers: tuple[str, ...] | None = None
    required_approvals: int | None = None
    timeout_s: int | None = None
    budget_max: int | None = None
    budget_window_s: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "effect": self.effect,
            "rule": self.rule_name,
            "reason": self.reason,
            "watch": self.watch,
            "channel": self.channel,
            "reviewers": list(self.reviewers) if self.reviewers is not None else None,
            "required_approvals": self.required_approvals,
            "timeout_s": self.timeout_s,
            "budget": (
                {"max": self.budget_max, "window_s": self.budget_window_s}
                if self.budget_max is not None
                else None
            ),
        }


class _Rule:
    """One compiled rule. ``None`` in a condition slot means the rule does not constrain it."""

    __slots__ = ("agent", "args", "fields", "index", "labels", "name", "risks", "spec", "time_test", "tool",
                 "tool_literals", "verdict", "windows")

    def __init__(self, index: int, spec: PolicyRule) -> None:
        m = spec.match
        self.index = index
        self.name = spec.name
        self.spec = spec
        self.tool = _any_glob(m.tool)
        self.tool_literals = (
            frozenset(m.tool) if m.tool is not None and not any(_is_glob(p) for p in m.tool) else None
        )
        self.agent = _any_glob(m.agent)
        self.risks = frozenset(m.risk) if m.risk is not None else None
        self.labels = frozenset(m.labels) if m.labels else None
        self.args = tuple(ArgCheck(key, _compile_spec(arg)) for key, arg in (m.args or {}).items())
        self.fields = tuple((a.key, a.dotted, a.test) for a in self.args)
        self.windows: tuple[Window, ...] = ()
        if m.time is not None:
            self.windows = tuple(
                Window(inside=inside, days=w.days, hours=w.hours, timezone=w.timezone)
                for inside, w in ((True, m.time.inside), (False, m.time.outside))
                if w is not None
            )
        self.time_test = _all_windows(self.windows)
        self.verdict = Verdict(
            rule_name=spec.name,
            effect=spec.effect,
            reason=spec.reason,
            watch=spec.watch,
            channel=spec.channel,
            reviewers=tuple(spec.reviewers) if spec.reviewers is not None else None,
            required_approvals=spec.required_approvals,
            timeout_s=spec.timeout_s,
            budget_max=spec.budget.max if spec.budget else None,
            budget_window_s=spec.budget.window_s if spec.budget else None,
        )

    def first_failure(
        self, *, tool: str, agent: str, risk: str, label_set: frozenset[str], args: Mapping[str, Any],
        clock: LocalClock,
    ) -> tuple[str, str] | None:
        """``(condition key path, why)`` for the first condition that does not hold, or None."""
        m = self.spec.match
        if self.tool is not None and not self.tool(tool):
            return "match.tool", f"tool {tool!r} does not match {_one_or_list(m.tool)}"
        if self.agent is not None and not self.agent(agent):
            return "match.agent", f"agent {agent!r} does not match {_one_or_list(m.agent)}"
        if self.risks is not None and risk not in self.risks:
            return "match.risk", f"risk {risk!r} is not {_one_or_list(m.risk)}"
        if self.labels is not None and not self.labels <= label_set:
            missing = ", ".join(sorted(self.labels - label_set))
            return "match.labels", f"missing label(s): {missing}"
        for check in self.args:
            failure = check.first_failure(args)
            if failure is not None:
                return f"match.args.{check.key}.{failure[0]}", f"{check.key}: {failure[1]}"
        for window in self.windows:
            if not window.holds(clock):
                side = "inside" if window.inside else "outside"
                return f"match.time.{side}", f"not {side} the window: {window.why_not(clock)}"
        return None


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _any_glob(patterns: Sequence[str] | None) -> Callable[[str], bool] | None:
    if patterns is None:
        return None
    tests = tuple(glob_test(p) for p in patterns)
    if len(tests) == 1:
        return tests[0]
    return lambda s: any(t(s) for t in tests)


def _one_or_list(values: Sequence[str] | None) -> str:
    values = values or []
    return repr(values[0]) if len(values) == 1 else "any of " + repr(list(values))


def _all_windows(windows: tuple[Window, ...]) -> Callable[[LocalClock], bool] | None:
    if not windows:
        return None
    if len(windows) == 1:
        return windows[0].holds
    return lambda clock: all(window.holds(clock) for window in windows)


def _compile_spec(spec: ArgSpec) -> list[Op]:
    """The operators of one spec, in the canonical order; ``not`` nests a spec."""
    ops: list[Op] = []
    for name in spec.operators():
        if name == "eq":
            ops.append(eq_op(spec.eq))
        elif name == "in":
            ops.append(in_op(spec.in_ or []))
        elif name == "glob":
            ops.append(glob_op(spec.glob or ""))
        elif name == "regex":
            ops.append(regex_op(spec.regex or ""))
        elif name == "domain_in":
            ops.append(DomainIn(spec.domain_in or []))
        elif name == "not":
            assert spec.not_ is not None
            ops.append(Not(_compile_spec(spec.not_)))
        else:
            ops.append(compare_op(name, getattr(spec, name)))
    return ops


class Policy:
    """The compiled rules of one configuration, evaluated in order; the first match decides."""

    __slots__ = ("_cache", "_literal", "_rules", "_unindexed", "source")

    def __init__(self, rules: Sequence[PolicyRule], *, source: str) -> None:
        self.source = source
        self._rules = tuple(_Rule(i, spec) for i, spec in enumerate(rules))
        # Index: rules naming exact tools, by tool; the rest (globs, no tool) are checked for every tool.
        self._literal: dict[str, list[_Rule]] = {}
        unindexed: list[_Rule] = []
        for rule in self._rules:
            if rule.tool_literals is None:
                unindexed.append(rule)
            else:
                for name in rule.tool_literals:
                    self._literal.setdefault(name, []).append(rule)
        self._unindexed = tuple(unindexed)
        # Memo of the rules whose tool, agent and risk conditions hold for one (tool, agent, risk); bounded.
        self._cache: dict[tuple[str, str, str], tuple[_Rule, ...]] = {}

    @property
    def rule_names(self) -> list[str]:
        return [r.name for r in self._rules]

    def __len__(self) -> int:
        return len(self._rules)

    def evaluate(
        self, *, tool: str, agent: str, risk: str, labels: Iterable[str], args: Mapping[str, Any],
        now: datetime,
    ) -> Verdict | None:
        """The verdict of the first rule that matches, or None when none does."""
        clock = LocalClock(now)
        memo_key = (tool, agent, risk)
        candidates = self._cache.get(memo_key)
        if candidates is None:
            candidates = self._candidates(tool, agent, risk)
            if len(self._cache) < CANDIDATE_CACHE_SIZE:
                self._cache[memo_key] = candidates
        if not candidates:
            return None
        label_set = labels if isinstance(labels, frozenset) else frozenset(labels)
        walked: dict[str, Any] = {}  # dotted paths already followed in this evaluation (rules share them)
        # Labels, args and time: the conditions the candidate memo does not settle. Written out in one loop
        # because it runs for up to every rule on every submission.
        for rule in candidates:
            if rule.labels is not None and not rule.labels <= label_set:
                continue
            for key, dotted, test in rule.fields:
                value = args.get(key, MISSING)
                if value is MISSING and dotted is not None:
                    value = walked.get(key, _UNSEEN)
                    if value is _UNSEEN:
                        value = walked[key] = walk(args, dotted)
                if not test(value):
                    break
            else:
                if rule.time_test is None or rule.time_test(clock):
                    return rule.verdict
        return None

    def _candidates(self, tool: str, agent: str, risk: str) -> tuple[_Rule, ...]:
        by_tool = list(self._literal.get(tool, ()))
        by_tool += [r for r in self._unindexed if r.tool is None or r.tool(tool)]
        by_tool.sort(key=lambda r: r.index)
        return tuple(
            r for r in by_tool
            if (r.agent is None or r.agent(agent)) and (r.risks is None or risk in r.risks)
        )


def explain(
    policy: Policy, *, tool: str, agent: str, risk: str, labels: Iterable[str], args: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """For ``POST /v1/policy/evaluate``: the decision that would apply and, per rule up to the one that
    matched (or all of them), whether it matched and otherwise the first condition that failed."""
    clock = LocalClock(now)
    label_set = frozenset(labels)
    steps: list[dict[str, Any]] = []
    verdict: Verdict | None = None
    for rule in policy._rules:
        failure = rule.first_failure(
            tool=tool, agent=agent, risk=risk, label_set=label_set, args=args, clock=clock
        )
        step: dict[str, Any] = {"index": rule.index, "rule": rule.name, "matched": failure is None}
        if failure is not None:
            step["condition"], step["why"] = failure
        steps.append(step)
        if failure is None:
            verdict = rule.verdict
            break
    if verdict is None:
        decision: dict[str, Any] = dict.fromkeys(_DECISION_KEYS)
        summary = "no rule matched: the request waits for a human (routes decide where)"
    else:
        decision = verdict.to_json()
        summary = _SUMMARY[verdict.effect].format(v=verdict)
    return {"decision": decision, "summary": summary, "rules": steps}


_DECISION_KEYS: Final = ("effect", "rule", "reason", "watch", "channel", "reviewers", "required_approvals",
                         "timeout_s", "budget")
_SUMMARY: Final = {
    "auto_approve": "rule {v.rule_name!r} approves automatically",
    "deny": "rule {v.rule_name!r} denies: {v.reason}",
    "require": "rule {v.rule_name!r} requires review",
    "budget": "rule {v.rule_name!r} approves automatically while this agent has had fewer than "
              "{v.budget_max} in {v.budget_window_s} s, then requires review",
}


def parse_policies(raw: Sequence[Any], *, source: str) -> Policy:
    """Validate and compile the ``policies:`` list; a bad list raises ``ConfigError`` naming the file, the
    key path and the problem, e.g. ``signoff.yml: policies.3 (big-refunds).match.args.amount.gt: expected a
    number``. Every problem is reported, one per line."""
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{source}: policies: expected a list of rules, got {type(raw).__name__}")
    problems: list[str] = []
    rules: list[PolicyRule] = []
    first_index: dict[str, int] = {}
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        where = f"{source}: policies.{i}" + (f" ({name})" if isinstance(name, str) and name else "")
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping (name, match, effect, ...), got {type(item).__name__}")
            continue
        if isinstance(name, str) and name in first_index:
            problems.append(f"{where}.name: repeated; rule names must be unique "
                            f"(first used by policies.{first_index[name]})")
        elif isinstance(name, str):
            first_index[name] = i
        try:
            rules.append(PolicyRule.model_validate(item))
        except ValidationError as e:
            problems.extend(_describe(e, where))
    if problems:
        raise ConfigError("\n".join(problems))
    return Policy(rules, source=source)


def _describe(error: ValidationError, where: str) -> list[str]:
    lines = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            msg = "required"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        else:
            msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        lines.append(f"{where}.{key}: {msg}" if key else f"{where}: {msg}")
    return lines


# ---------------------------------------------------------------- grants


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """A time-boxed auto-approve created from a card ("Approve + allow this for 1 h"): this agent, this
    tool and, when ``args`` is given, exactly these args, until ``expires_at`` (exclusive)."""

    agent: str
    tool: str
    args: Mapping[str, Any] | None = None
    expires_at: datetime


def grant_matches(
    grant: Grant, *, agent: str, tool: str, args: Mapping[str, Any], now: datetime
) -> bool:
    """Whether the grant covers this submission at ``now``. Args compare by JSON equality."""
    if now.tzinfo is None or grant.expires_at.tzinfo is None:
        raise ValueError("grant times must be timezone-aware")
    if now >= grant.expires_at or agent != grant.agent or tool != grant.tool:
        return False
    return grant.args is None or json_equal(grant.args, args)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: ``true`` is not ``1`` (unlike Python), ``1`` is ``1.0``."""
    if (a.__class__ is bool) != (b.__class__ is bool):
        return False
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (Mapping, list, tuple)) or isinstance(b, (Mapping, list, tuple)):
        return False
    return bool(a == b)


__all__ = ["Effect", "Grant", "Policy", "Verdict", "explain", "grant_matches", "parse_policies"]
