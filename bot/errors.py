"""One error tree. Each error knows its HTTP status, a stable code and the text shown to people.

The API's error middleware and Slack's global error handler both render these; nothing else maps
exceptions to responses.
"""

from __future__ import annotations

from typing import Any


class SignoffError(Exception):
    """Base of every error signoff raises on purpose."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(SignoffError):
    status = 400
    code = "bad_request"


class ValidationFailed(SignoffError):
    status = 422
    code = "validation_failed"


class Unauthenticated(SignoffError):
    status = 401
    code = "unauthenticated"


class Forbidden(SignoffError):
    status = 403
    code = "forbidden"


class NotFound(SignoffError):
    status = 404
    code = "not_found"


class Conflict(SignoffError):
    status = 409
    code = "conflict"


class AlreadyDecided(Conflict):
    """A decision lost the race: the request is already terminal. The message names the winner."""

    code = "already_decided"


class VersionChanged(Conflict):
    """The args were edited after the reviewer loaded them; they must look again."""

    code = "version_changed"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class PayloadTooLarge(SignoffError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(SignoffError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(SignoffError):
    status = 429
    code = "rate_limited"


class Unavailable(SignoffError):
    """Temporarily unable to serve (e.g. every database connection busy); the client should retry."""

    status = 503
    code = "unavailable"


class ConfigError(SignoffError):
    """A configuration file or environment value is invalid; the message names file, key and problem."""

    status = 500
    code = "config"
