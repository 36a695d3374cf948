"""The Slack app manifest, rendered for HTTP mode (Request URLs on our server) or for Socket Mode (no URLs).

The canonical manifest is ``bot/manifest.yml``, shipped as package data so an installed ``signoff`` finds it; the
repository root carries a byte-identical ``manifest.yml`` for people who read the repo (a test keeps them equal).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import yaml

EVENTS_PATH = "/slack/events"
PLACEHOLDER_URL = "https://signoff.example.com" + EVENTS_PATH


def manifest_text() -> str:
    """The packaged manifest, exactly as stored (with its comments)."""
    return resources.files("bot").joinpath("manifest.yml").read_text(encoding="utf-8")


def load_manifest() -> dict[str, Any]:
    data = yaml.safe_load(manifest_text())
    if not isinstance(data, dict):
        raise ValueError("bot/manifest.yml is not a YAML mapping")
    return data


def request_url(url: str) -> str:
    """``https://host[/prefix]`` → ``https://host[/prefix]/slack/events`` (kept as is when already there)."""
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url if url.endswith(EVENTS_PATH) else url + EVENTS_PATH


def render_manifest(url: str | None, *, socket_mode: bool) -> str:
    """The manifest as YAML.

    HTTP mode: every Request URL (slash command, interactivity, events) is ``<url>/slack/events``; with
    ``url=None`` the placeholder ``https://signoff.example.com/slack/events`` stays, to be edited by hand.
    Socket Mode: ``settings.socket_mode_enabled`` is true and there are no URLs; passing ``url`` is an error.
    """
    if socket_mode and url is not None:
        raise ValueError("a Socket Mode app has no Request URLs; pass url=None")
    manifest = load_manifest()
    features, settings = manifest["features"], manifest["settings"]
    target = request_url(url) if url is not None else PLACEHOLDER_URL
    for command in features.get("slash_commands", []):
        _set_url(command, "url", target, socket_mode=socket_mode)
    _set_url(settings["interactivity"], "request_url", target, socket_mode=socket_mode)
    _set_url(settings["event_subscriptions"], "request_url", target, socket_mode=socket_mode)
    settings["socket_mode_enabled"] = socket_mode
    if socket_mode:
        header = "# signoff Slack app manifest for Socket Mode (set SLACK_APP_TOKEN, an xapp- token with\n" \
                 "# connections:write). Paste at https://api.slack.com/apps -> Create New App -> From a manifest.\n"
    else:
        header = f"# signoff Slack app manifest; Request URL {target}.\n" \
                 "# Paste at https://api.slack.com/apps -> Create New App -> From a manifest.\n"
    return header + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=110)


def _set_url(section: dict[str, Any], key: str, url: str, *, socket_mode: bool) -> None:
    if socket_mode:
        section.pop(key, None)
    else:
        section[key] = url
