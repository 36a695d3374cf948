"""What reviewers read in Slack: ``/signoff`` lists and stats, and the App Home.

Results are plain data (request JSON as ``bot.serialize.request_json`` shapes it); ``bot.blocks_lists`` and
``bot.blocks_home`` render them. "Mine" means the requests this Slack user may decide: those listing them, one
of their user groups (membership from the cached directory), or nobody as reviewers.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from bot.commands import PAGE_SIZE, Command, PageRef
from bot.directory import SlackDirectory
from bot.listing import HelpResult, HomeData, PageResult, Result, ShowResult
from bot.review import Clicker
from bot.serialize import request_json
from bot.service import ApprovalService
from bot.stats import WINDOWS, Stats, Window, id_floor, percentile
from storage import repository_inbox as q
from storage.repository import ListFilter

HOME_WAITING = 10
HOME_DECIDED = 10
STATS_SAMPLE = 50_000  # decision times read for the median and p90
TOP = 5


class Inbox:
    def __init__(self, *, service: ApprovalService, directory: SlackDirectory, page_size: int = PAGE_SIZE) -> None:
        self.service = service
        self.db = service.db
        self.clock = service.clock
        self.directory = directory
        self.page_size = page_size

    async def run(self, command: Command, who: Clicker) -> Result:
        """Answer a parsed ``/signoff`` command."""
        if command.name == "help":
            return HelpResult(self.clock.now())
        if command.name == "stats":
            return await self.stats()
        if command.name == "show":
            assert command.request_id is not None
            return ShowResult(await self.service.get(request_id=command.request_id), self.clock.now())
        return await self.page(PageRef(command), who)

    async def page(self, ref: PageRef, who: Clicker) -> PageResult:
        now = self.clock.now()
        f = ref.command.filters
        filt = ListFilter(status="pending", label=f.label, tool=f.tool, agent=f.agent, risk=f.risk,
                          channel=f.channel)
        refs = await self.my_refs(who.user_id, now) if ref.command.name == "mine" else None
        n = self.page_size
        async with self.db.read() as s:
            rows = await q.pending_page(s, filt=filt, now=now, limit=n + 1, before_id=ref.before,
                                        after_id=ref.after, reviewer_refs=refs)
            if ref.after is not None:  # the page before: the extra row, if any, is newer still
                has_newer, rows = len(rows) > n, rows[-n:]
                has_older = True
            else:
                has_older, rows = len(rows) > n, rows[:n]
                has_newer = ref.before is not None and bool(rows) and bool(await q.pending_page(
                    s, filt=filt, now=now, limit=1, after_id=rows[0].id, reviewer_refs=refs))
            if ref.after is not None and len(rows) < n:
                # Fewer than a page is newer than where we were: show the newest page instead.
                rows = await q.pending_page(s, filt=filt, now=now, limit=n + 1, reviewer_refs=refs)
                has_older, rows, has_newer = len(rows) > n, rows[:n], False
            total = await q.count_pending(s, filt=filt, now=now, reviewer_refs=refs)
        page = 1 if not has_newer else max(ref.page, 2)
        return PageResult(PageRef(ref.command, page, ref.before, ref.after),
                          [request_json(r, now=now) for r in rows], total, has_newer, has_older, now)

    async def my_refs(self, user_id: str, now: datetime | None = None) -> list[str]:
        """The user and the user groups they are in, among those named as reviewers of pending requests."""
        now = now or self.clock.now()
        async with self.db.read() as s:
            lists = await q.pending_reviewer_lists(s, now=now)
        groups: set[str] = set()
        for text in lists:
            try:
                groups.update(r for r in json.loads(text) if isinstance(r, str) and r.startswith("S"))
            except ValueError:
                continue
        mine = [user_id]
        for group in sorted(groups):
            if user_id in await self.directory.members(group):
                mine.append(group)
        return mine

    async def stats(self) -> Stats:
        now = self.clock.now()
        week = now - timedelta(days=7)
        async with self.db.read() as s:
            windows = [Window(label, await q.status_counts(s, since_id=id_floor(now - span), now=now))
                       for label, span in WINDOWS]
            times = await q.decision_times(s, since=week, limit=STATS_SAMPLE)
            tools = await q.busiest_tools(s, since_id=id_floor(week), limit=TOP)
            reviewers = await q.decisions_per_reviewer(s, since=week, limit=10)
        return Stats(at=now, windows=windows, decided=len(times), median_s=percentile(times, 0.5),
                     p90_s=percentile(times, 0.9), tools=tools, reviewers=reviewers)

    async def home(self, user_id: str) -> HomeData:
        now = self.clock.now()
        refs = await self.my_refs(user_id, now)
        pending = ListFilter(status="pending")
        async with self.db.read() as s:
            # The oldest first: what has waited longest most needs a decision ("req_" sorts before every id).
            waiting = await q.pending_page(s, filt=pending, now=now, limit=HOME_WAITING, after_id="req_",
                                           reviewer_refs=refs)
            waiting_total = await q.count_pending(s, filt=pending, now=now, reviewer_refs=refs)
            pending_total = await q.count_pending(s, filt=pending, now=now)
            decided = await q.decided_by(s, user_id=user_id, limit=HOME_DECIDED)
            decided_week = await q.count_decided_by(s, user_id=user_id, since=now - timedelta(days=7))
        return HomeData(user_id=user_id, waiting=[request_json(r, now=now) for r in reversed(waiting)],
                        waiting_total=waiting_total, pending_total=pending_total,
                        decided=[(request_json(r, now=now), at) for r, at in decided], decided_week=decided_week,
                        at=now)
