"""The only module that imports httpx.

``HttpClient`` gives every connector the same plumbing: a per-system rate
limiter (so the vendor's throttle signal is the exception, not the rule),
retries on 429/503/5xx and network errors that honour ``Retry-After``, one
re-login on 401 through an :class:`Auth` hook, and error mapping onto the
exception tree in :mod:`syncd.errors`.  Tests inject ``httpx.MockTransport``
through ``transport=``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from syncd.errors import AuthError, RecordRejected, RetriableError, SystemUnavailable

__all__ = [
    "Auth",
    "HttpClient",
    "HttpStats",
    "MockTransport",
    "RateLimiter",
    "Request",
    "Response",
    "parse_retry_after",
]

Response = httpx.Response
Request = httpx.Request
MockTransport = httpx.MockTransport
Transport = httpx.BaseTransport

RETRIABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})


class Auth(Protocol):
    """How a connector authenticates: headers to add, and a way to log in again."""

    def headers(self, client: HttpClient) -> Mapping[str, str]: ...

    def refresh(self, client: HttpClient) -> None: ...


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RateLimiter:
    """A token bucket: at most ``rate`` requests a second, bursts up to ``burst``.

    ``block_until`` stops every caller until a vendor's ``Retry-After`` has
    passed (Harvest restarts its window on each call made while throttled).
    """

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate or 1.0)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._blocked_until = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0

    def block_until(self, seconds_from_now: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds_from_now)

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                wait = self._blocked_until - now
                if wait <= 0 and self.rate is None:
                    return
                if wait <= 0 and self.rate is not None:
                    self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                    self._last = now
                    if self._tokens >= 1:
                        self._tokens -= 1
                        return
                    wait = (1 - self._tokens) / self.rate
            self.waited += wait
            self._sleep(wait)


@dataclass
class HttpStats:
    requests: int = 0
    writes: int = 0
    retries: int = 0
    rate_limited: int = 0
    by_method: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "writes": self.writes,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
        }


def _default_error_message(response: Response) -> str:
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase


class HttpClient:
    """One system's HTTP session: base URL, auth, pacing, retries, error mapping."""

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        max_rps: float | None = None,
        burst: float | None = None,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_wait: float = 120.0,
        error_message: Callable[[Response], str] = _default_error_message,
        transport: Transport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        self.system = system
        self.auth = auth
        self.limiter = RateLimiter(max_rps, burst, sleep=sleep)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.error_message = error_message
        self.stats = HttpStats()
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={"User-Agent": "syncd/0.1 (contact sync)", **(headers or {})},
            transport=transport,
            auth=httpx.BasicAuth(*basic_auth) if basic_auth else None,
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        params: Any = None,
        json: Any = None,
        data: Any = None,
        content: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
        follow_redirects: bool = False,
        what: str = "",
    ) -> Response:
        """Send one request; return the response when its status is in ``ok``.

        Raises ``RetriableError`` once retries are spent, ``AuthError`` on a
        401/403 that a fresh login did not cure, ``RecordRejected`` on any
        other 4xx (with the system's own message) and ``SystemUnavailable``
        on anything else unexpected.  ``what`` names the record for messages.
        """
        label = f"{self.system}: {method} {url}" + (f" ({what})" if what else "")
        relogged = False
        attempt = 0
        while True:
            self.limiter.acquire()
            req_headers = dict(headers or {})
            if authenticate and self.auth is not None:
                req_headers.update(self.auth.headers(self))
            self.stats.requests += 1
            self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1
            if method not in ("GET", "HEAD"):
                self.stats.writes += 1
            try:
                response = self._client.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    content=content,
                    headers=req_headers,
                    follow_redirects=follow_redirects,
                )
            except httpx.TimeoutException as exc:
                error: RetriableError = RetriableError(
                    f"{label}: timed out ({type(exc).__name__})", system=self.system
                )
                if method not in ("GET", "HEAD"):
                    # A write that timed out may have been applied: never resend it
                    # blindly; the next poll will show whether it landed.
                    raise error from None
            except httpx.TransportError as exc:
                error = RetriableError(
                    f"{label}: network error ({type(exc).__name__}: {exc})", system=self.system
                )
                if method not in ("GET", "HEAD") and not isinstance(exc, httpx.ConnectError):
                    # The request may have reached the server: same rule as a timeout.
                    raise error from None
            else:
                status = response.status_code
                if status in ok:
                    return response
                if status in AUTH_STATUS and authenticate and self.auth is not None and not relogged:
                    relogged = True
                    self.auth.refresh(self)
                    continue
                if status in AUTH_STATUS:
                    raise AuthError(
                        f"{label}: HTTP {status} {self.error_message(response)}", system=self.system
                    )
                if status in RETRIABLE_STATUS:
                    wait = parse_retry_after(response.headers.get("Retry-After"))
                    if status == 429 or (status == 503 and wait is not None):
                        self.stats.rate_limited += 1
                    if wait is not None:
                        self.limiter.block_until(min(wait, self.max_wait))
                    error = RetriableError(
                        f"{label}: HTTP {status} {self.error_message(response)}",
                        system=self.system,
                        retry_after=wait,
                    )
                    if wait is not None and attempt < self.max_retries:
                        # A throttle signal is not an outage: wait it out and go on.
                        attempt += 1
                        self.stats.retries += 1
                        continue
                elif 400 <= status < 500:
                    raise RecordRejected(
                        f"{label}: HTTP {status} {self.error_message(response)}", system=self.system
                    )
                else:
                    raise SystemUnavailable(
                        f"{label}: unexpected HTTP {status} {self.error_message(response)}",
                        system=self.system,
                    )
            if attempt >= self.max_retries:
                raise error
            attempt += 1
            self.stats.retries += 1
            self._sleep(min(self.max_wait, self.backoff * (2 ** (attempt - 1))))
