"""Request bodies of the HTTP API, validated with pydantic. Unknown fields are refused by name."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, UrlConstraints, field_validator

from bot import jsonfast

MAX_ARGS_BYTES = 256 * 1024
MAX_ARGS_DEPTH = 64
TOOL_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$"
REVIEWER_PATTERN = r"^[UWS][A-Z0-9]{2,31}$"
CHANNEL_PATTERN = r"^[CGD][A-Z0-9]{2,31}$"

Label = Annotated[str, StringConstraints(pattern=LABEL_PATTERN)]
ReviewerId = Annotated[str, StringConstraints(pattern=REVIEWER_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


class Action(_Body):
    tool: Annotated[str, StringConstraints(pattern=TOOL_PATTERN)]
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("args")
    @classmethod
    def _args_size(cls, v: dict[str, Any]) -> dict[str, Any]:
        if _nested_deeper_than(v, MAX_ARGS_DEPTH):  # deeper values break serialisation (a 500) downstream
            raise ValueError(f"args are nested deeper than {MAX_ARGS_DEPTH} levels")
        size = len(jsonfast.dumps(v))
        if size > MAX_ARGS_BYTES:
            raise ValueError(f"args are {size} bytes as JSON; the limit is {MAX_ARGS_BYTES} (256 KiB)")
        return v


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether dicts and lists nest more than ``limit`` levels (a level at a time; scalars cost nothing)."""
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 1
    while level:
        if depth > limit:
            return True
        below = []
        for node in level:
            for child in node.values() if isinstance(node, dict) else node:
                if isinstance(child, (dict, list)):
                    below.append(child)
        level, depth = below, depth + 1
    return False


class Link(_Body):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    title: Annotated[str, StringConstraints(max_length=200)] | None = None


class Context(_Body):
    summary: Annotated[str, StringConstraints(max_length=4000)] | None = None
    user_request: Annotated[str, StringConstraints(max_length=20000)] | None = None
    reasoning: Annotated[str, StringConstraints(max_length=20000)] | None = None
    session_id: Annotated[str, StringConstraints(max_length=256)] | None = None
    links: list[Link | Annotated[str, StringConstraints(min_length=1, max_length=2048)]] = Field(
        default_factory=list, max_length=20
    )
    requested_by_slack_user: Annotated[str, StringConstraints(pattern=r"^[UW][A-Z0-9]{2,31}$")] | None = None


class SubmitBody(_Body):
    action: Action
    context: Context = Field(default_factory=Context)
    risk: Literal["low", "medium", "high", "critical"] = "medium"
    labels: list[Label] = Field(default_factory=list, max_length=32)
    channel: Annotated[str, StringConstraints(pattern=CHANNEL_PATTERN)] | None = None
    reviewers: list[ReviewerId] = Field(default_factory=list, max_length=50)
    required_approvals: int | None = Field(default=None, ge=1, le=20)
    timeout_s: int | None = Field(default=None, ge=1, le=30 * 86400)
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    callback_url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2048)] | None = None

    @field_validator("labels")
    @classmethod
    def _dedupe_labels(cls, v: list[str]) -> list[str]:
        return sorted(set(v))


class ReviewerRef(_Body):
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


class DecisionBody(_Body):
    decision: Literal["approve", "edit", "reject"]
    reviewer: ReviewerRef | Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    args: dict[str, Any] | None = None
    feedback: Annotated[str, StringConstraints(max_length=4000)] | None = None
    version: int | None = Field(default=None, ge=1)

    @field_validator("args")
    @classmethod
    def _args_size(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else Action._args_size(v)


class CancelBody(_Body):
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


class LabelsBody(_Body):
    add: list[Label] = Field(default_factory=list, max_length=32)
    remove: list[Label] = Field(default_factory=list, max_length=32)


class ResultBody(_Body):
    ok: bool
    detail: Annotated[str, StringConstraints(max_length=4000)] | None = None


class PolicyEvaluateBody(SubmitBody):
    """A submission to explain, not to create; an admin may ask on behalf of another ``agent``."""

    agent: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
