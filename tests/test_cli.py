"""The ``signoff`` command line on a temporary SQLite database.

The commands whose contract is about the process (the token alone on stdout's last line, exit codes,
messages on stderr) run as real subprocesses; the rest call ``bot.cli.main`` in this process with the same
environment, which tests the same code without paying a Python start-up per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import subprocess as sp
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_core
from bot.cli import main
from bot.errors import Unauthenticated
from bot.schemas import SubmitBody
from storage import repository as repo
from storage.migrate import head_revisions, newest_revisions, upgrade
from tests.conftest import make_settings
from tests.support.proc import cli_env, run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(f"sqlite:///{tmp_path / 'cli.db'}")


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def in_process(env: dict[str, str], *args: str, cwd: Path) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse refusing the arguments
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return Ran(code, out.getvalue(), err.getvalue())


def ok(env: dict[str, str], *args: str, cwd: Path, subprocess: bool = False) -> str:
    out = run_cli(env, *args, cwd=cwd) if subprocess else in_process(env, *args, cwd=cwd)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def fails(env: dict[str, str], *args: str, cwd: Path, subprocess: bool = False) -> str:
    out = run_cli(env, *args, cwd=cwd) if subprocess else in_process(env, *args, cwd=cwd)
    assert out.returncode != 0, (args, out.stdout)
    assert out.stderr.strip(), args
    return out.stderr


def in_core(env: dict[str, str], fn: Any) -> Any:
    """Run ``fn(service, tokens, db)`` against the CLI's database from this process."""

    async def go() -> Any:
        db, service, tokens, _ = build_core(make_settings(env["SIGNOFF_DATABASE_URL"]))
        try:
            await upgrade(db)
            return await fn(service, tokens, db)
        finally:
            await db.close()

    return asyncio.run(go())


def test_tokens_create_list_revoke(env: dict[str, str], tmp_path: Path) -> None:
    out = run_cli(env, "tokens", "create", "bot-1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    token = lines[-1]
    assert lines == [token]  # the token alone on stdout's last line; the notice goes to stderr
    assert re.fullmatch(r"so_a_[A-Za-z0-9_-]{40,}", token), token
    assert "shown once" in out.stderr
    reviewer = ok(env, "tokens", "create", "dana", "--role", "reviewer", cwd=tmp_path).splitlines()[-1]
    assert reviewer.startswith("so_r_")

    principal = in_core(env, lambda _s, tokens, _db: tokens.authenticate(token))
    assert (principal.name, principal.role) == ("bot-1", "agent")
    assert "already exists" in fails(env, "tokens", "create", "bot-1", cwd=tmp_path)

    listing = ok(env, "tokens", "list", cwd=tmp_path, subprocess=True)
    rows = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert set(rows) == {"bot-1", "dana"}
    assert "agent" in rows["bot-1"] and "active" in rows["bot-1"]
    assert token not in listing and token[:8] in rows["bot-1"]  # only the prefix is shown

    assert "revoked" in ok(env, "tokens", "revoke", "bot-1", cwd=tmp_path)
    assert "revoked" in ok(env, "tokens", "list", cwd=tmp_path).splitlines()[1]
    with pytest.raises(Unauthenticated):
        in_core(env, lambda _s, tokens, _db: tokens.authenticate(token))
    assert "bot-1" in fails(env, "tokens", "revoke", "bot-1", cwd=tmp_path)


def _seed(env: dict[str, str]) -> list[str]:
    async def seed(service: Any, _tokens: Any, _db: Any) -> list[str]:
        ids = []
        for i, labels in enumerate((["escalation"], [], [], [])):
            body = SubmitBody.model_validate({"action": {"tool": "send_email", "args": {"to": f"p{i}@x.com"}},
                                              "labels": labels, "context": {"summary": f"mail {i}"}})
            ids.append((await service.submit(agent="bot-1", body=body)).request["id"])
        return ids

    return in_core(env, seed)


def test_approvals_list_show_and_decide(env: dict[str, str], tmp_path: Path) -> None:
    first, second, third, fourth = _seed(env)

    listing = ok(env, "approvals", "list", cwd=tmp_path)
    assert [line.split()[0] for line in listing.splitlines()] == [fourth, third, second, first]
    assert "mail 0" in listing and "escalation" in listing
    labelled = json.loads(ok(env, "approvals", "list", "--label", "escalation", "--json", cwd=tmp_path))
    assert [r["id"] for r in labelled] == [first]
    shown = json.loads(ok(env, "approvals", "show", second, cwd=tmp_path))
    assert shown["id"] == second and shown["status"] == "pending"
    assert "no request" in fails(env, "approvals", "show", "req_" + "0" * 26, cwd=tmp_path)

    assert f"{first}: approved" in ok(env, "approvals", "approve", first, "--as", "Dana", cwd=tmp_path,
                                      subprocess=True)
    err = fails(env, "approvals", "reject", second, "--as", "Lee", cwd=tmp_path, subprocess=True)
    assert "--feedback" in err
    assert f"{second}: rejected" in ok(env, "approvals", "reject", second, "--as", "Lee",
                                        "--feedback", "wrong recipient", cwd=tmp_path)
    assert "--args" in fails(env, "approvals", "edit", third, "--as", "Kim", "--args", "{not json", cwd=tmp_path)
    assert f"{third}: modified" in ok(env, "approvals", "edit", third, "--as", "Kim",
                                      "--args", '{"to": "fixed@x.com"}', cwd=tmp_path)
    late = fails(env, "approvals", "reject", first, "--as", "Lee", "--feedback", "too late", cwd=tmp_path)
    assert "already approved by Dana" in late

    pending = ok(env, "approvals", "list", "--status", "pending", cwd=tmp_path)
    assert [line.split()[0] for line in pending.splitlines()] == [fourth]

    async def stored(_service: Any, _tokens: Any, db: Any) -> dict[str, Any]:
        async with db.read() as s:
            out = {}
            for rid in (first, second, third):
                req = await repo.get_request(s, request_id=rid)
                events = await repo.audit_for(s, request_id=rid)
                out[rid] = (req, [(e.kind, e.actor_name, e.via) for e in events])
            return out

    rows = in_core(env, stored)
    req, events = rows[first]
    assert (req.status, req.decided_by_id, req.decided_by_name, req.decided_via) == ("approved", "Dana", "Dana", "cli")
    assert ("approved", "Dana", "cli") in events
    req, events = rows[second]
    assert (req.status, req.decided_by_name, req.decided_via, req.feedback) == ("rejected", "Lee", "cli",
                                                                                 "wrong recipient")
    assert ("rejected", "Lee", "cli") in events
    req, events = rows[third]
    assert (req.status, req.decided_by_name, req.decided_via) == ("modified", "Kim", "cli")
    assert req.final_args == {"to": "fixed@x.com"}
    assert ("edited", "Kim", "cli") in events


def test_config_check_names_file_key_and_problem(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("reviewers: [S0REVIEWERS]\nroutes:\n  - match: {tool: 'deploy*'}\n    required_approvals: 0\n"
                   "timeouts: {defualt_s: 60}\n")
    err = fails({**env, "SIGNOFF_CONFIG": str(bad)}, "config", "check", cwd=tmp_path, subprocess=True)
    assert str(bad) in err
    assert "routes.0.required_approvals" in err and "greater than or equal to 1" in err
    assert "timeouts.defualt_s" in err and "unknown key" in err

    broken = tmp_path / "broken.yml"
    broken.write_text("routes: [\n")
    err = fails({**env, "SIGNOFF_CONFIG": str(broken)}, "config", "check", cwd=tmp_path)
    assert str(broken) in err and "YAML" in err

    good = tmp_path / "good.yml"
    good.write_text("reviewers: [S0REVIEWERS]\nroutes:\n  - match: {tool: 'deploy*'}\n    required_approvals: 2\n")
    out = ok({**env, "SIGNOFF_CONFIG": str(good)}, "config", "check", cwd=tmp_path)
    assert str(good) in out and "OK" in out and "1 route" in out


def test_the_newest_revisions_read_from_the_files_are_alembics_heads() -> None:
    assert newest_revisions() == frozenset(head_revisions())


def test_a_server_on_an_up_to_date_database_does_not_load_alembic(env: dict[str, str], tmp_path: Path) -> None:
    ok(env, "db", "upgrade", cwd=tmp_path, subprocess=True)
    probe = (
        "import asyncio, sys\n"
        "from bot.app import SignoffApp\n"
        "from bot.settings import Settings\n"
        "async def main():\n"
        "    app = SignoffApp(Settings.from_env())\n"
        "    await app.start()\n"
        "    await app.stop()\n"
        "    print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
        "asyncio.run(main())\n"
    )
    out = sp.run([sys.executable, "-c", probe], env={**env, "SIGNOFF_PORT": "0"}, cwd=tmp_path, capture_output=True,
                 text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_db_upgrade_prints_the_revision(env: dict[str, str], tmp_path: Path) -> None:
    heads = head_revisions()
    assert heads
    for subprocess in (True, False):  # idempotent
        out = ok(env, "db", "upgrade", cwd=tmp_path, subprocess=subprocess)
        assert "revision" in out
        assert all(head in out for head in heads), (heads, out)
