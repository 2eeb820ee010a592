"""Maintenance: rescue of jobs held by dead workers, removal of dead worker rows, pruning.

Every pool runs the loop; each pass is one transaction that first takes a
transaction-scoped advisory lock, so exactly one process does a given pass and leadership
moves on immediately when a leader dies.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import trio

from ..db import ConnectionLost, DatabaseError, QueryCanceledError
from ..db import units
from .throttle import Throttle

if TYPE_CHECKING:
    from ..client import Fairchild

log = logging.getLogger("fairchild.maintenance")
TRANSIENT = (*ConnectionLost, DatabaseError)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long finished jobs are kept, per final state (None: keep forever)."""

    completed: timedelta | None = timedelta(days=1)
    cancelled: timedelta | None = timedelta(days=7)
    discarded: timedelta | None = timedelta(days=7)
    batch: int = 1000

    def cutoffs(self, now: datetime) -> tuple[datetime, datetime, datetime] | None:
        """Newest finished_at to prune per state (completed, cancelled, discarded)."""
        if self.completed is None and self.cancelled is None and self.discarded is None:
            return None
        never = now - timedelta(days=365 * 1000)

        def cutoff(age: timedelta | None) -> datetime:
            return now - age if age is not None else never

        return cutoff(self.completed), cutoff(self.cancelled), cutoff(self.discarded)


class Maintenance:
    def __init__(self, fairchild: Fairchild, *, interval: float, retention: RetentionPolicy, rescue_batch: int = 1000) -> None:
        self.fairchild = fairchild
        self.interval = interval
        self.retention = retention
        self.rescue_batch = rescue_batch
        self.max_rescue_batch = rescue_batch

    async def run_once(self) -> units.MaintenanceReport:
        now = self.fairchild.clock()
        report: units.MaintenanceReport = await self.fairchild.database.call(
            units.maintain, now, self.rescue_batch, self.retention.cutoffs(now), self.retention.batch
        )
        for row in report.rescued:
            log.warning("rescued job %s (%s) from a dead worker: now %s", row["id"], row["task"], row["state"],
                        extra={"job_id": str(row["id"]), "task": row["task"], "queue": row["queue"]})
        if report.pruned:
            log.info("pruned %d finished jobs", report.pruned)
        return report

    async def run(self) -> None:
        """Run a pass every `interval` (with jitter) until cancelled.

        A pass that times out (statement or command timeout) halves the rescue batch for
        the next one (down to 10); each pass that succeeds doubles it back up to the
        configured size. Cancellation: the pass in flight rolls back; nothing half-done."""
        errors = Throttle(log, "maintenance")
        while True:
            try:
                await self.run_once()
            except TRANSIENT as exc:
                if isinstance(exc, (TimeoutError, QueryCanceledError)):
                    self.rescue_batch = max(10, self.rescue_batch // 2)
                await trio.sleep(errors.failed(exc))
                continue
            errors.recovered()
            self.rescue_batch = min(self.max_rescue_batch, self.rescue_batch * 2)
            await trio.sleep(self.interval * random.uniform(0.8, 1.2))
