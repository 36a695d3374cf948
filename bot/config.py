"""The YAML configuration file: routing, reviewers, timeouts, escalation, digests and policies.

Validated with pydantic; a bad file is refused with the file, the key path and the problem, e.g.
``signoff.yml: routes.0.required_approvals: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from bot.cron import crontab, zone
from bot.errors import ConfigError
from bot.policy import Policy, parse_policies

Risk = Literal["low", "medium", "high", "critical"]
SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
SLACK_REVIEWER = re.compile(r"^[UWS][A-Z0-9]{2,}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_reviewers(values: list[str]) -> list[str]:
    for v in values:
        if not SLACK_REVIEWER.match(v):
            raise ValueError(f"{v!r} is not a Slack user (U…/W…) or user group (S…) id")
    return values


def _check_channel(value: str | None) -> str | None:
    if value is not None and not SLACK_CHANNEL.match(value):
        raise ValueError(f"{value!r} is not a Slack channel id (C…, G… or D…)")
    return value


class SlackConfig(_Strict):
    default_channel: str | None = None
    # Burst coalescing: more than ``coalesce_after`` requests waiting for a card in one channel are posted as
    # one batch card; a card is held up to ``coalesce_window_s`` while other requests for its channel arrive.
    coalesce_after: int = Field(default=5, ge=1, le=100)
    coalesce_window_s: float = Field(default=2.0, ge=0, le=60)

    _channel = field_validator("default_channel")(_check_channel)


class RouteMatch(_Strict):
    tool: str | None = None
    risk: list[Risk] | None = None
    labels: list[str] | None = None
    agent: str | None = None

    @field_validator("risk", mode="before")
    @classmethod
    def _one_risk(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Route(_Strict):
    match: RouteMatch = Field(default_factory=RouteMatch)
    channel: str | None = None
    reviewers: list[str] | None = None
    required_approvals: int | None = Field(default=None, ge=1, le=20)
    timeout_s: int | None = Field(default=None, ge=1, le=30 * 86400)
    on_expiry: Literal["reject", "escalate"] = "reject"
    # Override the matching keys of ``timeouts`` for requests on this route.
    remind_after_s: int | None = Field(default=None, ge=1)
    remind_every_s: int | None = Field(default=None, ge=1)
    remind_max: int | None = Field(default=None, ge=1, le=100)
    escalate_after_s: int | None = Field(default=None, ge=1)

    _channel = field_validator("channel")(_check_channel)
    _reviewers = field_validator("reviewers")(lambda v: None if v is None else _check_reviewers(v))


class Timeouts(_Strict):
    default_s: int = Field(default=1800, ge=1, le=30 * 86400)
    remind_after_s: int | None = Field(default=None, ge=1)
    remind_every_s: int | None = Field(default=None, ge=1)
    remind_max: int = Field(default=1, ge=1, le=100)
    escalate_after_s: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _reminders(self) -> Timeouts:
        _check_reminders(self.remind_after_s, self.remind_every_s, self.remind_max)
        return self


def _check_reminders(after: int | None, every: int | None, most: int | None) -> None:
    if every is not None and after is None:
        raise ValueError("remind_every_s needs remind_after_s (when the first reminder goes)")
    if most is not None and most > 1 and every is None:
        raise ValueError(f"remind_max: {most} reminders need remind_every_s (the time between them)")


class Escalation(_Strict):
    channel: str | None = None
    mention: list[str] = Field(default_factory=list)
    label: str = Field(default="escalation", min_length=1, max_length=64)

    _channel = field_validator("channel")(_check_channel)
    _mention = field_validator("mention")(_check_reviewers)


class Digest(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    channel: str
    labels: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1)
    cron: str | None = None
    interval_s: int | None = Field(default=None, ge=1)
    timezone: str = "UTC"
    post_when_empty: bool = False

    _channel = field_validator("channel")(_check_channel)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        zone(v)
        return v

    @field_validator("cron")
    @classmethod
    def _crontab(cls, v: str | None) -> str | None:
        if v is not None:
            crontab(v, "UTC")  # the zone does not change what parses
        return v

    @model_validator(mode="after")
    def _one_schedule(self) -> Digest:
        if (self.cron is None) == (self.interval_s is None):
            raise ValueError("give exactly one of 'cron' or 'interval_s'")
        return self


class Config(_Strict):
    slack: SlackConfig = Field(default_factory=SlackConfig)
    reviewers: list[str] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    escalation: Escalation = Field(default_factory=Escalation)
    digests: list[Digest] = Field(default_factory=list)
    policies: list[dict[str, Any]] = Field(default_factory=list)
    webhooks: dict[str, Any] = Field(default_factory=dict)

    _reviewers = field_validator("reviewers")(_check_reviewers)
    _policy: Policy | None = PrivateAttr(default=None)

    @property
    def policy(self) -> Policy:
        """The compiled ``policies`` (compiled once; ``parse_config`` compiles them up front)."""
        if self._policy is None:
            self._policy = parse_policies(self.policies, source="config")
        return self._policy

    @model_validator(mode="after")
    def _unique_digests(self) -> Config:
        names = [d.name for d in self.digests]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"digest names must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _route_reminders(self) -> Config:
        t = self.timeouts
        for i, r in enumerate(self.routes):
            after = r.remind_after_s if r.remind_after_s is not None else t.remind_after_s
            every = r.remind_every_s if r.remind_every_s is not None else t.remind_every_s
            try:
                _check_reminders(after, every, r.remind_max)
            except ValueError as e:
                raise ValueError(f"routes.{i}: {e}; set it in the route or in timeouts") from None
        return self


def load_config(path: Path | None) -> Config:
    """Read and validate the YAML file; no file means defaults."""
    if path is None:
        return Config()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return parse_config(raw, source=str(path))


def parse_config(raw: dict[str, Any], *, source: str = "config") -> Config:
    try:
        config = Config.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append(f"{source}: {key}: {msg}")
        raise ConfigError("\n".join(problems)) from None
    config._policy = parse_policies(config.policies, source=source)
    return config
