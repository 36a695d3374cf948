"""Deployment settings from the environment, read once at start into one frozen object.

Secrets are kept in ``Secret`` wrappers whose ``repr`` hides them, so logging the settings is safe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import ConfigError


class Secret:
    """A string that never shows itself in ``repr``/``str``; call ``reveal()`` where it is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./signoff.db"
    config_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 3000
    slack_bot_token: Secret | None = None
    slack_signing_secret: Secret | None = None
    slack_app_token: Secret | None = None
    slack_api_url: str | None = None
    default_channel: str | None = None
    webhook_secret: Secret | None = None
    mode: str = "on"
    log_level: str = "INFO"
    workers: int = 1  # serve processes sharing the port (PostgreSQL only)
    reuse_port: bool = False  # set for the processes `signoff serve --workers N` starts
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token) and (bool(self.slack_signing_secret) or bool(self.slack_app_token))

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def secret(name: str) -> Secret | None:
            value = env.get(name, "").strip()
            return Secret(value) if value else None

        port_text = env.get("SIGNOFF_PORT", "3000").strip()
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"SIGNOFF_PORT: expected a port number, got {port_text!r}") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"SIGNOFF_PORT: {port} is outside 0-65535")

        config_path: Path | None = None
        if env.get("SIGNOFF_CONFIG"):
            config_path = Path(env["SIGNOFF_CONFIG"])
            if not config_path.is_file():
                raise ConfigError(f"SIGNOFF_CONFIG: {config_path} does not exist or is not a file")
        elif Path("signoff.yml").is_file():
            config_path = Path("signoff.yml")

        mode = env.get("SIGNOFF_MODE", "on").strip().lower() or "on"
        if mode not in ("on", "off"):
            raise ConfigError(f"SIGNOFF_MODE: expected 'on' or 'off', got {mode!r}")

        webhook_secret = secret("SIGNOFF_WEBHOOK_SECRET")
        if webhook_secret and not webhook_secret.reveal().startswith("whsec_"):
            raise ConfigError("SIGNOFF_WEBHOOK_SECRET: expected a Standard Webhooks secret starting 'whsec_'")

        workers_text = env.get("SIGNOFF_WORKERS", "1").strip() or "1"
        if not workers_text.isdigit() or not 1 <= int(workers_text) <= 64:
            raise ConfigError(f"SIGNOFF_WORKERS: expected a number of processes from 1 to 64, got {workers_text!r}")

        return cls(
            database_url=env.get("SIGNOFF_DATABASE_URL", "").strip() or "sqlite:///./signoff.db",
            config_path=config_path,
            host=env.get("SIGNOFF_HOST", "127.0.0.1").strip() or "127.0.0.1",
            port=port,
            slack_bot_token=secret("SLACK_BOT_TOKEN"),
            slack_signing_secret=secret("SLACK_SIGNING_SECRET"),
            slack_app_token=secret("SLACK_APP_TOKEN"),
            slack_api_url=env.get("SLACK_API_URL", "").strip() or None,
            default_channel=env.get("SIGNOFF_DEFAULT_CHANNEL", "").strip() or None,
            webhook_secret=webhook_secret,
            mode=mode,
            log_level=env.get("SIGNOFF_LOG_LEVEL", "INFO").strip().upper() or "INFO",
            workers=int(workers_text),
            reuse_port=env.get("SIGNOFF_REUSE_PORT", "") == "1",
        )
