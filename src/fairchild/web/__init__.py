"""Fairchild's web dashboard and JSON API (Quart-Trio served by Hypercorn, in-process).

``create_app(fairchild, ...)`` builds the app for a connected client;
``await serve(fairchild, host, port, ...)`` serves it in the current Trio process (inside
the client's trio-asyncio loop). The `fairchild ui` command does both.
"""

from .app import UnsafeBind, check_bind, create_app, serve
from .security import AuditEvent, Principal

__all__ = ["create_app", "serve", "check_bind", "UnsafeBind", "AuditEvent", "Principal"]
