"""signoff's agent-side client: submit an action, let a human approve, edit or reject it, then act.

    from signoff import Signoff
    gate = Signoff()  # SIGNOFF_URL and SIGNOFF_TOKEN from the environment

    @gate.requires_approval(risk="high", labels=["needs-human-review"])
    def send_email(to: str, subject: str, body: str) -> str: ...
"""

from signoff._http import Retry
from signoff.aio import AsyncBatch, AsyncSignoff
from signoff.client import Batch, Signoff
from signoff.decision import DecidedBy, Decision
from signoff.errors import (
    ActionRejected,
    ApprovalBypassed,
    ApprovalCancelled,
    ApprovalExpired,
    AuthenticationError,
    ConflictError,
    InvalidRequest,
    NotApproved,
    PermissionDenied,
    RateLimited,
    RequestNotFound,
    ServerError,
    SignoffAPIError,
    SignoffError,
    SignoffUnavailable,
    WaitTimedOut,
)
from signoff.handle import AsyncRequestHandle, Page, RequestHandle

__all__ = [
    "ActionRejected",
    "ApprovalBypassed",
    "ApprovalCancelled",
    "ApprovalExpired",
    "AsyncBatch",
    "AsyncRequestHandle",
    "AsyncSignoff",
    "AuthenticationError",
    "Batch",
    "ConflictError",
    "DecidedBy",
    "Decision",
    "InvalidRequest",
    "NotApproved",
    "Page",
    "PermissionDenied",
    "RateLimited",
    "RequestHandle",
    "RequestNotFound",
    "Retry",
    "ServerError",
    "Signoff",
    "SignoffAPIError",
    "SignoffError",
    "SignoffUnavailable",
    "WaitTimedOut",
]
