"""Live updates: NOTIFY from PostgreSQL, fanned out to Server-Sent-Event streams.

`EventHub.run` subscribes to the client's LISTEN connection (inserts, claims, retries,
final states, cancellations, pauses) and keeps it connected; every open SSE stream gets its own bounded Trio
memory channel. A slow stream drops events rather than slowing the others: events are
hints that say "refresh", the database is the truth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import ExitStack
from typing import Any

import trio

from ..client import Fairchild
from ..db import CHANNEL_CANCEL, CHANNEL_FINAL, CHANNEL_INSERT, CHANNEL_STATE, ConnectionLost

__all__ = ["EventHub"]

log = logging.getLogger("fairchild.web")

_NAMES = {CHANNEL_INSERT: "insert", CHANNEL_FINAL: "final", CHANNEL_CANCEL: "cancel", CHANNEL_STATE: "state"}


class EventHub:
    """Fan-out of database notifications to SSE subscribers."""

    def __init__(self, fairchild: Fairchild, *, keepalive: float = 15.0, buffer: int = 64) -> None:
        self.fairchild = fairchild
        self.keepalive = keepalive
        self._buffer = buffer
        self._subscribers: set[trio.MemorySendChannel[str]] = set()
        self.closing = trio.Event()
        self.connected = trio.Event()

    def publish(self, event: dict[str, Any]) -> None:
        """Send an event to every subscriber (never blocks; full subscribers miss it)."""
        data = json.dumps(event)
        for send in list(self._subscribers):
            try:
                send.send_nowait(data)
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(send)

    def _callback(self, channel: str) -> Any:
        name = _NAMES[channel]

        def on_notify(payload: str | None) -> None:
            if payload is None:
                self.publish({"type": "resync"})
            else:
                self.publish({"type": name, "payload": payload[:200]})

        return on_notify

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the LISTEN connection up and forward its notifications, until cancelled."""
        listener = self.fairchild.database.listener
        with ExitStack() as stack:
            for channel in _NAMES:
                stack.enter_context(listener.subscribe(channel, self._callback(channel)))
            task_status.started()
            delay = 0.5
            while True:
                try:
                    if await listener.ensure():
                        self.publish({"type": "resync"})
                    self.connected.set()
                    delay = 0.5
                    await trio.sleep(1.0)
                except ConnectionLost as exc:
                    log.warning("live updates: cannot LISTEN (%s); retrying in %.1fs", exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 30.0)

    def close(self) -> None:
        """End every open stream (server shutdown)."""
        self.closing.set()
        for send in list(self._subscribers):
            send.close()
        self._subscribers.clear()

    async def stream(self) -> AsyncIterator[bytes]:
        """One SSE stream: a hello, then an event per notification, with keep-alive comments."""
        send, recv = trio.open_memory_channel[str](self._buffer)
        if self.closing.is_set():
            return
        self._subscribers.add(send)
        try:
            # "hello" means live: wait (briefly) until the LISTEN connection is up.
            with trio.move_on_after(5):
                await self.connected.wait()
            live = "true" if self.connected.is_set() else "false"
            yield f"retry: 3000\nevent: hello\ndata: {{\"live\": {live}}}\n\n".encode()
            async with recv:
                while True:
                    with trio.move_on_after(self.keepalive) as scope:
                        try:
                            data = await recv.receive()
                        except trio.EndOfChannel:
                            return
                    if scope.cancelled_caught:
                        yield b": keep-alive\n\n"
                        continue
                    yield f"event: change\ndata: {data}\n\n".encode()
        finally:
            self._subscribers.discard(send)
            send.close()
