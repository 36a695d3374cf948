"""Fill a database with pending requests quickly: straight through the repository's bulk inserts.

Going through the API would spend minutes per store on set-up alone. The request and label rows written
here are the ones ``ApprovalService.submit`` writes, built by hand; the ``created`` audit events are left
out (a third of the seeding time, and nothing the memory phase reads).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.domain import new_id
from storage import repository as repo
from storage.db import Database

TOOLS = ("send_email", "issue_refund", "run_sql", "deploy_service")
CHUNK = 2_000


def _request(*, created: datetime, expires: datetime, agent: str, n: int) -> dict[str, Any]:
    tool = TOOLS[n % len(TOOLS)]
    return dict(
        id=new_id("req_", created),
        status="pending",
        tool=tool,
        args={"to": f"customer{n}@example.com", "subject": f"Refund for order #{n}",
              "body": "Hello,\n\nwe have issued a refund of 42.00 EUR for your order.\n\nBest regards"},
        final_args=None,
        context={"summary": f"Refund confirmation for order #{n}",
                 "user_request": "Please tell the customer the refund went through"},
        agent=agent,
        risk=("low", "medium", "high", "critical")[n % 4],
        channel=None,
        reviewers=[],
        required_approvals=1,
        version=1,
        created_at=created,
        expires_at=expires,
        idempotency_key=None,
        body_hash=None,
        callback_url=None,
        rule=None,
        remind_at=None,
        escalate_at=None,
    )


async def _seed(url: str, *, agent: str, pending: int, overdue: int) -> list[str]:
    """``pending`` requests due in two hours and ``overdue`` already past their deadline (for the sweep)."""
    db = Database(url)
    now = datetime.now(UTC)
    pending_ids: list[str] = []
    try:
        plan = [(True, n) for n in range(overdue)] + [(False, n) for n in range(pending)]
        for start in range(0, len(plan), CHUNK):
            rows = []
            for is_overdue, n in plan[start : start + CHUNK]:
                if is_overdue:
                    created = now - timedelta(hours=2, seconds=n / 1000)
                    rows.append(_request(created=created, expires=now - timedelta(seconds=30),
                                         agent=agent, n=n))
                else:
                    created = now - timedelta(seconds=(pending - n) / 100)
                    rows.append(_request(created=created, expires=now + timedelta(hours=2),
                                         agent=agent, n=n))
            labels = [(r["id"], "needs-human-review") for i, r in enumerate(rows) if i % 4 == 0]
            async with db.write() as s:
                inserted = await repo.insert_requests(s, rows=rows)
                await repo.insert_labels(s, pairs=labels)
            if len(inserted) != len(rows):
                raise RuntimeError(f"seeding inserted {len(inserted)} of {len(rows)} rows")
            pending_ids.extend(r["id"] for r in rows if r["expires_at"] > now)
    finally:
        await db.close()
    return pending_ids


def seed(url: str, *, agent: str, pending: int, overdue: int) -> list[str]:
    """Returns the ids of the requests that stay pending."""
    return asyncio.run(_seed(url, agent=agent, pending=pending, overdue=overdue))
