"""The Slack surfaces for reviewing at scale, registered on the Bolt app: ``/signoff``, App Home, batch cards
and the card's label menu. Built by the composition root (``bot.app``) and handed to ``bot.slack.build_slack``."""

from __future__ import annotations

from dataclasses import dataclass

from slack_bolt.async_app import AsyncApp

from bot.batch_review import BatchReview
from bot.card_labels import CardLabels
from bot.inbox import Inbox
from bot.review import SlackReview
from handlers import batch_actions, commands, home, labels


@dataclass
class ReviewSurfaces:
    inbox: Inbox
    batch_review: BatchReview
    labels: CardLabels

    def register(self, app: AsyncApp, review: SlackReview) -> None:
        commands.register(app, self.inbox, review)
        home.register(app, self.inbox)
        batch_actions.register(app, review, self.batch_review)
        labels.register(app, self.labels)
