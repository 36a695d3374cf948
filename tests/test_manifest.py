"""The Slack app manifest: valid against Slack's published schema, and in step with what the app registers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from bot import ids
from bot.manifest import PLACEHOLDER_URL, render_manifest, request_url

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
SCHEMA_PATH = SHARED / "slack" / "manifest.schema.1.0.0.json"


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def _errors(validator: Draft7Validator, manifest: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def _file() -> dict[str, Any]:
    return yaml.safe_load((REPO / "manifest.yml").read_text())


def _urls(manifest: dict[str, Any]) -> list[Any]:
    return [
        *(c.get("url") for c in manifest["features"]["slash_commands"]),
        manifest["settings"]["interactivity"].get("request_url"),
        manifest["settings"]["event_subscriptions"].get("request_url"),
    ]


def test_repo_root_manifest_is_the_packaged_one() -> None:
    # bot/manifest.yml ships in the wheel (package-data); the root copy is for readers and Slack's UI.
    assert (REPO / "manifest.yml").read_bytes() == (REPO / "bot" / "manifest.yml").read_bytes()


@pytest.mark.parametrize("name", ["file", "http", "socket", "placeholder"])
def test_manifest_validates_against_slack_schema(validator: Draft7Validator, name: str) -> None:
    manifest = {
        "file": _file,
        "http": lambda: yaml.safe_load(render_manifest("https://approvals.acme.test", socket_mode=False)),
        "socket": lambda: yaml.safe_load(render_manifest(None, socket_mode=True)),
        "placeholder": lambda: yaml.safe_load(render_manifest(None, socket_mode=False)),
    }[name]()
    assert _errors(validator, manifest) == []
    assert manifest["_metadata"]["major_version"] == 1


def test_broken_copy_fails_validation(validator: Draft7Validator) -> None:
    broken = copy.deepcopy(_file())
    broken["display_information"]["name"] = "x" * 36
    broken["features"]["slash_commands"][0]["command"] = "signoff"
    broken["settings"]["typo_key"] = True
    del broken["settings"]["interactivity"]["is_enabled"]
    errors = _errors(validator, broken)
    assert any(e.startswith("display_information/name") for e in errors)
    assert any(e.startswith("features/slash_commands/0/command") for e in errors)
    assert any("typo_key" in e for e in errors)
    assert any("is_enabled" in e for e in errors)


def test_slash_command_matches_the_handlers() -> None:
    (command,) = _file()["features"]["slash_commands"]
    assert command["command"] == ids.SLASH_COMMAND
    assert command["usage_hint"] == "pending [label:…] | show ID | mine | stats | help"
    assert command["should_escape"] is False


def test_features_events_and_scopes() -> None:
    manifest = _file()
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["features"]["bot_user"] == {"display_name": "signoff", "always_online": True}
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == list(ids.BOT_EVENTS)
    assert set(ids.BOT_EVENTS) == {"app_home_opened", "subteam_members_changed", "subteam_updated", "user_change"}
    assert manifest["oauth_config"]["scopes"] == {"bot": list(ids.BOT_SCOPES)}
    assert set(ids.BOT_SCOPES) == {"chat:write", "chat:write.public", "commands", "users:read", "usergroups:read",
                                   "im:write"}
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert _urls(manifest) == [PLACEHOLDER_URL] * 3


def test_http_rendering_points_every_request_url_at_slack_events() -> None:
    manifest = yaml.safe_load(render_manifest("https://approvals.acme.test/base/", socket_mode=False))
    assert _urls(manifest) == ["https://approvals.acme.test/base/slack/events"] * 3
    assert manifest["settings"]["socket_mode_enabled"] is False
    # Everything but the URLs is the packaged manifest.
    file = _file()
    for m in (manifest, file):
        m["features"]["slash_commands"][0].pop("url")
        m["settings"]["interactivity"].pop("request_url")
        m["settings"]["event_subscriptions"].pop("request_url")
    assert manifest == file


def test_socket_mode_rendering_has_no_urls() -> None:
    text = render_manifest(None, socket_mode=True)
    manifest = yaml.safe_load(text)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert _urls(manifest) == [None] * 3
    body = text.split("\n", 2)[2]          # after the two header comment lines
    assert "http" not in body
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == list(ids.BOT_EVENTS)
    assert manifest["settings"]["interactivity"] == {"is_enabled": True}


def test_request_url_normalisation_and_refusals() -> None:
    assert request_url("https://h.test") == "https://h.test/slack/events"
    assert request_url("https://h.test/slack/events/") == "https://h.test/slack/events"
    with pytest.raises(ValueError):
        request_url("h.test")
    with pytest.raises(ValueError):
        render_manifest("https://h.test", socket_mode=True)
