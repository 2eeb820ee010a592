"""`fairchild ui` as a real subprocess: bind safety, tokens, serving, SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest
import trio

from webutil import FAIRCHILD_CMD, cli_env


async def run_cli(args: list[str], env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout):
        return await trio.run_process([*FAIRCHILD_CMD, *args], env=env, capture_stdout=True,
                                      capture_stderr=True, check=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
async def test_non_loopback_bind_without_a_token_is_refused(dsn: str, host: str) -> None:
    env = cli_env(dsn)
    result = await run_cli(["ui", "--host", host, "--port", "0"], env)
    assert result.returncode == 2
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "without an access token" in err and "--insecure-no-auth" in err


async def serve_cli(args: list[str], env: dict[str, str]) -> tuple[trio.Process, str, list[bytes]]:
    """Start `fairchild ui`, return the process, its URL and its stderr buffer."""
    proc = await trio.lowlevel.open_process([*FAIRCHILD_CMD, *args], env=env, stderr=subprocess.PIPE)
    chunks: list[bytes] = []
    assert proc.stderr is not None
    with trio.fail_after(30):
        while True:
            chunk = await proc.stderr.receive_some()
            assert chunk, b"".join(chunks).decode()
            chunks.append(chunk)
            match = re.search(rb"Fairchild UI on (http://\S+)", b"".join(chunks))
            if match:
                return proc, match[1].decode(), chunks


async def stop(proc: trio.Process, chunks: list[bytes]) -> float:
    """SIGTERM; returns seconds until exit (asserts exit code 0)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    with trio.fail_after(15):
        while chunk := await proc.stderr.receive_some():
            chunks.append(chunk)
        code = await proc.wait()
    assert code == 0, b"".join(chunks).decode()
    return time.monotonic() - started


async def test_token_protects_a_public_bind_and_sigterm_stops_gracefully(dsn: str) -> None:
    env = cli_env(dsn, FAIRCHILD_UI_TOKEN="tok-123")
    proc, url, chunks = await serve_cli(["ui", "--host", "0.0.0.0", "--port", "0"], env)
    try:
        port = url.rsplit(":", 1)[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/api/stats")).status_code == 401
            ok = await c.get("/api/stats", headers={"Authorization": "Bearer tok-123"})
            assert ok.status_code == 200 and ok.json()["available"] == 0
            # an open event stream must not hold up the shutdown
            async with c.stream("GET", "/api/events", headers={"Authorization": "Bearer tok-123"}) as events:
                assert events.status_code == 200
                elapsed = await stop(proc, chunks)
        assert elapsed < 4  # graceful_timeout is 2 s
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_insecure_no_auth_and_read_only(dsn: str) -> None:
    env = cli_env(dsn)
    proc, url, chunks = await serve_cli(["ui", "--host", "0.0.0.0", "--port", "0", "--insecure-no-auth", "--read-only"], env)
    try:
        port = url.rsplit(":", 1)[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            assert (await c.get("/api/stats")).status_code == 200
            resp = await c.post("/api/queues/default/pause", json={})
            assert resp.status_code == 403 and "read-only" in resp.json()["error"]
        await stop(proc, chunks)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b"read-only" in b"".join(chunks)
