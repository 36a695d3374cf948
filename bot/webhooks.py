"""Outgoing webhooks signed the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``). The id stays the same on retries so
receivers can de-duplicate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import aiohttp

from bot.clock import Clock
from bot.outbox import RetryLater
from storage.models import OutboxItem

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does; used by the tests and offered to agents that receive callbacks in Python."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = lower.get("webhook-id", ""), lower.get("webhook-timestamp", "")
    if not msg_id or not ts.isdigit() or abs(now - int(ts)) > tolerance_s:
        return False
    expected = sign(secret, msg_id, int(ts), body).split(",", 1)[1]
    for candidate in lower.get("webhook-signature", "").split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


class WebhookSender:
    """The outbox handler for ``webhook`` rows."""

    def __init__(self, *, secret: str, clock: Clock, session: aiohttp.ClientSession, timeout_s: float = 10.0):
        self._secret = secret
        self._clock = clock
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __call__(self, item: OutboxItem) -> None:
        payload: dict[str, Any] = item.payload
        body = json.dumps(payload["body"], separators=(",", ":"), ensure_ascii=False).encode()
        ts = int(self._clock.now().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "signoff-webhooks/1",
            "webhook-id": payload["id"],
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(self._secret, payload["id"], ts, body),
        }
        try:
            async with self._session.post(payload["url"], data=body, headers=headers, timeout=self._timeout,
                                          allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return
                retry_after = resp.headers.get("retry-after", "")
                delay = float(retry_after) if retry_after.isdigit() else None
                raise RetryLater(f"receiver answered HTTP {resp.status}", delay_s=delay)
        except aiohttp.ClientError as e:
            raise RetryLater(f"could not reach the receiver: {type(e).__name__}: {e}") from e
        except TimeoutError as e:
            raise RetryLater("the receiver did not answer in time") from e
