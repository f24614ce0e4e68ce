"""Who may use the console: one token, a signed session cookie, CSRF, and a lockout.

* ``Authorization: Bearer TOKEN`` works for pages and API alike and needs no
  CSRF token (a browser never sends that header on its own).
* The login form trades the token for a session cookie: signed (itsdangerous,
  with a key derived from the token, so a new token ends every session),
  HttpOnly, SameSite=Strict.  The session carries a random CSRF token that
  every cookie-authenticated POST must send back.
* Five wrong tokens from one address within a minute: that address gets 429
  for the rest of that minute, whatever it sends.  A missing token is a plain
  401 and does not count, so an expired session never locks anyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

__all__ = ["COOKIE", "Guard", "Lockout", "Session"]

COOKIE = "syncd_session"
SESSION_AGE = 12 * 3600
"""A session lasts a working day; then the token is asked for again."""


@dataclass(frozen=True)
class Session:
    """An authenticated caller: by cookie (``csrf`` must come back on POSTs) or by Bearer."""

    csrf: str
    bearer: bool = False


class Lockout:
    """Wrong tokens per address within a sliding minute; five of them block the rest of it."""

    def __init__(self, limit: int = 5, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._wrong: dict[str, deque[float]] = {}
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def blocked_for(self, address: str) -> float:
        """Seconds this address is still blocked (0: not blocked)."""
        with self._lock:
            until = self._until.get(address)
            now = self.clock()
            if until is None or until <= now:
                self._until.pop(address, None)
                return 0.0
            return until - now

    def wrong(self, address: str) -> None:
        with self._lock:
            now = self.clock()
            seen = self._wrong.setdefault(address, deque())
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            seen.append(now)
            if len(seen) >= self.limit:
                self._until[address] = seen[0] + self.window
                seen.clear()
            if len(self._wrong) > 10_000:  # a scan of many addresses must not grow this forever
                self._wrong = {a: d for a, d in self._wrong.items() if d}


class Guard:
    """Checks tokens and signs sessions; knows nothing of HTTP beyond strings."""

    def __init__(self, token: str, lockout: Lockout | None = None) -> None:
        if not token:
            raise ValueError("the console needs a token")
        self._token = token.encode()
        key = hmac.new(self._token, b"syncd console session", hashlib.sha256).hexdigest()
        self._signer = URLSafeTimedSerializer(key, salt="syncd-session")
        self.lockout = lockout or Lockout()

    def token_ok(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    def new_session(self) -> str:
        """A cookie value for a fresh session with its own CSRF token."""
        return self._signer.dumps({"csrf": secrets.token_urlsafe(24)})

    def session(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None when it is missing, forged or too old."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=SESSION_AGE)
        except BadSignature:
            return None
        csrf = data.get("csrf") if isinstance(data, dict) else None
        return Session(csrf) if isinstance(csrf, str) and csrf else None

    @staticmethod
    def csrf_ok(session: Session, sent: str | None) -> bool:
        return session.bearer or (bool(sent) and hmac.compare_digest(
            (sent or "").encode(), session.csrf.encode()))
