"""Authentication, CSRF defence, access control and security headers of the web app.

* Access token (``token=``): every route but ``/healthz`` needs ``Authorization: Bearer
  <token>`` or the session cookie set by the login form (HttpOnly, SameSite=Strict). All
  comparisons are constant-time (`hmac.compare_digest`).
* CSRF, for every state-changing request: ``Sec-Fetch-Site`` other than same-origin/none
  and a foreign ``Origin`` are refused; API mutations must be ``application/json``;
  browser requests (cookie sessions, or anything that looks like a browser when no token
  is set) must echo the CSRF token (``X-CSRF-Token`` header or a ``csrf_token`` field).
* Without a token the app only answers to loopback host names (DNS-rebinding defence).
* Access: ``read_only`` or a per-action resolver decides which mutations may run (403
  otherwise); each successful mutation emits one audit event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIONS",
    "Principal",
    "AuditEvent",
    "Security",
    "is_loopback",
    "SAFE_METHODS",
    "SESSION_COOKIE",
]

log = logging.getLogger("fairchild.web")
audit_log = logging.getLogger("fairchild.web.audit")

ACTIONS = ("enqueue", "cancel", "retry", "pause", "resume")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "fairchild_session"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; False for wildcards and other names."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: ``user`` for audit, ``via`` is "open", "bearer" or "cookie"."""

    user: str
    via: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One successful mutation."""

    user: str
    action: str
    ids: list[str]
    via: str
    remote_addr: str | None = None


# Request headers or cookies: werkzeug's `Headers` / `MultiDict`, or a plain dict (anything
# with ``get(key, default)`` and ``in``).
HeaderMap = Any


# (action, principal, target ids) -> allowed?
AccessResolver = Callable[[str, Principal, list[str]], bool]


def _digest(key: str, purpose: str) -> str:
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _eq(a: str, b: str) -> bool:
    """Constant-time comparison of two texts (any characters)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


@dataclass
class Security:
    """The security settings of one app, and the checks built on them."""

    token: str | None = None
    read_only: bool = False
    access: AccessResolver | None = None
    allowed_hosts: Collection[str] | None = None  # None: loopback names without a token, any with one
    audit: Callable[[AuditEvent], None] | None = None
    _secret: str = field(default_factory=lambda: secrets.token_hex(32))

    def __post_init__(self) -> None:
        if self.token is not None and not self.token:
            raise ValueError("the access token must not be empty")

    # -- credentials -------------------------------------------------------------------

    @property
    def session_value(self) -> str | None:
        """The session cookie's value (derived from the token; changes with it)."""
        return _digest(self.token, "fairchild-session") if self.token else None

    def csrf_token(self, principal: Principal) -> str:
        """The CSRF token pages embed and mutations must echo."""
        key = self.token if (self.token and principal.via == "cookie") else self._secret
        return _digest(key, "fairchild-csrf")

    def check_token(self, supplied: str) -> bool:
        return self.token is not None and _eq(supplied, self.token)

    def authenticate(self, headers: HeaderMap, cookies: HeaderMap) -> Principal | None:
        """The principal of a request, or None when credentials are missing or wrong."""
        if not self.token:
            return Principal("anonymous", "open")
        auth = headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value:
            return Principal("token", "bearer") if _eq(value.strip(), self.token) else None
        cookie = cookies.get(SESSION_COOKIE)
        if cookie and self.session_value and _eq(cookie, self.session_value):
            return Principal("session", "cookie")
        return None

    def host_allowed(self, host: str) -> bool:
        """DNS-rebinding defence: without a token only loopback host names are answered."""
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host.startswith("[") and "]" in host:
            name = host[: host.index("]") + 1]
        name = name.lower()
        if self.allowed_hosts is None:
            return bool(self.token) or name in LOOPBACK_NAMES or is_loopback(name)
        return "*" in self.allowed_hosts or name in {h.lower() for h in self.allowed_hosts}

    # -- CSRF ------------------------------------------------------------------------------

    def csrf_problem(
        self,
        *,
        method: str,
        path: str,
        headers: HeaderMap,
        origin: str,
        principal: Principal,
        form_token: str | None = None,
        needs_token: bool = True,
    ) -> str | None:
        """Why this state-changing request is refused as a possible CSRF (None: it is fine)."""
        if method in SAFE_METHODS:
            return None
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site.lower() not in ("same-origin", "none"):
            return f"cross-site request refused (Sec-Fetch-Site: {site})"
        sent_origin = headers.get("Origin")
        if sent_origin is not None and not _eq(sent_origin, origin):
            return "request from a foreign origin refused"
        if path.startswith("/api/"):
            ctype = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                return "API requests that change state need Content-Type: application/json"
        if not needs_token or principal.via == "bearer":
            return None
        browserish = principal.via == "cookie" or any(
            h in headers for h in ("Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Cookie", "Referer")
        )
        if not browserish:
            return None  # a script (curl, httpx) on an open, loopback-only server
        supplied = headers.get("X-CSRF-Token") or form_token or ""
        if not _eq(supplied, self.csrf_token(principal)):
            return "missing or wrong CSRF token"
        return None

    # -- access ----------------------------------------------------------------------------

    def allows(self, action: str, principal: Principal, ids: list[str]) -> bool:
        if self.read_only:
            return False
        if self.access is not None:
            return bool(self.access(action, principal, ids))
        return True

    def record(self, event: AuditEvent) -> None:
        """Emit one audit event (to the hook if given, always to the audit logger)."""
        audit_log.info(
            "%s by %s (%s): %s", event.action, event.user, event.via, ", ".join(event.ids),
            extra={"audit": {"user": event.user, "action": event.action, "ids": event.ids}},
        )
        if self.audit is not None:
            self.audit(event)


LOGIN_CSS = (
    "body{font:15px system-ui,sans-serif;display:flex;justify-content:center;padding-top:12vh;"
    "background:#f6f7f9;color:#1c2330}form{background:#fff;padding:2rem;border-radius:8px;"
    "box-shadow:0 1px 4px #0002;min-width:18rem}input,button{font:inherit;width:100%;"
    "box-sizing:border-box;margin-top:.5rem;padding:.5rem}p.err{color:#b42318}"
    "@media (prefers-color-scheme: dark){body{background:#0f1420;color:#dfe5ef}"
    "form{background:#1a2130}input{background:#0f1420;color:inherit;border:1px solid #3a4558}}"
)
LOGIN_CSS_HASH = "sha256-" + base64.b64encode(hashlib.sha256(LOGIN_CSS.encode()).digest()).decode()

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        f"style-src 'self' '{LOGIN_CSS_HASH}'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def log_refusal(reason: str, path: str, remote: Any) -> None:
    log.warning("refused %r from %s: %s", path[:200], remote, reason)
