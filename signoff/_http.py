"""HTTP transport: base URL and token, error mapping, and retries with backoff (sync and async twins).

Retried: connection errors and timeouts, 502/503/504 (exponential backoff with jitter) and 429 (after its
``Retry-After``). Submits are safe to retry because each carries one idempotency key for all its attempts.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from signoff.errors import SignoffAPIError, SignoffUnavailable, api_error_class

log = logging.getLogger("signoff.client")

DEFAULT_URL = "http://127.0.0.1:3000"
RETRY_STATUSES = frozenset({502, 503, 504})
USER_AGENT = "signoff-python/0.1"


@dataclass(frozen=True)
class Retry:
    """How hard to try: ``attempts`` retries after the first try, waiting ``backoff * 2**n`` (capped at
    ``max_backoff``, with jitter) between them; a 429 waits its ``Retry-After`` up to ``max_retry_after``."""

    attempts: int = 4
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ValueError(f"retries: attempts must be >= 0, got {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("retries: backoff, max_backoff and max_retry_after must be >= 0")

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (0-based): half fixed, half random ("equal jitter")."""
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def as_retry(retries: int | Retry) -> Retry:
    return retries if isinstance(retries, Retry) else Retry(attempts=retries)


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: str | None
    token_from_env: bool

    @classmethod
    def resolve(cls, url: str | None, token: str | None) -> Endpoint:
        base = (url or os.environ.get("SIGNOFF_URL") or DEFAULT_URL).rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"signoff url must start with http:// or https://, got {base!r}")
        from_env = token is None
        tok = token if token is not None else (os.environ.get("SIGNOFF_TOKEN") or None)
        return cls(base, tok, from_env)

    def headers(self) -> dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def __repr__(self) -> str:  # never show the token
        return f"Endpoint(url={self.url!r}, token={'set' if self.token else 'unset'})"


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def retry_after(resp: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def api_error(resp: httpx.Response, endpoint: Endpoint) -> SignoffAPIError:
    """Turn an error response into the matching ``SignoffAPIError`` subclass."""
    code, message = f"http_{resp.status_code}", ""
    details: list[Any] = []
    try:
        payload = resp.json()
    except ValueError:
        payload = None
    err = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or code)
        message = str(err.get("message") or "")
        raw = err.get("details")
        details = raw if isinstance(raw, list) else []
    if not message:
        message = resp.text.strip()[:300] or resp.reason_phrase or "error"
    text = f"{message} (HTTP {resp.status_code} {code})"
    if resp.status_code == 401:
        text = _auth_message(message, endpoint)
    return api_error_class(resp.status_code)(text, status=resp.status_code, code=code, details=details,
                                             retry_after=retry_after(resp))


def _auth_message(server_said: str, endpoint: Endpoint) -> str:
    fix = "create one with `signoff tokens create NAME` and set SIGNOFF_TOKEN (or pass it as token=)"
    if not endpoint.token:
        where = "SIGNOFF_TOKEN is not set" if endpoint.token_from_env else "the token given is empty"
        return f"signoff at {endpoint.url} needs an API token, but {where}: {fix}. Server said: {server_said}"
    source = "SIGNOFF_TOKEN" if endpoint.token_from_env else "the token passed as token="
    return (f"signoff at {endpoint.url} refused {source} ({server_said}). Check that it is spelled right, "
            f"not revoked and made for this server; otherwise {fix}.")


def _decode(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise SignoffAPIError(f"expected JSON from {resp.request.url}, got {resp.text[:200]!r}",
                              status=resp.status_code, code="bad_response") from None


_RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class _Attempts:
    """The retry decisions shared by both transports: what to do after one attempt."""

    def __init__(self, endpoint: Endpoint, retry: Retry, method: str, path: str) -> None:
        self.endpoint, self.retry, self.method, self.path = endpoint, retry, method, path
        self.n = 0

    def after_error(self, exc: Exception) -> float:
        """The pause before the next attempt, or raise ``SignoffUnavailable`` when out of attempts."""
        if self.n >= self.retry.attempts:
            raise SignoffUnavailable(
                f"could not reach signoff at {self.endpoint.url} ({self.method} {self.path}) after "
                f"{self.n + 1} attempt(s): {type(exc).__name__}: {exc}", attempts=self.n + 1,
            ) from exc
        return self._next(f"{type(exc).__name__}: {exc}", None)

    def after_response(self, resp: httpx.Response) -> float | None:
        """None when ``resp`` is the answer; else the pause before the next attempt (or raise)."""
        status = resp.status_code
        if status not in RETRY_STATUSES and status != 429:
            return None
        wait = retry_after(resp)
        if self.n >= self.retry.attempts:
            if status == 429:
                raise api_error(resp, self.endpoint)
            raise SignoffUnavailable(
                f"signoff at {self.endpoint.url} kept answering HTTP {status} to {self.method} {self.path} "
                f"after {self.n + 1} attempt(s)", attempts=self.n + 1, status=status,
            )
        if status == 429 and wait is not None and wait > self.retry.max_retry_after:
            raise api_error(resp, self.endpoint)
        return self._next(f"HTTP {status}", wait)

    def _next(self, why: str, wait: float | None) -> float:
        pause = wait if wait is not None else self.retry.delay(self.n)
        self.n += 1
        log.info("signoff %s %s failed (%s); retry %d/%d in %.2fs", self.method, self.path, why, self.n,
                 self.retry.attempts, pause)
        return pause


def _result(resp: httpx.Response, endpoint: Endpoint) -> Any:
    if resp.status_code >= 400:
        raise api_error(resp, endpoint)
    return _decode(resp)


class SyncTransport:
    def __init__(self, endpoint: Endpoint, *, timeout: float, retry: Retry) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.retry = retry
        self._client = httpx.Client(base_url=endpoint.url, headers=endpoint.headers(), timeout=timeout)

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
             http_timeout: float | None = None, retry: Retry | None = None) -> Any:
        attempts = _Attempts(self.endpoint, retry or self.retry, method, path)
        content = None if body is None else encode(body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        while True:
            try:
                resp = self._client.request(method, path, content=content, params=params, headers=headers,
                                            timeout=http_timeout or self.timeout)
            except _RETRYABLE_ERRORS as e:
                time.sleep(attempts.after_error(e))
                continue
            pause = attempts.after_response(resp)
            if pause is None:
                return _result(resp, self.endpoint)
            time.sleep(pause)

    def close(self) -> None:
        self._client.close()


class AsyncTransport:
    def __init__(self, endpoint: Endpoint, *, timeout: float, retry: Retry) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.retry = retry
        self._client = httpx.AsyncClient(base_url=endpoint.url, headers=endpoint.headers(), timeout=timeout)

    async def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                   http_timeout: float | None = None, retry: Retry | None = None) -> Any:
        attempts = _Attempts(self.endpoint, retry or self.retry, method, path)
        content = None if body is None else encode(body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        while True:
            try:
                resp = await self._client.request(method, path, content=content, params=params,
                                                  headers=headers, timeout=http_timeout or self.timeout)
            except _RETRYABLE_ERRORS as e:
                await asyncio.sleep(attempts.after_error(e))
                continue
            pause = attempts.after_response(resp)
            if pause is None:
                return _result(resp, self.endpoint)
            await asyncio.sleep(pause)

    async def aclose(self) -> None:
        await self._client.aclose()
