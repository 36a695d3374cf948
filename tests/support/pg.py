"""Start a throwaway PostgreSQL server for tests and benchmarks.

Installs PostgreSQL with apt-get when its binaries are missing. PostgreSQL refuses to run as root, so as root
the server runs as the ``postgres`` user, in a temporary directory, on a free loopback port.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def ensure_installed() -> Path:
    bindir = _bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        raise RuntimeError("PostgreSQL is not installed and we are not root to apt-get it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("apt-get installed postgresql but initdb was not found")
    return bindir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server(*, fsync: bool = False) -> Iterator[str]:
    """Yields a ``postgresql://`` URL of a fresh server; stops and removes it afterwards."""
    bindir = ensure_installed()
    as_root = os.geteuid() == 0
    tmp = Path(tempfile.mkdtemp(prefix="signoff-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if as_root:
        shutil.chown(tmp, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    tmp.chmod(0o755)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = list(args)
        if as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp)

    port = free_port()
    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
    opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=300 "
            f"-c fsync={'on' if fsync else 'off'} -c synchronous_commit={'on' if fsync else 'off'} "
            "-c full_page_writes=off -c shared_buffers=128MB")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "-t", "60", "start")
    try:
        deadline = time.monotonic() + 30
        while True:
            r = run(str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                    "-c", "CREATE DATABASE signoff", check=False)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not come up: {r.stdout.decode(errors='replace')}")
            time.sleep(0.2)
        yield f"postgresql://postgres@127.0.0.1:{port}/signoff"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Another empty database on the same server; returns its URL."""
    import asyncio

    import asyncpg

    async def _create() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(_create())
    return url.rsplit("/", 1)[0] + "/" + name
