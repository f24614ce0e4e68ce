"""Zoho Books v3 contact persons: mapping, endpoints and the daily request budget.

Why it looks the way it does (``shared/systems/zoho_books.md``, ``DECISIONS.md``):

* persons are read per parent contact (``GET /contacts/{id}/contactpersons``,
  ``page``/``per_page`` until ``page_context.has_more_page`` is false) and
  written on flat paths with ``contact_id`` in the body; never through a
  ``PUT`` of the parent, which drops the persons it leaves out;
* ``organization_id`` goes on every call; the token is Zoho's refresh-token
  grant, kept for its hour and fetched again once on a 401 (at most 10 in
  10 minutes: the base's :class:`~syncd.http.OAuth2Grant` keeps that budget);
* the verdict is ``code == 0``, whatever the HTTP status says;
* persons carry no timestamps: a full-scan system, ``newest`` uses the time
  syncd observed a change;
* a plan allows 1 000 (Free) to 10 000 requests a day.  :class:`DailyBudget`
  paces the parent sweep over the day (writes go first: they may use the whole
  budget, reads only :data:`READ_SHARE` of it), parents are read round-robin,
  and the ones left for a later cycle are reported as unread so their absence
  proves nothing.  A daily-cap 429 rests the system until the reset.  Both the
  spend and the rest outlive the process: the engine hands a new connector
  what the stored runs say (:meth:`ZohoBooksConnector.resume`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from syncd.config import ZohoBooksConfig
from syncd.connectors.base import (
    Capabilities,
    FieldLimit,
    Listing,
    Page,
    RemoteRecord,
    RestConnector,
    WriteResult,
)
from syncd.connectors.budget import DailyBudget
from syncd.connectors.paging import PageNumber
from syncd.contact import Fields
from syncd.errors import (
    NotApplied,
    NotFound,
    RateLimited,
    RecordRejected,
    RetriableError,
    Throttled,
)
from syncd.http import Auth, HttpClient, OAuth2Grant, Response, default_rules, vendor_message

__all__ = [
    "CONNECTOR", "DEFAULT_MAX_RPS", "FIELDS", "LIMITS",
    "DailyCapReached", "ZohoBooksConnector", "from_config", "is_daily_cap",
]

FIELDS: dict[str, str] = {
    "first_name": "first_name", "last_name": "last_name", "email": "email",
    "phone": "phone", "mobile": "mobile", "job_title": "designation",
    "department": "department", "salutation": "salutation",
}
"""Canonical field → Zoho contact-person field (CONTRACT §4; no fax)."""

LIMITS = {
    "first_name": FieldLimit(100, required_on_create=True, required=True),
    "last_name": FieldLimit(100), "email": FieldLimit(100),
    "phone": FieldLimit(50), "mobile": FieldLimit(50), "job_title": FieldLimit(50),
    "department": FieldLimit(50), "salutation": FieldLimit(25),
}
"""[Z1]/[Z2] lengths; [Z2] requires ``first_name`` on create and on update."""

PAGE_SIZE = 200
DEFAULT_MAX_RPS = 1.5
"""100 requests a minute per organization: 1.5/s with no burst is at most 90."""
TOKEN_TTL = timedelta(hours=1)
TOKEN_MARGIN = timedelta(minutes=1)
"""ASSUMPTION: fetch the next token a minute before the hour ends (clock drift)."""
MAX_REFRESHES, REFRESH_WINDOW = 10, timedelta(minutes=10)
ASSUMED_INTERVAL = timedelta(minutes=5)
"""The poll interval when the system sets none (the ``[sync]`` default) — paces the sweep."""
CODE_INTERNAL = 1000
"""Zoho's "Internal error": temporary, even inside an HTTP 200."""
RECORD_CODES = frozenset({4, 15, 1002})
"""Codes about the record itself (ASSUMPTION, as the sandbox: invalid value, too long, not
found): a rejection.  Any other non-zero code is Zoho saying the call did not happen."""


def is_daily_cap(message: str) -> bool:
    """ASSUMPTION (DECISIONS.md): the daily cap's 429 names the day; the per-minute one does not."""
    return "for the day" in message.lower() or "tomorrow" in message.lower()


class DailyCapReached(Throttled):
    """Zoho's daily cap: nothing more is sent before the budget's reset."""


def _body(response: Response) -> Mapping[str, Any]:
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class ZohoBooksConnector(RestConnector):
    """Contact persons of one Zoho Books organization; syncd organizations are parent contacts."""

    capabilities = Capabilities(fields=frozenset(FIELDS), incremental=False, timestamps=False,
                                limits=LIMITS)
    items_key = "contact_persons"
    default_headers = {"Accept": "application/json"}
    default_max_rps = DEFAULT_MAX_RPS
    default_burst = 1.0
    in_flight_cap = 1
    """One write at a time: the daily budget is checked before each request (a second in
    flight could pass it), and 1.5 requests/s needs no more at any sane latency."""

    def __init__(self, name: str, http: HttpClient, cfg: ZohoBooksConfig, **options: Any) -> None:
        super().__init__(name, http, cfg, **options)
        self.cfg: ZohoBooksConfig = cfg
        self.page_size = int(options.get("page_size", PAGE_SIZE))
        self.org = {"organization_id": cfg.organization_id}
        self.budget = DailyBudget(cfg.daily_budget, cfg.daily_budget_reset,
                                  cfg.interval or ASSUMED_INTERVAL)
        self.next_parent: str | None = None
        """Where the round-robin sweep goes on (in this process); else chosen by the clock."""

    def make_auth(self) -> Auth:
        cfg = self.cfg
        return OAuth2Grant(
            cfg.accounts_url.rstrip("/") + "/oauth/v2/token",
            lambda: {"grant_type": "refresh_token", "client_id": cfg.client_id,
                     "client_secret": cfg.client_secret.get_secret_value(),
                     "refresh_token": cfg.refresh_token.get_secret_value()},
            scheme="Zoho-oauthtoken", margin=TOKEN_MARGIN, default_ttl=TOKEN_TTL,
            max_refreshes=MAX_REFRESHES, refresh_window=REFRESH_WINDOW, clock=self.clock,
        )

    error_message = staticmethod(vendor_message(
        lambda body: f"{body['message']} (code {body.get('code')})" if "message" in body else None))

    @staticmethod
    def validate_response(response: Response, message: str) -> None:
        """Success is 2xx **and** ``code == 0``; the daily cap is not a wait-and-resend."""
        status = response.status_code
        if status == 429 and is_daily_cap(message):
            raise DailyCapReached(f"HTTP 429 {message}")
        default_rules(response, message)
        code = _body(response).get("code", 0)
        if code in (0, "0"):
            return
        text = f"HTTP {status} but code {message}"
        if code == CODE_INTERNAL:
            raise RetriableError(text)
        if str(code) in {str(c) for c in RECORD_CODES}:
            raise RecordRejected(text)
        raise NotApplied(text)

    # -- the budget -----------------------------------------------------------------------

    def budget_status(self) -> dict[str, Any]:
        return self.budget.status(self.clock(), self.http.request_count())

    def resume(self, runs: Sequence[tuple[datetime, int]], capped_until: datetime | None) -> None:
        """What earlier processes spent today and a cap's rest still due (the CronJob)."""
        self.budget.resume(self.clock(), self.http.request_count(), runs, capped_until)

    def capped_until(self) -> datetime | None:
        return self.budget.capped_until

    def _spend(self, what: str, *, write: bool) -> None:
        """Refuse before sending once the cap is reached or a write would pass the budget."""
        now = self.clock()
        capped = self.budget.capped_until
        if capped is not None and now < capped:
            raise DailyCapReached(f"{self.name}: {what}: Zoho's daily request cap was reached; "
                                  f"nothing is sent before {capped:%Y-%m-%dT%H:%M:%SZ}",
                                  system=self.name)
        # Without a token in hand the write costs two requests: the token, then itself.
        auth = self.http.auth
        cost = 1 if not isinstance(auth, OAuth2Grant) or auth.ready() else 2
        if write and self.budget.used(now, self.http.request_count()) + cost > self.budget.limit:
            end = self.budget.window(now)[1]
            raise Throttled(f"{self.name}: {what}: the daily budget of {self.budget.limit} "
                            f"requests is spent; writes resume after {end:%Y-%m-%dT%H:%M:%SZ}",
                            system=self.name)

    def _capped(self, exc: DailyCapReached | RateLimited) -> DailyCapReached:
        """The daily cap, or a 429 that outlasted every minute's wait (DECISIONS.md): rest."""
        end = self.budget.window(self.clock())[1]
        self.budget.capped_until = end
        return DailyCapReached(f"{exc}; the system rests until {end:%Y-%m-%dT%H:%M:%SZ}",
                               system=self.name)

    # -- reading ----------------------------------------------------------------------------

    def sweep(self, parents: Sequence[str]) -> list[str]:
        """The parents to re-read this cycle: all when the budget allows, else the next few."""
        if not parents:
            return []
        now = self.clock()
        allowed = self.budget.reads_allowed(now, self.http.request_count())
        if allowed >= len(parents):
            return list(parents)
        if self.next_parent is None:  # a fresh process: go on where the clock says
            start, _ = self.budget.window(now)
            first = int((now - start) / self.budget.interval) * allowed
        else:
            first = next((i for i, p in enumerate(parents) if p >= self.next_parent), 0)
        chosen = [parents[(first + i) % len(parents)] for i in range(allowed)]
        if chosen:
            self.next_parent = parents[(first + allowed) % len(parents)]
        return chosen

    def list_records(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Page]:
        """Persons of the parents this cycle's budget covers; the others are declared unread."""
        self._spend("list contact persons", write=False)
        parents = sorted(set(org_ids))
        chosen = self.sweep(parents)
        unread = frozenset(parents) - set(chosen)
        if unread:
            yield Page([], unread_orgs=unread)
        try:
            yield from super().list_records(chosen, since)
        except (DailyCapReached, RateLimited) as exc:
            raise self._capped(exc) from None

    def listings(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Listing]:
        for parent in org_ids:
            yield Listing(
                f"/contacts/{parent}/contactpersons", org_id=parent, params=self.org,
                paginator=PageNumber(lambda b: bool(b["page_context"]["has_more_page"]),
                                     size=self.page_size),
                what=f"persons of contact {parent}",
            )

    def item_id(self, item: Any) -> str | None:
        value = item.get("contact_person_id") if isinstance(item, Mapping) else None
        return str(value) if value not in (None, "") else None

    def record(self, item: Any, listing: Listing) -> RemoteRecord:
        return self._record(item, str(listing.org_id))

    @staticmethod
    def _record(item: Mapping[str, Any], parent: str) -> RemoteRecord:
        # Ids are long numeric strings: a number in JSON would already have lost digits.
        if not isinstance(item["contact_person_id"], str):
            raise TypeError("contact_person_id is not a string")
        fields = {c: str(item.get(z) or "").strip() for c, z in FIELDS.items()}
        return RemoteRecord(item["contact_person_id"], parent, fields)

    # -- writing ----------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None, what: str,
              **kw: Any) -> tuple[Response, Any]:
        self._spend(what, write=True)
        try:
            return self.send(method, path, body, params=self.org, what=what, **kw)
        except (DailyCapReached, RateLimited) as exc:
            raise self._capped(exc) from None

    def _answered(self, answer: Any, parent: str, what: str) -> RemoteRecord:
        """``contact_person`` as an object ([Z1]) or a one-element array ([Z2])."""
        try:
            person = answer["contact_person"]
            if isinstance(person, list):
                (person,) = person
            return self._record(person, parent)
        except (KeyError, TypeError, ValueError) as exc:
            raise self.unknown(what, f"answer without the person ({type(exc).__name__}: {exc})") from None

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        values = {c: (fields.get(c) or "").strip() for c in FIELDS}
        what = (f"create contact person {values['first_name']} {values['last_name']} "
                f"(contact {org_id})")
        self.check(what, values, creating=True)
        body = {"contact_id": org_id, **{FIELDS[c]: v for c, v in values.items() if v}}
        _, answer = self._send("POST", "/contacts/contactpersons", body, what, idempotent=False)
        made = self._answered(answer, org_id, what)
        return WriteResult(made.remote_id, made.fields)

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        """A partial PUT: the changed fields plus ``contact_id`` and ``first_name`` ([Z2])."""
        delta = {c: (v or "").strip() for c, v in changed.items() if c in FIELDS}
        holds = {c: (desired.get(c) or "").strip() for c in FIELDS}
        what = f"update contact person {remote_id}"
        self.check(what, {**holds, **delta}, creating=False)
        if not delta:
            return WriteResult(remote_id, holds)
        first = delta.get("first_name", holds["first_name"])
        body = {"contact_id": org_id, "first_name": first,
                **{FIELDS[c]: v for c, v in delta.items()}}
        _, answer = self._send("PUT", f"/contacts/contactpersons/{remote_id}", body, what)
        return WriteResult(remote_id, self._answered(answer, org_id, what).fields)

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        """DELETE; a 404 (code 1002) means already gone, which is what we wanted."""
        what = f"delete contact person {remote_id}"
        try:
            self._send("DELETE", f"/contacts/contactpersons/{remote_id}", None, what,
                       read_answer=False)
        except NotFound:
            return


CONNECTOR = ZohoBooksConnector
from_config = ZohoBooksConnector.from_config
