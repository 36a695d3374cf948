"""The body of ``POST /v1/batches``: up to 100 actions, each like a request body, plus fields they share.

A shared field applies to every item that does not set it; shared ``labels`` are added to each item's, and a
shared ``context`` is merged under each item's own (the item's keys win). The batch is reviewed on one card,
so every item goes to one channel: ``channel``, else the channel the first routed item would go to.
Idempotency is per batch: ``idempotency_key`` on the batch, never on an item.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, UrlConstraints, ValidationError

from bot.errors import ValidationFailed
from bot.schemas import CHANNEL_PATTERN, Context, Label, ReviewerId, SubmitBody

MAX_ITEMS = 100
SHARED = ("risk", "channel", "reviewers", "required_approvals", "timeout_s", "callback_url")


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=100_000)

    actions: list[SubmitBody] = Field(min_length=1, max_length=MAX_ITEMS)
    context: Context | None = None
    risk: Literal["low", "medium", "high", "critical"] | None = None
    labels: list[Label] = Field(default_factory=list, max_length=32)
    channel: Annotated[str, StringConstraints(pattern=CHANNEL_PATTERN)] | None = None
    reviewers: list[ReviewerId] | None = Field(default=None, max_length=50)
    required_approvals: int | None = Field(default=None, ge=1, le=20)
    timeout_s: int | None = Field(default=None, ge=1, le=30 * 86400)
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    callback_url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2048)] | None = None

    def items(self) -> list[SubmitBody]:
        """Each action as the request body it stands for, the shared fields applied."""
        shared = self.model_dump(mode="json", include=set(SHARED), exclude_none=True)
        shared_context = self.context.model_dump(mode="json", exclude_none=True, exclude_defaults=True) \
            if self.context else {}
        out = []
        for i, action in enumerate(self.actions):
            if action.idempotency_key is not None:
                raise ValidationFailed(
                    f"actions.{i}.idempotency_key: set idempotency_key on the batch, not on its items",
                    details=[{"field": f"actions.{i}.idempotency_key", "message": "not allowed on an item"}])
            data: dict[str, Any] = {**shared, **action.model_dump(mode="json", exclude_unset=True)}
            if self.labels:
                data["labels"] = sorted(set(self.labels) | set(action.labels))
            own = action.context.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
            if shared_context or own:
                data["context"] = {**shared_context, **own}
            if self.channel is not None:
                data["channel"] = self.channel
            try:
                out.append(SubmitBody.model_validate(data))
            except ValidationError as e:
                err = e.errors(include_url=False, include_input=False)[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ValidationFailed(f"actions.{i}.{where}: {err['msg']} (with the batch's shared fields)",
                                       details=[{"field": f"actions.{i}.{where}", "message": err["msg"]}]) from None
        return out

    def body_hash(self) -> str:
        canon = json.dumps(self.model_dump(mode="json", exclude={"idempotency_key"}), sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canon.encode()).hexdigest()
