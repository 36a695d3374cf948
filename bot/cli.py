"""The ``signoff`` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.config import load_config
from bot.domain import ROLES, STATUSES, Actor
from bot.errors import ConfigError, SignoffError
from bot.settings import Settings

log = logging.getLogger("signoff")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _core(settings: Settings) -> Any:
    from bot.app import build_core

    return build_core(settings)


async def _with_core(settings: Settings, fn: Callable[[Any, Any, Any], Awaitable[int]]) -> int:
    from storage.migrate import upgrade

    db, service, tokens, _ = _core(settings)
    try:
        await upgrade(db)
        return await fn(db, service, tokens)
    finally:
        await db.close()


# --- serve -------------------------------------------------------------------------------------------------


async def _serve(settings: Settings) -> int:
    from bot.app import SignoffApp
    from bot.workers import check, run_workers

    check(settings)
    if settings.workers > 1:
        from storage.db import Database
        from storage.migrate import upgrade

        db = Database(settings.database_url)
        try:
            await upgrade(db)  # once, before any worker starts
        finally:
            await db.close()
        return await run_workers(settings)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with SignoffApp(settings):
        await stop.wait()
        log.info("shutting down")
    return 0


# --- tokens -------------------------------------------------------------------------------------------------


async def _tokens_create(settings: Settings, args: argparse.Namespace) -> int:
    async def run(_db: Any, _svc: Any, tokens: Any) -> int:
        token = await tokens.create(name=args.name, role=args.role)
        print(f"Created {args.role} token {args.name!r}. It is shown once; store it now:", file=sys.stderr)
        print(token)
        return 0

    return await _with_core(settings, run)


async def _tokens_list(settings: Settings, args: argparse.Namespace) -> int:
    async def run(_db: Any, _svc: Any, tokens: Any) -> int:
        rows = await tokens.list()
        if not rows:
            print("no tokens; create one with: signoff tokens create NAME --role agent")
            return 0
        print(f"{'NAME':<24} {'ROLE':<9} {'PREFIX':<9} {'CREATED':<20} STATE")
        for t in rows:
            state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
            print(f"{t.name:<24} {t.role:<9} {t.prefix:<9} {t.created_at:%Y-%m-%d %H:%M:%S}  {state}")
        return 0

    return await _with_core(settings, run)


async def _tokens_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def run(_db: Any, _svc: Any, tokens: Any) -> int:
        await tokens.revoke(name=args.name)
        print(f"revoked token {args.name!r}")
        return 0

    return await _with_core(settings, run)


# --- approvals ------------------------------------------------------------------------------------------


def _summary_line(r: dict[str, Any]) -> str:
    summary = (r["context"].get("summary") or "").replace("\n", " ")
    if len(summary) > 60:
        summary = summary[:59] + "…"
    labels = ",".join(r["labels"])
    return f"{r['id']}  {r['status']:<9} {r['risk']:<8} {r['tool']:<20} {r['agent']:<16} {labels:<20} {summary}"


async def _approvals_list(settings: Settings, args: argparse.Namespace) -> int:
    from storage.repository import ListFilter

    async def run(_db: Any, service: Any, _t: Any) -> int:
        items, _ = await service.list_requests(filt=ListFilter(status=args.status, label=args.label),
                                      limit=args.limit, cursor=None)
        if args.json:
            print(json.dumps(items, indent=2, ensure_ascii=False))
            return 0
        if not items:
            print("no matching requests")
        for r in items:
            print(_summary_line({**r, "tool": r["action"]["tool"]}))
        return 0

    return await _with_core(settings, run)


async def _approvals_show(settings: Settings, args: argparse.Namespace) -> int:
    async def run(_db: Any, service: Any, _t: Any) -> int:
        r = await service.get(request_id=args.id)
        r.pop("callback_url", None)
        print(json.dumps(r, indent=2, ensure_ascii=False))
        return 0

    return await _with_core(settings, run)


async def _approvals_decide(settings: Settings, args: argparse.Namespace) -> int:
    kind = args.approvals_cmd
    new_args = None
    if kind == "edit":
        try:
            new_args = json.loads(args.args)
        except json.JSONDecodeError as e:
            raise SignoffError(f"--args: not valid JSON: {e}") from None
        if not isinstance(new_args, dict):
            raise SignoffError("--args: must be a JSON object of argument names to values")

    async def run(_db: Any, service: Any, _t: Any) -> int:
        r = await service.decide(request_id=args.id, kind=kind, actor=Actor(args.as_, args.as_, "cli"),
                                 args=new_args, feedback=args.feedback)
        done = r["status"] if r["status"] != "pending" else (
            f"approval recorded ({len({a['reviewer']['id'] for a in r['approvals'] if a['version'] == r['version']})}"
            f" of {r['required_approvals']})")
        print(f"{r['id']}: {done}")
        return 0

    return await _with_core(settings, run)


# --- audit ---------------------------------------------------------------------------------------------


async def _audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from bot.audit import verify_chain

    async def run(db: Any, _svc: Any, _t: Any) -> int:
        report = await verify_chain(db)
        if report.ok:
            print(f"audit trail intact: {report.checked} event(s) verified")
            return 0
        print(f"audit trail TAMPERED: {report.problem} ({report.checked} event(s) verified before it)",
              file=sys.stderr)
        return 3

    return await _with_core(settings, run)


async def _audit_export(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from bot.audit import export_lines

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            raise SignoffError(
                f"--since: expected an ISO 8601 time such as 2026-11-01T00:00:00Z, got {args.since!r}") from None
        since = since if since.tzinfo else since.replace(tzinfo=UTC)

    async def run(db: Any, _svc: Any, _t: Any) -> int:
        async for line in export_lines(db, fmt=args.format, since=since):
            sys.stdout.write(line)
        return 0

    return await _with_core(settings, run)


async def _manifest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.manifest import render_manifest

    socket_mode = args.socket_mode or (args.url is None and settings.socket_mode)
    if socket_mode and args.url:
        raise SignoffError("--url and --socket-mode exclude each other: Socket Mode apps have no request URLs")
    sys.stdout.write(render_manifest(args.url, socket_mode=socket_mode))
    return 0


# --- digests ------------------------------------------------------------------------------------------


async def _digest_run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_schedule, deliver_slack_messages

    async def run(_db: Any, service: Any, _t: Any) -> int:
        schedule = build_schedule(settings, service)
        names = [schedule.digest(args.name).name] if args.name else [d.name for d in service.config.digests]
        if not names:
            print("no digests configured (see `digests:` in the YAML file)")
            return 0
        for name in names:
            out = await schedule.send_digest_now(name)
            print(f"digest {name}: {out.pending} pending request(s); "
                  + ("queued for Slack" if out.queued else "nothing to post" if out.text is None
                     else "not posted (Slack is not configured)"))
        if settings.slack_enabled:
            sent = await deliver_slack_messages(settings, service)
            print(f"delivered {sent} Slack message(s)")
        return 0

    return await _with_core(settings, run)


# --- mcp -----------------------------------------------------------------------------------------------


async def _mcp(settings: Settings, args: argparse.Namespace) -> int:
    try:
        from signoff.integrations.mcp_server import serve
    except ModuleNotFoundError as e:
        if e.name != "mcp" and not (e.name or "").startswith("mcp."):
            raise
        raise SignoffError("signoff mcp needs the MCP SDK: pip install 'signoff[mcp]'") from None
    await serve(http=args.http, host=args.host, port=args.port)
    return 0


# --- db and config --------------------------------------------------------------------------------------


async def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import Database
    from storage.migrate import upgrade

    db = Database(settings.database_url)
    try:
        rev = await upgrade(db)
    finally:
        await db.close()
    print(f"database is at revision {rev}")
    return 0


async def _config_check(settings: Settings, args: argparse.Namespace) -> int:
    config = load_config(settings.config_path)
    where = settings.config_path or "(no config file; defaults)"
    print(f"{where}: OK — {len(config.routes)} route(s), {len(config.digests)} digest(s), "
          f"{len(config.policies)} polic{'y' if len(config.policies) == 1 else 'ies'}")
    print(f"database: {settings.database_url.split('@')[-1]}")
    print("slack: " + ("socket mode" if settings.socket_mode else "HTTP mode" if settings.slack_enabled
                       else "not configured (CLI and API review only)"))
    return 0


# --- parser ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="signoff", description="Human sign-off for AI agent actions.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the API, Slack app, scheduler and outbox delivery")
    s.add_argument("--workers", type=int, metavar="N",
                   help="N server processes sharing the port (PostgreSQL only; default SIGNOFF_WORKERS or 1)")
    s.set_defaults(fn=lambda st, a: _serve(st if a.workers is None else dataclasses.replace(st, workers=a.workers)))

    t = sub.add_parser("tokens", help="manage API tokens").add_subparsers(dest="tokens_cmd", required=True)
    tc = t.add_parser("create", help="create a token (printed alone on the last line)")
    tc.add_argument("name")
    tc.add_argument("--role", choices=ROLES, default="agent")
    tc.set_defaults(fn=_tokens_create)
    t.add_parser("list", help="list tokens").set_defaults(fn=_tokens_list)
    tr = t.add_parser("revoke", help="revoke a token")
    tr.add_argument("name")
    tr.set_defaults(fn=_tokens_revoke)

    a = sub.add_parser("approvals", help="review requests from the terminal").add_subparsers(
        dest="approvals_cmd", required=True)
    al = a.add_parser("list", help="list requests, newest first")
    al.add_argument("--status", choices=STATUSES)
    al.add_argument("--label")
    al.add_argument("--limit", type=int, default=50)
    al.add_argument("--json", action="store_true", help="print JSON")
    al.set_defaults(fn=_approvals_list)
    ash = a.add_parser("show", help="show one request as JSON")
    ash.add_argument("id")
    ash.set_defaults(fn=_approvals_show)
    for kind, helptext in (("approve", "approve as proposed"), ("reject", "reject with feedback"),
                           ("edit", "approve with changed args")):
        d = a.add_parser(kind, help=helptext)
        d.add_argument("id")
        d.add_argument("--as", dest="as_", required=True, metavar="NAME", help="your name, recorded with via=cli")
        d.add_argument("--feedback", required=kind == "reject")
        if kind == "edit":
            d.add_argument("--args", required=True, metavar="JSON", help="the new args as a JSON object")
        d.set_defaults(fn=_approvals_decide)

    au = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_cmd", required=True)
    au.add_parser("verify", help="check the hash chain; report the first tampered or missing event").set_defaults(
        fn=_audit_verify)
    ae = au.add_parser("export", help="print the trail as JSON Lines or CSV")
    ae.add_argument("--since", metavar="TIME", help="only events at or after this ISO 8601 time")
    ae.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    ae.set_defaults(fn=_audit_export)

    mf = sub.add_parser("manifest", help="print the Slack app manifest (HTTP mode with --url, or Socket Mode)")
    mf.add_argument("--url", help="public base URL of this server, e.g. https://signoff.example.com")
    mf.add_argument("--socket-mode", action="store_true", help="a Socket Mode app (no request URLs)")
    mf.set_defaults(fn=_manifest)

    dg = sub.add_parser("digest", help="digests of labelled pending requests").add_subparsers(
        dest="digest_cmd", required=True)
    dr = dg.add_parser("run", help="send a digest now (every configured digest without NAME)")
    dr.add_argument("name", nargs="?", metavar="NAME")
    dr.set_defaults(fn=_digest_run)

    mc = sub.add_parser("mcp", help="MCP server for agents (stdio, or --http); a client of a running signoff server",
                        description="An MCP server with the tools request_approval, list_pending and get_request. It "
                        "talks to a running signoff server at SIGNOFF_URL (default http://127.0.0.1:3000) with the "
                        "agent token in SIGNOFF_TOKEN; start that server first (signoff serve).")
    mc.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    mc.add_argument("--host", default="127.0.0.1", help="bind address with --http")
    mc.add_argument("--port", type=int, default=8000, help="port with --http (default 8000)")
    mc.set_defaults(fn=_mcp)

    dbp = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_cmd", required=True)
    dbp.add_parser("upgrade", help="apply migrations").set_defaults(fn=_db_upgrade)
    c = sub.add_parser("config", help="configuration").add_subparsers(dest="config_cmd", required=True)
    c.add_parser("check", help="validate the environment and the YAML file").set_defaults(fn=_config_check)
    return p


def _run(coro: Any) -> Any:
    """Run on uvloop where it is installed (a dependency on Linux and macOS): its event loop costs the server
    about a tenth less CPU per request than asyncio's own; without it, asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _setup_logging(settings.log_level)
        return _run(args.fn(settings, args))
    except ConfigError as e:
        print(f"signoff: configuration error:\n{e.message}", file=sys.stderr)
        return 2
    except SignoffError as e:
        print(f"signoff: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
