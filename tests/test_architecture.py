"""The import rules of STYLE.md, checked on the source so a change that breaks them fails the suite."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PURE_BOT = ["bot/domain.py", "bot/ids.py", "bot/errors.py", "bot/clock.py", "bot/serialize.py", "bot/schemas.py",
            "bot/blocks.py", "bot/policy.py", "bot/config.py",
            # reviewing at scale: /signoff parsing, stats arithmetic, list/Home/batch/label builders, batch bodies
            "bot/commands.py", "bot/stats.py", "bot/listing.py", "bot/blocks_lists.py", "bot/blocks_home.py",
            "bot/blocks_batch.py", "bot/blocks_labels.py", "bot/batch_schemas.py"]
IO_MODULES = {"aiohttp", "httpx", "sqlalchemy", "asyncpg", "aiosqlite", "slack_sdk", "slack_bolt", "apscheduler",
              "socket", "requests", "urllib.request", "storage", "subprocess"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # imports only for type checkers cost nothing at run time
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _hits(names: set[str], forbidden: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))


def _files(pattern: str) -> list[Path]:
    return sorted(ROOT.glob(pattern))


@pytest.mark.parametrize("path", _files("storage/**/*.py"), ids=lambda p: str(p.relative_to(ROOT)))
def test_storage_knows_nothing_of_slack_http_or_scheduler(path: Path) -> None:
    assert _hits(imports_of(path), {"slack_sdk", "slack_bolt", "aiohttp", "apscheduler", "bot", "handlers"}) == []


@pytest.mark.parametrize("rel", [p for p in PURE_BOT if (ROOT / p).exists()])
def test_pure_bot_modules_do_no_io(rel: str) -> None:
    allowed_models = {"slack_sdk.models", "slack_sdk.models.blocks", "slack_sdk.models.views",
                      "slack_sdk.models.messages", "slack_sdk.models.blocks.basic_components",
                      "slack_sdk.models.blocks.block_elements", "slack_sdk.models.blocks.blocks"}
    names = {n for n in imports_of(ROOT / rel) if n not in allowed_models}
    assert _hits(names, IO_MODULES) == []


def test_service_does_not_import_bolt_or_aiohttp() -> None:
    assert _hits(imports_of(ROOT / "bot/service.py"), {"slack_bolt", "aiohttp"}) == []


@pytest.mark.parametrize("path", _files("handlers/*.py"), ids=lambda p: p.name)
def test_handlers_never_touch_the_database(path: Path) -> None:
    assert _hits(imports_of(path), {"sqlalchemy", "storage", "asyncpg", "aiosqlite"}) == []


def test_only_the_composition_root_and_cli_build_the_app() -> None:
    offenders = []
    for path in _files("bot/*.py") + _files("handlers/*.py"):
        if path.name in ("app.py", "cli.py"):
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ("SignoffApp(", "build_core(", "Database(", "OutboxWorker("):
            if needle in text and f"class {needle[:-1]}" not in text:
                offenders.append(f"{path.name}: {needle}")
    assert offenders == []


def test_nothing_is_built_at_import_time() -> None:
    """Module level code holds no app, engine or client: importing every module starts nothing."""
    import importlib

    for path in _files("bot/*.py") + _files("handlers/*.py") + _files("storage/*.py"):
        mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        module = importlib.import_module(mod)
        for name, value in vars(module).items():
            kind = type(value).__name__
            assert kind not in ("AsyncEngine", "AsyncApp", "AsyncWebClient", "ClientSession", "AsyncIOScheduler"), \
                f"{mod}.{name} is a {kind} built at import time"
