"""The main job (`python3 scripts/demo`): a worker running the example workflows on the
embedded PostgreSQL, with the dashboard.

    python -m examples.demo [--port 8080] [--once]

Enqueues the quick start's emails, the fan-out/fan-in and nested workflows and a task that
always fails (so the dashboard has an error to show), runs one WorkerPool for every queue
and serves the dashboard in the same Trio process. Ctrl-C (or SIGTERM) stops both
gracefully. With ``--once`` it exits when the example workflows are final.
"""

from __future__ import annotations

import argparse
import logging
import signal

import trio

from fairchild import Fairchild, WorkerPool, task
from fairchild.cli.logs import setup_logging
from fairchild.web.app import serve

from . import fanout, nested, quickstart

log = logging.getLogger("examples.demo")


@task(queue="default", max_attempts=2)
def always_fails(reason: str) -> None:
    raise RuntimeError(reason)


async def main(port: int, once: bool) -> None:
    async with Fairchild() as fairchild:
        await fairchild.install()
        for name in ("ada", "grace", "edsger"):
            await quickstart.send_email.enqueue(to=f"{name}@example.com", subject="Hello", body="Welcome!")
        roots = [
            await fanout.orchestrator.enqueue(items=list(range(1, 9))),
            await nested.run_all_batches.enqueue(),
        ]
        await always_fails.enqueue(reason="this job fails on purpose, to show an error")

        pool = WorkerPool(fairchild, concurrency=10, grace=10)
        stopped = trio.Event()

        def stop() -> None:
            if not stopped.is_set():
                pool.stop()
                stopped.set()

        async def watch_signals(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for _ in signals:
                    if stopped.is_set():
                        pool.stop_now()
                    else:
                        log.info("stopping: running jobs get %.0f s (again to stop now)", pool.grace)
                        stop()

        async with trio.open_nursery() as outer:
            await outer.start(watch_signals)
            async with trio.open_nursery() as nursery:  # ends when the pool and the web server have
                await nursery.start(pool.run)
                binds = await nursery.start(lambda task_status: serve(
                    fairchild, "localhost", port, shutdown_trigger=stopped.wait, task_status=task_status))
                log.info("dashboard: %s  (Ctrl-C to stop)", binds[0] if binds else f"http://localhost:{port}")
                if once:
                    for root in roots:
                        done = await fairchild.wait(root, timeout=120)
                        log.info("%s: %s %s", done.task, done.state.value, done.result)
                    stop()
            outer.cancel_scope.cancel()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--once", action="store_true", help="exit when the example workflows are final")
    options = parser.parse_args()
    setup_logging("INFO")
    trio.run(main, options.port, options.once)
