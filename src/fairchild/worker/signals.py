"""SIGINT/SIGTERM handling: the first signal stops gracefully, the second at once, the
third exits the process immediately."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .pool import WorkerPool

log = logging.getLogger("fairchild.worker")


def _exit_now(signum: int) -> None:
    """Leave without any cleanup: running jobs are left to the rescuer (lease + rescue)."""
    logging.shutdown()
    os._exit(128 + signum)


async def watch_signals(pool: WorkerPool, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Translate SIGTERM/SIGINT into `pool.stop()`, then `pool.stop_now(force=True)`, then
    an immediate exit (status 128 + signal number). Runs until cancelled.

    1st: stop claiming; running jobs get `grace` seconds, then are cancelled and released
         (attempt refunded); jobs ignoring cancellation are abandoned after
         `abandon_timeout` (their rows are released anyway).
    2nd: cancel running jobs now; abandon the ones that ignore it within half a second.
    3rd: exit at once, releasing nothing (the jobs are rescued when the lease runs out).

    Replaces Python's default handlers while it runs, so no KeyboardInterrupt is raised
    and the process exits normally after the first two (atexit handlers run).
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                log.info("%s received: stopping; running jobs have %g s to finish (send it again to "
                         "cancel them now, a third time to exit immediately)", name, pool.grace)
                pool.stop()
            elif count == 2:
                log.warning("%s received again: cancelling running jobs now (a third time exits immediately)", name)
                pool.stop_now(force=True)
            else:
                log.warning("%s received a third time: exiting immediately; running jobs are left to the "
                            "rescuer", name)
                _exit_now(signum)
