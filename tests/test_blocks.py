"""Pure tests of the Block Kit builders: what each card and modal shows, and that nothing breaks a limit."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View as ViewModel

from bot.blocks import (
    BlockKitLimitError,
    SubmissionError,
    approval_card,
    check_message_limits,
    check_view_limits,
    edit_modal,
    escape_mrkdwn,
    parse_edit_submission,
    parse_modal_metadata,
    parse_reject_submission,
    parse_view_full_value,
    reject_modal,
    truncate,
    view_full_modal,
)
from bot.blocks_text import slack_len
from bot.ids import Action, View
from bot.ids import Block as BlockId

NOW = datetime(2026, 1, 5, 9, 5, tzinfo=UTC)
RID = "req_01kdx3q9r2m7c8v4n6p0a5s1tb"
DECIDED = ("approved", "modified", "rejected", "expired", "cancelled")


def make_req(tool: str = "send_email", args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "id": RID,
        "status": "pending",
        "action": {"tool": tool, "args": {"to": "jane@example.com"} if args is None else args},
        "final_args": None,
        "context": {"summary": "Refund order 4812", "user_request": "refund my order"},
        "risk": "high",
        "labels": ["refund"],
        "agent": "support-bot",
        "channel": "C0APPROVALS",
        "reviewers": ["U0DANA", "S0REVIEWERS"],
        "required_approvals": 1,
        "approvals": [],
        "decision": None,
        "created_at": "2026-01-05T09:00:00.000Z",
        "expires_at": "2026-01-05T09:30:00.000Z",
        "decided_at": None,
        "result": None,
        "slack": None,
        "version": 1,
        "rule": None,
        "callback_url": None,
    }
    req.update(kw)
    return req


def decide(req: dict[str, Any], status: str, **kw: Any) -> dict[str, Any]:
    """The request as serialize.request_json returns it after a decision with the given status."""
    req = copy.deepcopy(req)
    kind = {"approved": "approve", "modified": "edit", "rejected": "reject", "expired": "expire"}.get(status, "cancel")
    by = {"id": "U0DANA", "name": "Dana", "via": "slack"}
    if status == "expired":
        by = {"id": "scheduler", "name": "signoff", "via": "scheduler"}
    if status == "cancelled":
        by = {"id": "support-bot", "name": "support-bot", "via": "api"}
    feedback = {"rejected": "Use a READ ONLY transaction", "expired": "no decision before the deadline"}.get(status)
    req.update(
        status=status,
        decision={"kind": kind, "by": by, "at": "2026-01-05T09:04:00.000Z", "feedback": feedback, "rule": None},
        decided_at="2026-01-05T09:04:00.000Z",
    )
    if status in ("approved", "modified") and req["final_args"] is None:
        req["final_args"] = req["action"]["args"]
    req.update(kw)
    return req


def texts(message: dict[str, Any]) -> str:
    """Every string in the JSON, joined: what a reader could see."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            out.append(value)

    walk(message.get("blocks", message))
    return "\n".join(out)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for block in message["blocks"]:
        for el in [block.get("accessory"), *block.get("elements", [])]:
            if isinstance(el, dict) and el.get("type") == "button":
                found.append(el)
    return found


def assert_valid_message(message: dict[str, Any]) -> None:
    check_message_limits(message)
    for block in Block.parse_all(message["blocks"]):
        block.to_dict()  # slack_sdk's own validators


def assert_valid_view(view: dict[str, Any]) -> None:
    check_view_limits(view)
    ViewModel(**copy.deepcopy(view)).to_dict()


def state_as_shown(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``view.state.values`` Slack sends when the reviewer submits without touching anything."""
    values: dict[str, dict[str, Any]] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        el = block["element"]
        if el["type"] == "radio_buttons":
            state = {"type": "radio_buttons", "selected_option": el.get("initial_option")}
        else:
            state = {"type": el["type"], "value": el.get("initial_value")}
        values[block["block_id"]] = {el["action_id"]: state}
    return values


def input_block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


# --- text helpers ----------------------------------------------------------------------------------------


def test_escape_mrkdwn_escapes_only_the_three_control_characters() -> None:
    assert escape_mrkdwn("a & b <@U1> > *x* _y_ 'q' \"d\"") == "a &amp; b &lt;@U1&gt; &gt; *x* _y_ 'q' \"d\""


def test_truncate_adds_an_ellipsis_and_counts_emoji_as_two_units() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("abcdefghij", 5) == "abcd…"
    cut = truncate("😀" * 10, 7)
    assert cut == "😀😀😀…" and slack_len(cut) == 7


# --- pending cards, by kind of arguments -----------------------------------------------------------------


def test_email_card_shows_an_email() -> None:
    args = {
        "to": "jane@example.com",
        "cc": ["a@example.com", "b@example.com"],
        "bcc": "audit@example.com",
        "subject": "Your refund <today>",
        "body": "Hi Jane,\n\nDone & dusted.",
        "priority": 2,
    }
    card = approval_card(make_req("send_email", args), now=NOW)
    fields = next(b["fields"] for b in card["blocks"] if b.get("fields"))
    shown = [f["text"] for f in fields]
    assert "*To*\njane@example.com" in shown
    assert "*Cc*\na@example.com, b@example.com" in shown
    assert "*Bcc*\naudit@example.com" in shown
    assert "*Subject*\nYour refund &lt;today&gt;" in shown
    assert "*Body*\n```Hi Jane,\n\nDone &amp; dusted.```" in texts(card)
    assert "*priority*\n`2`" in texts(card)
    assert_valid_message(card)


def test_email_is_recognised_by_its_args_whatever_the_tool() -> None:
    card = approval_card(make_req("notify", {"to": "x@example.com", "subject": "Hi", "body": "B"}), now=NOW)
    assert "*Subject*\nHi" in texts(card) and "*Body*\n```B```" in texts(card)


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("run_sql", {"query": "SELECT 1;\nSELECT 2;", "db": "prod"}, "*query*\n```SELECT 1;\nSELECT 2;```"),
        ("warehouse", {"sql": "DELETE FROM t WHERE a < 3"}, "*sql*\n```DELETE FROM t WHERE a &lt; 3```"),
        ("postgres_sql", {"statement": "VACUUM"}, "*statement*\n```VACUUM```"),
        ("run_shell", {"command": "rm -rf /tmp/x && echo ok"}, "*command*\n```rm -rf /tmp/x &amp;&amp; echo ok```"),
        ("runner", {"cmd": ["ls", "-la", "my dir"]}, "*cmd*\n```ls -la 'my dir'```"),
        ("bash", {"script": "echo ```x```"}, "*script*\n```echo ``\u200b`x``\u200b`\u200b```"),
    ],
)
def test_sql_and_shell_render_as_code(tool: str, args: dict[str, Any], expected: str) -> None:
    card = approval_card(make_req(tool, args), now=NOW)
    assert expected in texts(card)
    assert_valid_message(card)


def test_http_call_shows_method_url_headers_and_body() -> None:
    args = {
        "method": "post",
        "url": "https://api.example.com/v1/refunds?a=1&b=2",
        "headers": {"Idempotency-Key": "rf-1"},
        "json": {"amount": 4200},
        "timeout": 5,
    }
    card = approval_card(make_req("http_request", args), now=NOW)
    shown = texts(card)
    assert "*Request*\n```POST https://api.example.com/v1/refunds?a=1&amp;b=2```" in shown
    assert "*Headers*\n```Idempotency-Key: rf-1```" in shown
    assert '*Json*\n```{\n  "amount": 4200\n}```' in shown
    assert "*timeout*\n`5`" in shown


def test_other_args_render_as_fields_and_long_values_get_their_own_section() -> None:
    args = {"service": "checkout", "replicas": 6, "canary": True, "notes": "n" * 900}
    card = approval_card(make_req("deploy", args), now=NOW)
    fields = [f["text"] for b in card["blocks"] for f in b.get("fields", [])]
    assert fields == ["*service*\ncheckout", "*replicas*\n`6`", "*canary*\n`true`"]
    notes = next(b for b in card["blocks"] if b.get("text", {}).get("text", "").startswith("*notes*"))
    assert notes["text"]["text"].endswith("…")
    assert notes["accessory"]["action_id"] == Action.VIEW_FULL
    assert parse_view_full_value(notes["accessory"]["value"]) == (RID, "arg:notes")


def test_pending_card_header_context_labels_expiry_and_buttons() -> None:
    req = make_req(
        "deploy",
        {"x": 1},
        context={
            "summary": "Ship it & see",
            "user_request": "deploy <now>\nplease",
            "reasoning": "because " * 100,
            "links": [{"url": "https://ci.example.com/1", "title": "CI run"}],
        },
        labels=["escalation", "needs-human-review"],
        rule="route:2",
    )
    card = approval_card(req, now=NOW)
    assert card["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":large_orange_circle: deploy · high risk", "emoji": True},
    }
    shown = texts(card)
    assert "Agent *support-bot*" in shown and "<@U0DANA> <!subteam^S0REVIEWERS>" in shown
    assert "Ship it &amp; see" in shown
    assert "*The user asked*\n> deploy &lt;now&gt;\n> please" in shown
    assert "<https://ci.example.com/1|CI run>" in shown
    assert "`escalation`" in shown and "`needs-human-review`" in shown
    assert "Expires <!date^1767605400^{date_short_pretty} {time}|2026-01-05 09:30 UTC>" in shown
    assert "Routed by `route:2`" in shown
    reasoning = next(b for b in card["blocks"] if "reasoning" in b.get("text", {}).get("text", ""))
    assert slack_len(reasoning["text"]["text"]) < 400 and reasoning["accessory"]["value"] == f"{RID}|reasoning"
    actions = card["blocks"][-1]
    assert actions["type"] == "actions" and actions["block_id"] == BlockId.ACTIONS
    buttons = [b for b in actions["elements"] if b["type"] == "button"]
    assert [(b["action_id"], b["text"]["text"], b.get("style"), b["value"]) for b in buttons] == [
        (Action.APPROVE, "Approve", "primary", RID),
        (Action.EDIT, "Edit", None, RID),
        (Action.REJECT, "Reject", "danger", RID),
        (Action.APPROVE_GRANT, "Approve + allow…", None, RID),
    ]
    assert all("confirm" not in b for b in buttons)
    menu = actions["elements"][-1]  # already escalated: the menu offers removing each label
    assert menu["type"] == "overflow" and menu["action_id"] == Action.OVERFLOW
    assert [o["value"] for o in menu["options"]] == [f"rm|escalation|{RID}", f"rm|needs-human-review|{RID}"]
    assert card["text"] == f"Approval needed: support-bot wants to run deploy (high risk) — {RID}"


def test_critical_reject_asks_for_confirmation() -> None:
    card = approval_card(make_req("drop_table", {"table": "users"}, risk="critical"), now=NOW)
    reject = next(b for b in buttons(card) if b["action_id"] == Action.REJECT)
    assert reject["confirm"]["title"]["text"] == "Reject a critical action?"
    assert reject["confirm"]["confirm"]["text"] == "Reject"
    approve = next(b for b in buttons(card) if b["action_id"] == Action.APPROVE)
    assert approve["confirm"]["title"]["text"] == "Approve a critical action?"
    assert card["blocks"][0]["text"]["text"].startswith(":red_circle: drop_table")
    assert_valid_message(card)


def test_quorum_progress_counts_approvals_of_the_current_version() -> None:
    approvals = [
        {"reviewer": {"id": "U0DANA", "name": "Dana"}, "at": "2026-01-05T09:01:00Z", "version": 2},
        {"reviewer": {"id": "U0OLD", "name": "Old"}, "at": "2026-01-05T09:00:30Z", "version": 1},
    ]
    req = make_req(required_approvals=2, approvals=approvals, version=2)
    assert "1 of 2 approvals (<@U0DANA>)" in texts(approval_card(req, now=NOW))
    assert "approvals" not in texts(approval_card(make_req(), now=NOW))


def test_pending_edited_version_says_what_changed() -> None:
    req = make_req("deploy", {"replicas": 2, "region": "eu"}, final_args={"replicas": 4, "region": "eu"}, version=2)
    shown = texts(approval_card(req, now=NOW))
    assert "version 2" in shown and "• *replicas*: `2` → `4`" in shown
    assert "*replicas*\n`4`" in shown


def test_view_full_button_value_stays_short_for_huge_argument_names() -> None:
    name = "k" * 5000
    card = approval_card(make_req("deploy", {name: "v" * 5000}), now=NOW)
    (button,) = [b for b in buttons(card) if b["action_id"] == Action.VIEW_FULL]
    assert button["value"] == f"{RID}|arg#0"
    modal = view_full_modal(make_req("deploy", {name: "v" * 5000}), "arg#0")
    assert "v" * 2900 in texts(modal)


def test_pending_request_past_its_deadline_renders_as_expired() -> None:
    card = approval_card(make_req(), now=datetime(2026, 1, 5, 10, 0, tzinfo=UTC))
    assert not buttons(card)
    assert ":hourglass: *Expired* · <!date^1767605400^" in texts(card)


# --- decided cards ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", DECIDED)
def test_decided_cards_have_no_buttons_and_say_who_decided(status: str) -> None:
    req = decide(make_req("deploy", {"notes": "n" * 5000, "x": 1}), status)
    card = approval_card(req, now=NOW)
    assert not any(b["type"] == "actions" for b in card["blocks"])
    assert not buttons(card)
    shown = texts(card)
    expected = {
        "approved": ":white_check_mark: *Approved* by <@U0DANA> · <!date^1767603840^",
        "modified": ":pencil2: *Approved with edits* by <@U0DANA> · <!date^1767603840^",
        "rejected": ":x: *Rejected* by <@U0DANA> · <!date^1767603840^",
        "expired": ":hourglass: *Expired* · <!date^1767603840^",
        "cancelled": ":no_entry_sign: *Cancelled* by support-bot via the API · <!date^1767603840^",
    }[status]
    assert expected in shown
    assert "signoff approvals show " + RID in shown  # the cut notes value is pointed at
    assert_valid_message(card)


def test_decider_without_a_slack_id_is_named() -> None:
    req = decide(make_req(), "approved")
    req["decision"]["by"] = {"id": "ops-cli", "name": "Ops <admin>", "via": "cli"}
    card = approval_card(req, now=NOW)
    assert "*Approved* by Ops &lt;admin&gt; via the CLI" in texts(card)
    assert card["text"].startswith("Approved by Ops &lt;admin&gt;: send_email")


def test_fallback_text_uses_slack_names() -> None:
    card = approval_card(decide(make_req(), "rejected"), now=NOW, slack_names={"U0DANA": "Dana S."})
    assert card["text"] == f"Rejected by Dana S.: send_email ({RID})"


def test_modified_card_lists_each_change_old_to_new() -> None:
    before = {"subject": "Refund", "cc": ["a@x.io"], "body": "b" * 500, "keep": 1}
    after = {"subject": "Refund issued", "body": "c" * 500, "keep": 1, "bcc": "audit@x.io"}
    card = approval_card(decide(make_req("send_email", before), "modified", final_args=after, version=2), now=NOW)
    shown = texts(card)
    assert "*What changed*" in shown
    assert "• *subject*: `Refund` → `Refund issued`" in shown
    assert '• *cc*: `["a@x.io"]` → _(removed)_' in shown
    assert "• *bcc*: _(added)_ → `audit@x.io`" in shown
    body_line = next(line for line in shown.split("\n") if line.startswith("• *body*"))
    assert body_line.count("…") == 2 and slack_len(body_line) < 260
    assert "• *keep*" not in shown


def test_rejected_card_quotes_the_feedback() -> None:
    req = decide(make_req(), "rejected")
    req["decision"]["feedback"] = "No <way>.\nUse READ ONLY."
    assert "*Feedback:*\n> No &lt;way&gt;.\n> Use READ ONLY." in texts(approval_card(req, now=NOW))


def test_expired_card_gives_the_reason() -> None:
    card = approval_card(decide(make_req(), "expired"), now=NOW)
    assert "*Reason:*\n> no decision before the deadline" in texts(card)


@pytest.mark.parametrize(
    ("ok", "expected"), [(True, "✓ *The agent ran it: succeeded*"), (False, "✗ *The agent ran it: failed*")]
)
def test_reported_result_is_shown(ok: bool, expected: str) -> None:
    result = {"ok": ok, "detail": "HTTP 502 from <gateway>", "at": "2026-01-05T09:06:00.000Z"}
    shown = texts(approval_card(decide(make_req(), "approved", result=result), now=NOW))
    assert expected + " · <!date^1767603960^" in shown
    assert "> HTTP 502 from &lt;gateway&gt;" in shown


def test_policy_decision_names_the_rule() -> None:
    req = decide(make_req(), "approved")
    req["decision"].update(by={"id": "policy", "name": "signoff", "via": "policy"}, rule="SIGNOFF_MODE=off")
    assert "*Approved* by policy `SIGNOFF_MODE=off`" in texts(approval_card(req, now=NOW))


# --- edit modal ------------------------------------------------------------------------------------------

EDIT_ARGS: dict[str, Any] = {
    "subject": "Hi",
    "body": "line one\nline two",
    "count": 3,
    "ratio": 0.25,
    "dry_run": False,
    "meta": {"a": [1, 2]},
    "nothing": None,
    "huge": "h" * 4000,
}


def test_edit_modal_has_one_typed_input_per_argument() -> None:
    modal = edit_modal(make_req("deploy", EDIT_ARGS, version=3))
    assert modal["callback_id"] == View.EDIT
    assert json.loads(modal["private_metadata"]) == {"id": RID, "v": 3}
    assert parse_modal_metadata(modal["private_metadata"]) == (RID, 3)
    el = {name: input_block(modal, BlockId.ARG + name)["element"] for name in EDIT_ARGS if name != "huge"}
    assert el["subject"] == {
        "type": "plain_text_input",
        "action_id": Action.ARG_INPUT,
        "initial_value": "Hi",
        "multiline": False,
        "max_length": 3000,
    }
    assert el["body"]["multiline"] is True and el["body"]["initial_value"] == "line one\nline two"
    assert (el["count"]["type"], el["count"]["is_decimal_allowed"], el["count"]["initial_value"]) == (
        "number_input",
        False,
        "3",
    )
    assert (el["ratio"]["type"], el["ratio"]["is_decimal_allowed"], el["ratio"]["initial_value"]) == (
        "number_input",
        True,
        "0.25",
    )
    assert el["dry_run"]["type"] == "radio_buttons" and el["dry_run"]["initial_option"]["value"] == "false"
    assert json.loads(el["meta"]["initial_value"]) == {"a": [1, 2]} and el["meta"]["multiline"] is True
    assert el["nothing"]["initial_value"] == "null"
    huge = next(b for b in modal["blocks"] if b["type"] == "section" and "*huge*" in b["text"]["text"])
    assert "4,000 characters, too long to edit here" in huge["text"]["text"]
    assert_valid_view(modal)


def test_edit_modal_uses_final_args_when_set() -> None:
    modal = edit_modal(make_req("deploy", {"n": 1}, final_args={"n": 2}, version=2))
    assert input_block(modal, "arg:n")["element"]["initial_value"] == "2"


def test_edit_submitted_unchanged_returns_the_original_args() -> None:
    args = {**EDIT_ARGS, "ctrl": "a\x00b\r\nc", "big": 2**60, "tiny": 1e-20}
    modal = edit_modal(make_req("deploy", args))
    new, errors = parse_edit_submission(state_as_shown(modal), modal["private_metadata"], args)
    assert errors == {} and new == args


def test_edit_submission_parses_each_type() -> None:
    modal = edit_modal(make_req("deploy", EDIT_ARGS))
    values = state_as_shown(modal)
    values["arg:subject"][Action.ARG_INPUT]["value"] = "Hello"
    values["arg:count"][Action.ARG_INPUT]["value"] = "7"
    values["arg:ratio"][Action.ARG_INPUT]["value"] = "1.5"
    values["arg:dry_run"][Action.ARG_INPUT]["selected_option"] = {"value": "true"}
    values["arg:meta"][Action.ARG_INPUT]["value"] = '{"b": true}'
    values["arg:nothing"][Action.ARG_INPUT]["value"] = None
    new, errors = parse_edit_submission(values, modal["private_metadata"], EDIT_ARGS)
    assert errors == {}
    assert new == {**EDIT_ARGS, "subject": "Hello", "count": 7, "ratio": 1.5, "dry_run": True, "meta": {"b": True}}


def test_edit_submission_reports_errors_by_block() -> None:
    modal = edit_modal(make_req("deploy", EDIT_ARGS))
    values = state_as_shown(modal)
    values["arg:meta"][Action.ARG_INPUT]["value"] = '{"b": tru'
    values["arg:count"][Action.ARG_INPUT]["value"] = "2.5"
    values["arg:ratio"][Action.ARG_INPUT]["value"] = "abc"
    new, errors = parse_edit_submission(values, modal["private_metadata"], EDIT_ARGS)
    assert new is None
    assert set(errors) == {"arg:meta", "arg:count", "arg:ratio"}
    assert errors["arg:meta"].startswith("Not valid JSON")
    assert errors["arg:count"] == "Enter a whole number."
    assert errors["arg:ratio"] == "Enter a number."


def test_edit_modal_long_names_use_index_ids_mapped_in_metadata() -> None:
    long_name = "n" * 400
    args = {"short": "a", long_name: "b"}
    modal = edit_modal(make_req("deploy", args))
    assert input_block(modal, "arg#1")["label"]["text"] == long_name[:299] + "…"
    assert json.loads(modal["private_metadata"])["n"] == {"1": long_name}
    values = state_as_shown(modal)
    values["arg#1"][Action.ARG_INPUT]["value"] = "changed"
    new, errors = parse_edit_submission(values, modal["private_metadata"], args)
    assert errors == {} and new == {"short": "a", long_name: "changed"}


def test_edit_modal_puts_args_beyond_the_block_limit_into_one_json_input() -> None:
    args = {f"k{i}": i for i in range(150)}
    modal = edit_modal(make_req("deploy", args))
    assert len(modal["blocks"]) == 100
    rest = input_block(modal, BlockId.ARG_REST)
    assert json.loads(rest["element"]["initial_value"]) == {f"k{i}": i for i in range(98, 150)}
    values = state_as_shown(modal)
    values[BlockId.ARG_REST][Action.ARG_INPUT]["value"] = '{"k98": -1}'
    new, errors = parse_edit_submission(values, modal["private_metadata"], args)
    assert errors == {} and new == {**{f"k{i}": i for i in range(98)}, "k98": -1}


# --- reject and view-full modals -------------------------------------------------------------------------


def test_reject_modal_requires_feedback() -> None:
    modal = reject_modal(make_req(version=2))
    assert modal["callback_id"] == View.REJECT and parse_modal_metadata(modal["private_metadata"]) == (RID, 2)
    feedback = input_block(modal, BlockId.FEEDBACK)
    assert feedback["element"]["multiline"] is True and not feedback.get("optional")
    assert_valid_view(modal)
    values: dict[str, Any] = {
        BlockId.FEEDBACK: {Action.FEEDBACK_INPUT: {"type": "plain_text_input", "value": "  too risky \n"}}
    }
    assert parse_reject_submission(values) == "too risky"
    values[BlockId.FEEDBACK][Action.FEEDBACK_INPUT]["value"] = "   "
    with pytest.raises(SubmissionError) as e:
        parse_reject_submission(values)
    assert set(e.value.errors) == {BlockId.FEEDBACK}


def test_view_full_modal_shows_the_whole_value_across_blocks() -> None:
    body = "".join(f"line {i}\n" for i in range(2000))
    modal = view_full_modal(make_req("send_email", {"to": "a@b.c", "body": body}), "arg:body")
    assert modal["callback_id"] == View.VIEW_FULL
    chunks = [b["text"]["text"] for b in modal["blocks"][2:]]
    assert "".join(chunks) == body and len(chunks) > 4
    assert_valid_view(modal)


def test_view_full_modal_says_what_is_left_out_of_a_huge_value() -> None:
    modal = view_full_modal(make_req("run_sql", {"query": "x" * 400_000}), "arg:query")
    assert len(modal["blocks"]) == 100
    assert f"more characters are left out here; `signoff approvals show {RID}`" in texts(modal)
    assert_valid_view(modal)


def test_view_full_modal_for_a_value_that_is_gone() -> None:
    modal = view_full_modal(make_req("deploy", {"a": 1}), "arg:b")
    assert "no longer part of this request" in texts(modal)


# --- the limit checker -----------------------------------------------------------------------------------


def _section(text: str, **kw: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **kw}


def _button(**kw: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "Go"}, **kw}


@pytest.mark.parametrize(
    ("message", "pointer"),
    [
        ({"blocks": [_section("x")] * 51}, "/blocks"),
        ({"text": "t" * 4001, "blocks": []}, "/text"),
        ({"blocks": [_section("x" * 3001)]}, "/blocks/0/text/text"),
        ({"blocks": [_section("😀" * 1501)]}, "/blocks/0/text/text"),
        ({"blocks": [_section("")]}, "/blocks/0/text/text"),
        ({"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}]}, "/blocks/0/fields"),
        (
            {"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}]},
            "/blocks/0/fields/0/text",
        ),
        ({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}, "/blocks/0/text/text"),
        ({"blocks": [_section("x", block_id="b" * 256)]}, "/blocks/0/block_id"),
        ({"blocks": [_section("x", block_id="b"), _section("y", block_id="b")]}, "/blocks/1/block_id"),
        ({"blocks": [_section("x", accessory=_button(value="v" * 2001))]}, "/blocks/0/accessory/value"),
        (
            {"blocks": [_section("x", accessory=_button(text={"type": "plain_text", "text": "b" * 76}))]},
            "/blocks/0/accessory/text/text",
        ),
        ({"blocks": [_section("x", accessory=_button(action_id="a" * 256))]}, "/blocks/0/accessory/action_id"),
        ({"blocks": [{"type": "actions", "elements": [_button()] * 26}]}, "/blocks/0/elements"),
        ({"blocks": [{"type": "actions", "elements": [_button(), _button()]}]}, "/blocks/0/elements/1/action_id"),
        ({"blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}]}, "/blocks/0/elements"),
        (
            {
                "blocks": [
                    _section(
                        "x",
                        accessory=_button(
                            confirm={
                                "title": {"type": "plain_text", "text": "t" * 101},
                                "text": {"type": "plain_text", "text": "ok"},
                            }
                        ),
                    )
                ]
            },
            "/blocks/0/accessory/confirm/title/text",
        ),
        (
            {
                "blocks": [
                    _section(
                        "x",
                        accessory={
                            "type": "static_select",
                            "action_id": "s",
                            "options": [{"text": {"type": "plain_text", "text": "o"}, "value": "v" * 151}],
                        },
                    )
                ]
            },
            "/blocks/0/accessory/options/0/value",
        ),
        ('not a dict but a json string: {"blocks": []}', None),
    ],
)
def test_check_message_limits_names_the_breach(message: Any, pointer: str | None) -> None:
    if isinstance(message, str):
        with pytest.raises(BlockKitLimitError):
            check_message_limits({"blocks": message})
        return
    with pytest.raises(BlockKitLimitError) as e:
        check_message_limits(message)
    assert e.value.path == pointer


def test_check_message_limits_accepts_blocks_as_a_json_string_and_at_the_limits() -> None:
    blocks = [_section("x" * 3000)] * 50
    check_message_limits({"text": "t" * 4000, "blocks": json.dumps(blocks)})


def _modal(**kw: Any) -> dict[str, Any]:
    return {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": [_section("x")], **kw}


def _text_input(**kw: Any) -> dict[str, Any]:
    element = {"type": "plain_text_input", "action_id": "i", **kw}
    return {"type": "input", "label": {"type": "plain_text", "text": "L"}, "element": element}


@pytest.mark.parametrize(
    ("view", "pointer"),
    [
        (_modal(blocks=[_section("x")] * 101), "/blocks"),
        (_modal(title={"type": "plain_text", "text": "t" * 25}), "/title/text"),
        (_modal(submit={"type": "plain_text", "text": "s" * 25}), "/submit/text"),
        (_modal(close={"type": "plain_text", "text": "c" * 25}), "/close/text"),
        (_modal(private_metadata="m" * 3001), "/private_metadata"),
        (_modal(callback_id="c" * 256), "/callback_id"),
        (_modal(blocks=[_text_input(initial_value="v" * 3001)]), "/blocks/0/element/initial_value"),
        (_modal(blocks=[_text_input(max_length=3001)]), "/blocks/0/element/max_length"),
        (
            _modal(blocks=[{**_text_input(), "label": {"type": "plain_text", "text": "l" * 2001}}]),
            "/blocks/0/label/text",
        ),
        (_modal(title=None), "/title"),
    ],
)
def test_check_view_limits_names_the_breach(view: dict[str, Any], pointer: str) -> None:
    with pytest.raises(BlockKitLimitError) as e:
        check_view_limits(view)
    assert e.value.path == pointer


# --- property: nothing a request can hold breaks a limit ------------------------------------------------

ODD = ["\n", "`", "```", "<", ">", "&", "<!channel>", "😀", "עברית", "\u202e", "\x00", "\r\n", "*_~", "|", " "]

pieces = st.one_of(st.sampled_from(ODD), st.text(max_size=8))
big_text = st.builds(lambda piece, n: (piece or "x") * n, pieces, st.integers(1, 300_000)).map(lambda s: s[:300_000])
texts_ = st.one_of(st.text(max_size=40), st.lists(pieces, max_size=30).map("".join), big_text)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    texts_,
)
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["to", "subject", "body", "query", "command", "url"]),
    st.text(min_size=240, max_size=2100),
    st.lists(pieces, max_size=6).map("".join),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"d": value}
    return value


args_strategy = st.one_of(
    st.dictionaries(keys, values, max_size=12),
    st.builds(lambda n, v: {f"key_{i}": v for i in range(n)}, st.integers(100, 400), scalars),
    st.builds(lambda d: {"nested": _deep(d)}, st.integers(1, 300)),
    st.fixed_dictionaries(
        {"to": st.one_of(texts_, st.lists(texts_, max_size=3)), "subject": texts_, "body": texts_},
        optional={"cc": texts_, "bcc": texts_},
    ),
    st.fixed_dictionaries({"method": texts_, "url": texts_}, optional={"headers": values, "json": values}),
)
tools = st.sampled_from(["send_email", "run_sql", "exec_shell", "bash", "http_request", "deploy", "a" * 64])
context_strategy = st.fixed_dictionaries(
    {},
    optional={
        "summary": texts_,
        "user_request": texts_,
        "reasoning": texts_,
        "session_id": st.text(max_size=256),
        "links": st.lists(st.one_of(texts_, st.fixed_dictionaries({"url": texts_, "title": texts_})), max_size=20),
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    tool=tools,
    args=args_strategy,
    edited=st.one_of(st.none(), args_strategy),
    context=context_strategy,
    risk=st.sampled_from(["low", "medium", "high", "critical"]),
    feedback=st.one_of(st.none(), texts_),
    detail=st.one_of(st.none(), texts_),
    decider=st.sampled_from(["U0DANA", "W12345", "ops <cli> & co", "x" * 300]),
)
def test_every_card_and_modal_stays_within_slack_limits(
    tool: str,
    args: dict[str, Any],
    edited: dict[str, Any] | None,
    context: dict[str, Any],
    risk: str,
    feedback: str | None,
    detail: str | None,
    decider: str,
) -> None:
    labels = ["escalation", "needs-human-review", *(f"l{i}" for i in range(30))]
    approvals = [
        {"reviewer": {"id": f"U{i:08d}", "name": "n"}, "at": "2026-01-05T09:01:00Z", "version": 1} for i in range(19)
    ]
    req = make_req(
        tool,
        args,
        context=context,
        risk=risk,
        labels=labels,
        required_approvals=20,
        approvals=approvals,
        reviewers=[f"U{i:010d}" for i in range(50)],
        rule="route:3",
        final_args=edited,
        version=2 if edited is not None else 1,
    )
    pending = approval_card(req, now=NOW)
    assert_valid_message(pending)
    assert pending["blocks"][-1]["type"] == "actions"
    refs = ["args"] + [
        parse_view_full_value(b["value"])[1] for b in buttons(pending) if b["action_id"] == Action.VIEW_FULL
    ]
    for status in DECIDED:
        decided = decide(req, status, result={"ok": status != "rejected", "detail": detail})
        decided["decision"]["by"] = {"id": decider, "name": decider, "via": "slack"}
        decided["decision"]["feedback"] = feedback
        card = approval_card(decided, now=NOW)
        assert_valid_message(card)
        assert not buttons(card)
        for ref in ("feedback", "result"):
            check_view_limits(view_full_modal(decided, ref))  # the builder itself ran slack_sdk's validation
    modal = edit_modal(req)
    assert_valid_view(modal)
    assert_valid_view(reject_modal(req))
    current = edited if edited is not None else args
    new, errors = parse_edit_submission(state_as_shown(modal), modal["private_metadata"], current)
    assert errors == {} and new == current
    for ref in refs:
        assert_valid_view(view_full_modal(req, ref))
