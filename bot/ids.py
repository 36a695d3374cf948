"""Every Slack identifier the app uses: action_ids, callback_ids, block_ids and the slash command.

Handlers register against these values and block builders emit them; ``manifest.yml`` is checked against
``SLASH_COMMAND`` by a test, so a rename can never leave the two out of step.
"""

from __future__ import annotations

from enum import StrEnum

SLASH_COMMAND = "/signoff"

# Events the app subscribes to (manifest.yml ``bot_events``): App Home publishing, and refreshing the cached
# user-group memberships and user names. A test keeps the manifest equal to this list.
BOT_EVENTS = ("app_home_opened", "subteam_members_changed", "subteam_updated", "user_change")

# The bot token's scopes (manifest.yml ``oauth_config.scopes.bot``), the minimal set; justified in the manifest.
BOT_SCOPES = ("chat:write", "chat:write.public", "commands", "users:read", "usergroups:read", "im:write")


class Action(StrEnum):
    """``action_id`` of interactive elements on cards, replies and App Home."""

    APPROVE = "signoff_approve"
    EDIT = "signoff_edit"
    REJECT = "signoff_reject"
    VIEW_FULL = "signoff_view_full"
    OVERFLOW = "signoff_overflow"
    APPROVE_GRANT = "signoff_approve_grant"
    BATCH_APPROVE_ITEM = "signoff_batch_approve_item"
    BATCH_REJECT_ITEM = "signoff_batch_reject_item"
    BATCH_APPROVE_ALL = "signoff_batch_approve_all"
    BATCH_REJECT_ALL = "signoff_batch_reject_all"
    PAGE_NEXT = "signoff_page_next"
    PAGE_PREV = "signoff_page_prev"
    REVOKE_GRANT = "signoff_revoke_grant"
    ARG_INPUT = "signoff_arg_input"
    FEEDBACK_INPUT = "signoff_feedback_input"
    SHOW = "signoff_show"
    GRANT_DURATION_INPUT = "signoff_grant_duration_input"
    GRANT_SCOPE_INPUT = "signoff_grant_scope_input"


class View(StrEnum):
    """``callback_id`` of modals."""

    EDIT = "signoff_edit_modal"
    REJECT = "signoff_reject_modal"
    VIEW_FULL = "signoff_view_full_modal"
    BATCH_REJECT = "signoff_batch_reject_modal"
    GRANT = "signoff_grant_modal"


class Block(StrEnum):
    """Stable ``block_id`` prefixes; inputs in modals use ``ARG`` + the argument name."""

    ACTIONS = "signoff_actions"
    FEEDBACK = "signoff_feedback"
    ARG = "arg:"
    ARG_INDEX = "arg#"
    ARG_REST = "arg*"
    GRANT_DURATION = "signoff_grant_duration"
    GRANT_SCOPE = "signoff_grant_scope"
