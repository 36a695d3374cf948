"""API tokens: created by the CLI, stored as SHA-256 hashes, checked in constant time.

A verified token is remembered for a few seconds so a busy agent does not cost a database read per
request; a revocation therefore takes effect within ``cache_ttl_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from bot.clock import Clock
from bot.domain import ROLES, Principal
from bot.errors import Conflict, NotFound, Unauthenticated, ValidationFailed
from storage import repository as repo
from storage.db import Database

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class Tokens:
    def __init__(self, *, db: Database, clock: Clock, cache_ttl_s: float = 5.0) -> None:
        self.db = db
        self.clock = clock
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._loading: dict[str, asyncio.Task[Principal]] = {}

    async def create(self, *, name: str, role: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValidationFailed(f"name: {name!r} must be 1-128 letters, digits or _ . @ - (starting alphanumeric)")
        if role not in ROLES:
            raise ValidationFailed(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
        token = f"so_{role[0]}_{secrets.token_urlsafe(32)}"
        async with self.db.write() as s:
            await repo.delete_revoked_token(s, name=name)
            ok = await repo.add_token(s, name=name, role=role, token_hash=hash_token(token),
                                      prefix=token[:8], at=self.clock.now())
        if not ok:
            raise Conflict(f"a token named {name!r} already exists; revoke it first or pick another name")
        return token

    async def list(self) -> list[TokenInfo]:
        async with self.db.read() as s:
            rows = await repo.list_tokens(s)
        return [TokenInfo(r.name, r.role, r.prefix, r.created_at, r.revoked_at) for r in rows]

    async def revoke(self, *, name: str) -> None:
        async with self.db.write() as s:
            ok = await repo.revoke_token(s, name=name, at=self.clock.now())
        if not ok:
            raise NotFound(f"no active token named {name!r}")
        self._cache.clear()

    async def authenticate(self, token: str) -> Principal:
        digest = hash_token(token)
        hit = self._cache.get(digest)
        mono = time.monotonic()
        if hit is not None and hit[0] > mono:
            return hit[1]
        # One database read per token however many requests arrive while it runs (an agent with many
        # concurrent calls would otherwise read its token once per call every time the cache entry lapses).
        # The read is its own task, so a caller that goes away does not cancel it for the others.
        loading = self._loading.get(digest)
        if loading is None:
            loading = self._loading[digest] = asyncio.create_task(self._load(digest, mono))
            loading.add_done_callback(lambda t: (self._loading.pop(digest, None), t.cancelled() or t.exception()))
        return await asyncio.shield(loading)

    async def _load(self, digest: str, mono: float) -> Principal:
        async with self.db.read() as s:
            row = await repo.token_by_hash(s, token_hash=digest)
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            self._cache.pop(digest, None)
            raise Unauthenticated("the bearer token is unknown or revoked")
        principal = Principal(name=row.name, role=row.role)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (mono + self.cache_ttl_s, principal)
        return principal
