"""The shared embedded PostgreSQL: started by the first user, stopped by the last, and not
kept alive forever by a user that was killed (kill -9 skips its atexit clean-up)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HOLDER = """
import sys
from pathlib import Path
from fairchild import embedded
server = embedded.acquire(Path(sys.argv[1]))
print(server.url, flush=True)
sys.stdin.read()
server.release()
"""


def postmaster_pid(data: Path) -> int | None:
    pidfile = data / "pgdata" / "postmaster.pid"
    if not pidfile.exists():
        return None
    return int(pidfile.read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Holder:
    def __init__(self, data: Path) -> None:
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(data)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("postgresql://"), self.url

    def leave(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        self._close()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def data() -> Iterator[Path]:
    # Not pytest's tmp_path: PostgreSQL runs as another user when we are root, and the
    # wheel makes every parent of its data directory world-readable.
    path = Path(tempfile.mkdtemp(prefix="fairchild-embedded-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_shared_by_users_and_stopped_by_the_last(data: Path) -> None:
    first = Holder(data)
    pid = postmaster_pid(data)
    assert pid is not None and alive(pid)
    second = Holder(data)
    assert second.url == first.url
    assert postmaster_pid(data) == pid  # attached, not a second server
    first.leave()
    assert alive(pid), "stopped while another user still held it"
    second.leave()
    assert wait_until(lambda: not alive(pid)), "the last user left but the server still runs"


def test_a_killed_user_does_not_keep_it_running(data: Path) -> None:
    killed = Holder(data)
    pid = postmaster_pid(data)
    assert pid is not None
    survivor = Holder(data)
    killed.kill()  # its pid stays in .handle_pids.json: no atexit ran
    survivor.leave()
    assert wait_until(lambda: not alive(pid)), "a dead user's pid kept the server running"


def test_recovers_after_every_user_was_killed(data: Path) -> None:
    killed = Holder(data)
    pid = postmaster_pid(data)
    assert pid is not None
    killed.kill()
    assert alive(pid)  # orphaned, still serving
    later = Holder(data)  # attaches to the orphan and becomes its owner
    assert later.url == killed.url
    later.leave()
    assert wait_until(lambda: not alive(pid))
