"""The shape of one policy rule in the YAML file, validated with pydantic (PRODUCT.md §5).

Every check here produces a message that names the problem; ``bot.policy.parse_policies`` prefixes it with
the file and the key path.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from bot.policy_ops import is_domain, normalise_domain
from bot.policy_time import DAYS, parse_hours
from bot.schemas import CHANNEL_PATTERN, REVIEWER_PATTERN

Effect = Literal["auto_approve", "deny", "require", "budget"]
EFFECTS: Final = get_args(Effect)
RISKS: Final = ("low", "medium", "high", "critical")
OPERATORS: Final = ("eq", "in", "glob", "regex", "domain_in", "gt", "gte", "lt", "lte", "not")
_SCALARS: Final = (str, int, float, bool, type(None))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _names(value: Any, what: str) -> Any:
    """One string or a non-empty list of non-empty strings, as a list."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a {what} or a non-empty list of them")
    return value


def _number(value: Any) -> Any:
    if value.__class__ not in (int, float) or not math.isfinite(value):
        raise ValueError("expected a number")
    return value


class ArgSpec(_Strict):
    """Operators on one argument field; all of them must hold. ``not`` wraps another spec."""

    eq: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    glob: str | None = None
    regex: str | None = None
    domain_in: list[str] | None = None
    gt: int | float | None = None
    gte: int | float | None = None
    lt: int | float | None = None
    lte: int | float | None = None
    not_: ArgSpec | None = Field(default=None, alias="not")

    @model_validator(mode="before")
    @classmethod
    def _known_operators(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("expected a mapping of operators, e.g. {gt: 500} or {regex: '^INV-'}")
        if not data:
            raise ValueError(f"give at least one operator ({', '.join(OPERATORS)})")
        for key in data:
            if key not in OPERATORS:
                raise ValueError(f"unknown operator {key!r}; operators are {', '.join(OPERATORS)}")
        return data

    _numbers = field_validator("gt", "gte", "lt", "lte", mode="before")(_number)

    @field_validator("eq")
    @classmethod
    def _one_value(cls, v: Any) -> Any:
        if isinstance(v, list):
            raise ValueError("expected one value: a list-valued argument is compared element by element; "
                             "use 'in' to allow several values")
        return v

    @field_validator("in_", mode="before")
    @classmethod
    def _plain_values(cls, v: Any) -> Any:
        if not isinstance(v, list) or not v or not all(isinstance(x, _SCALARS) for x in v):
            raise ValueError("expected a non-empty list of plain values (strings, numbers, booleans, null)")
        return v

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression {v!r}: {e}") from None
        return v

    @field_validator("domain_in", mode="before")
    @classmethod
    def _domains(cls, v: Any) -> Any:
        if not isinstance(v, list) or not v or not all(isinstance(d, str) for d in v):
            raise ValueError("expected a non-empty list of domain names, e.g. [example.com]")
        out = []
        for d in v:
            domain = normalise_domain(d)
            if not is_domain(domain):
                raise ValueError(f"{d!r} is not a domain name (write 'example.com', without '@')")
            out.append(domain)
        return out

    def operators(self) -> list[str]:
        """The operators given, in the canonical order (the order ``explain`` checks them in)."""
        given = {("in" if f == "in_" else "not" if f == "not_" else f) for f in self.model_fields_set}
        return [op for op in OPERATORS if op in given]


class WindowSpec(_Strict):
    """A weekly window on the wall clock of ``timezone``; ``hours`` may wrap past midnight."""

    days: list[str] = Field(default_factory=lambda: list(DAYS))
    hours: str = "00:00-24:00"
    timezone: str = "UTC"

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v: Any) -> Any:
        if not isinstance(v, list) or not v:
            raise ValueError(f"expected a non-empty list of days ({', '.join(DAYS)})")
        out = []
        for d in v:
            day = d.lower() if isinstance(d, str) else d
            if day not in DAYS:
                raise ValueError(f"unknown day {d!r}; days are {', '.join(DAYS)}")
            if day not in out:
                out.append(day)
        return out

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        parse_hours(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown timezone {v!r}; use an IANA name such as Europe/Berlin") from None
        return v


class TimeSpec(_Strict):
    inside: WindowSpec | None = None
    outside: WindowSpec | None = None

    @model_validator(mode="after")
    def _one_window(self) -> TimeSpec:
        if self.inside is None and self.outside is None:
            raise ValueError("give 'inside' or 'outside' (or both) with days, hours and timezone")
        return self


class RuleMatch(_Strict):
    """Conditions of a rule; all given ones must hold. Absent: not constrained."""

    tool: list[str] | None = None
    agent: list[str] | None = None
    risk: list[str] | None = None
    labels: list[str] | None = None
    args: dict[str, ArgSpec] | None = None
    time: TimeSpec | None = None

    _tool = field_validator("tool", mode="before")(lambda v: _names(v, "tool name or glob"))
    _agent = field_validator("agent", mode="before")(lambda v: _names(v, "agent name or glob"))
    _labels = field_validator("labels", mode="before")(lambda v: _names(v, "label"))

    @field_validator("risk", mode="before")
    @classmethod
    def _risk(cls, v: Any) -> Any:
        values = _names(v, "risk")
        for r in values:
            if r not in RISKS:
                raise ValueError(f"unknown risk {r!r}; risks are {', '.join(RISKS)}")
        return values

    @field_validator("args", mode="before")
    @classmethod
    def _arg_paths(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError("expected a mapping of argument names to operators, e.g. {amount: {gt: 500}}")
        for key in v:
            if not isinstance(key, str) or not all(key.split(".")):
                raise ValueError(f"{key!r} is not an argument name or dotted path (payment.amount)")
        return v


def _only_with(info: ValidationInfo, value: Any, *effects: str) -> None:
    effect = info.data.get("effect")
    if value is not None and effect is not None and effect not in effects:
        raise ValueError(f"only allowed with effect {' or '.join(effects)}")


def _channel_id(value: str | None) -> str | None:
    if value is not None and not re.match(CHANNEL_PATTERN, value):
        raise ValueError(f"{value!r} is not a Slack channel id (C…, G… or D…)")
    return value


class BudgetSpec(_Strict):
    max: int = Field(ge=1)
    window_s: int = Field(ge=1, le=30 * 86400)


class PolicyRule(_Strict):
    """One rule. ``effect`` comes before its options so their validators can see it."""

    name: str = Field(min_length=1, max_length=100)
    effect: Effect
    match: RuleMatch = Field(default_factory=RuleMatch)
    reason: str | None = Field(default=None, max_length=2000, validate_default=True)
    watch: str | None = None
    channel: str | None = None
    reviewers: list[str] | None = None
    required_approvals: int | None = Field(default=None, ge=1, le=20)
    timeout_s: int | None = Field(default=None, ge=1, le=30 * 86400)
    budget: BudgetSpec | None = Field(default=None, validate_default=True)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v

    @field_validator("effect", mode="before")
    @classmethod
    def _effect(cls, v: Any) -> Any:
        if v not in EFFECTS:
            raise ValueError(f"unknown effect {v!r}; effects are {', '.join(EFFECTS)}")
        return v

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("effect") == "deny" and not (v and v.strip()):
            raise ValueError("required when effect is deny: the agent reads it")
        return v

    @field_validator("watch")
    @classmethod
    def _watch(cls, v: str | None, info: ValidationInfo) -> str | None:
        _only_with(info, v, "auto_approve")
        return _channel_id(v)

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str | None) -> str | None:
        return _channel_id(v)

    @field_validator("channel", "reviewers", "required_approvals", "timeout_s")
    @classmethod
    def _routing(cls, v: Any, info: ValidationInfo) -> Any:
        _only_with(info, v, "require", "budget")
        return v

    @field_validator("reviewers")
    @classmethod
    def _reviewer_ids(cls, v: list[str] | None) -> list[str] | None:
        for r in v or []:
            if not re.match(REVIEWER_PATTERN, r):
                raise ValueError(f"{r!r} is not a Slack user (U…/W…) or user group (S…) id")
        return v

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: BudgetSpec | None, info: ValidationInfo) -> BudgetSpec | None:
        if v is None and info.data.get("effect") == "budget":
            raise ValueError("required when effect is budget, e.g. {max: 20, window_s: 3600}")
        _only_with(info, v, "budget")
        return v
