"""SIGINT/SIGTERM handling: the first signal stops gracefully, the second at once."""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .pool import WorkerPool

log = logging.getLogger("fairchild.worker")


async def watch_signals(pool: WorkerPool, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Translate signals into `pool.stop()` then `pool.stop_now()`. Runs until cancelled.

    Replaces Python's default handlers while it runs, so no KeyboardInterrupt is raised
    and the process exits normally (atexit handlers run).
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                log.info("%s received: stopping; running jobs have %.0f s (send it again to stop now)", name, pool.grace)
                pool.stop()
            else:
                log.warning("%s received again: cancelling running jobs now", name)
                pool.stop_now()
