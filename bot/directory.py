"""Who people are in Slack and which user groups they belong to, cached.

``usergroups.users.list`` is Tier 2 (about 20 calls a minute), so membership is cached per group with a
TTL, refreshed one call at a time per group (concurrent clicks share one in-flight call), and dropped when
Slack sends ``subteam_members_changed``. Display names from ``users.info`` are cached for an hour and
dropped on ``user_change``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("signoff.directory")


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    team_id: str | None
    deleted: bool = False
    is_bot: bool = False


K = TypeVar("K")
V = TypeVar("V")


class _Cache(Generic[K, V]):
    def __init__(self, ttl_s: float, now: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self._now = now
        self._items: dict[K, tuple[float, V]] = {}
        self._locks: dict[K, asyncio.Lock] = {}

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None or hit[0] <= self._now():
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        self._items[key] = (self._now() + self.ttl_s, value)

    def drop(self, key: K) -> None:
        self._items.pop(key, None)

    def lock(self, key: K) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())


class SlackDirectory:
    def __init__(self, client: AsyncWebClient, *, group_ttl_s: float = 600.0, user_ttl_s: float = 3600.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._groups: _Cache[str, frozenset[str]] = _Cache(group_ttl_s, monotonic)
        self._people: _Cache[str, Person] = _Cache(user_ttl_s, monotonic)
        self.group_calls = 0

    async def members(self, group_id: str) -> frozenset[str]:
        cached = self._groups.get(group_id)
        if cached is not None:
            return cached
        async with self._groups.lock(group_id):
            cached = self._groups.get(group_id)  # another click may have fetched it while we queued
            if cached is not None:
                return cached
            self.group_calls += 1
            try:
                resp = await self._client.usergroups_users_list(usergroup=group_id)
                users = frozenset(resp.get("users") or [])
            except SlackApiError as e:
                log.warning("usergroups.users.list %s failed: %s", group_id, e.response.get("error"))
                users = frozenset()
            self._groups.put(group_id, users)
            return users

    def forget_group(self, group_id: str) -> None:
        self._groups.drop(group_id)

    async def person(self, user_id: str, *, team_id: str | None = None, fallback: str | None = None) -> Person:
        cached = self._people.get(user_id)
        if cached is not None:
            return cached
        async with self._people.lock(user_id):
            cached = self._people.get(user_id)
            if cached is not None:
                return cached
            try:
                resp = await self._client.users_info(user=user_id)
            except SlackApiError as e:
                log.warning("users.info %s failed: %s", user_id, e.response.get("error"))
                return Person(user_id, fallback or user_id, team_id)
            u = resp.get("user") or {}
            profile = u.get("profile") or {}
            name = profile.get("display_name") or profile.get("real_name") or u.get("real_name") \
                or u.get("name") or fallback or user_id
            person = Person(user_id, name, u.get("team_id") or team_id, bool(u.get("deleted")), bool(u.get("is_bot")))
            self._people.put(user_id, person)
            return person

    def forget_person(self, user_id: str) -> None:
        self._people.drop(user_id)

    async def is_member(self, user_id: str, reviewers: list[str]) -> bool:
        """True if the user is listed directly or belongs to a listed user group."""
        if user_id in reviewers:
            return True
        for ref in reviewers:
            if ref.startswith("S") and user_id in await self.members(ref):
                return True
        return False
