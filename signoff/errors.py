"""Every exception the client raises on purpose, in one tree rooted at ``SignoffError``.

Three families: the server could not be reached (``SignoffUnavailable``), the server answered with an
error (``SignoffAPIError`` and one subclass per status), and a human did not approve (``NotApproved``:
rejected, expired or cancelled). The last family's messages are written for an agent's model to read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signoff.handle import Decision


class SignoffError(Exception):
    """Base of every error the signoff client raises."""


class SignoffUnavailable(SignoffError):
    """The server could not be reached, or kept answering 502/503/504, after all retries."""

    def __init__(self, message: str, *, attempts: int, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts
        self.status = status


class SignoffAPIError(SignoffError):
    """The server answered with an error: ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, message: str, *, status: int, code: str, details: list[Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or []
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class InvalidRequest(SignoffAPIError):
    """400, 413, 415 or 422: the request was refused as malformed; the message names the field."""


class AuthenticationError(SignoffAPIError):
    """401: the token is missing, unknown or revoked."""


class PermissionDenied(SignoffAPIError):
    """403: the token's role may not do this (e.g. an agent cancelling another agent's request)."""


class RequestNotFound(SignoffAPIError):
    """404: no such request, or not one this token may see."""


class ConflictError(SignoffAPIError):
    """409: the request was already decided, or an idempotency key was reused with another body."""


class RateLimited(SignoffAPIError):
    """429 that outlasted the retries (or asked to wait longer than the client is willing to)."""


class ServerError(SignoffAPIError):
    """Any other 5xx answer."""


_BY_STATUS: dict[int, type[SignoffAPIError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: RequestNotFound,
    409: ConflictError,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
}


def api_error_class(status: int) -> type[SignoffAPIError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else SignoffAPIError


class NotApproved(SignoffError):
    """The action must not run: a human (or a policy) rejected it, it expired, or it was cancelled."""

    def __init__(self, message: str, decision: Decision) -> None:
        super().__init__(message)
        self.message = message
        self.decision = decision

    @property
    def request_id(self) -> str:
        return self.decision.request_id

    @property
    def feedback(self) -> str | None:
        return self.decision.feedback


class ActionRejected(NotApproved):
    """A reviewer or a policy rejected the action; ``feedback`` says why."""


class ApprovalExpired(NotApproved):
    """Nobody decided before the request's deadline."""


class ApprovalCancelled(NotApproved):
    """The request was withdrawn before anyone decided."""


class WaitTimedOut(SignoffError, TimeoutError):
    """``wait(timeout=...)`` ran out while the request was still pending (it may still be decided later)."""

    def __init__(self, message: str, *, request_id: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class ApprovalBypassed(UserWarning):
    """Emitted when ``SIGNOFF_MODE=off`` lets a gated function run without human approval."""
