"""Rate-limited error logging and backoff for loops that talk to a database that may be down."""

from __future__ import annotations

import logging
import random

import trio

__all__ = ["Throttle"]


class Throttle:
    """Tracks consecutive failures of one activity.

    `failed(exc)` logs the first failure, then at most one line per quiet period (with
    the count of suppressed ones): `quiet` seconds, doubling after each line up to
    `quiet_cap`, so a long outage costs a handful of lines per activity. It returns the
    delay to sleep before the next try: exponential from `base` to `cap`, with jitter.
    `recovered()` logs once (INFO) and resets.
    """

    def __init__(self, log: logging.Logger, activity: str, *, base: float = 0.2, cap: float = 5.0,
                 quiet: float = 10.0, quiet_cap: float = 300.0) -> None:
        self.log = log
        self.activity = activity
        self.base = base
        self.cap = cap
        self.quiet = quiet
        self.quiet_cap = quiet_cap
        self._period = quiet
        self.failures = 0
        self._suppressed = 0
        self._last_logged = -float("inf")

    def failed(self, exc: BaseException) -> float:
        self.failures += 1
        now = trio.current_time()
        if now - self._last_logged >= self._period:
            more = f" ({self._suppressed} similar errors not shown)" if self._suppressed else ""
            self.log.warning("%s failed: %s: %s; retrying%s", self.activity, type(exc).__name__, exc, more)
            if self._last_logged != -float("inf"):
                self._period = min(self.quiet_cap, self._period * 2)
            self._last_logged = now
            self._suppressed = 0
        else:
            self._suppressed += 1
        delay = min(self.cap, self.base * 2 ** min(self.failures - 1, 16))
        return delay * random.uniform(0.5, 1.0)

    def recovered(self) -> None:
        if self.failures:
            self.log.info("%s works again after %d failures", self.activity, self.failures)
        self.failures = 0
        self._suppressed = 0
        self._last_logged = -float("inf")
        self._period = self.quiet
