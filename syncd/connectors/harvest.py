"""Harvest v1 (classic API, XML) client contacts: mapping and endpoints.

The plumbing (Basic auth, pacing, ``Retry-After`` on Harvest's 503 throttle,
error mapping, XML both ways through defusedxml and escaped on the way out) is
the base's.  Harvest's own quirks, each in one named place (``systems/harvest.md``):

* ``updated_since`` takes a UTC minute, so :func:`updated_since_param`
  floors; the engine adds :data:`OVERLAP` and recognises re-seen records by
  hash, so a contact changed twice in one minute is not missed;
* one ``GET /contacts`` per cycle, filtered by client-id here;
* a create's id is only in ``Location`` (:func:`id_from_location`); when it is
  missing the contact is looked up under its client instead of re-POSTed;
* deletions are invisible to ``updated_since``: only a full scan shows them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

from syncd.connectors import xmlcodec
from syncd.connectors.base import (
    Capabilities,
    FieldLimit,
    Listing,
    RemoteRecord,
    RestConnector,
    WriteResult,
    parse_iso,
)
from syncd.contact import Fields, normalise
from syncd.errors import BadAnswer, OutcomeUnknown
from syncd.http import Auth, BasicAuth, Response, id_from_location
from syncd.model import MOVED_FROM

__all__ = [
    "CONNECTOR", "DEFAULT_MAX_RPS", "ELEMENTS", "MAX_LENGTH", "OVERLAP", "REQUIRED", "HarvestConnector",
    "error_message", "from_config", "id_from_location", "parse_xml", "updated_since_param",
]

ELEMENTS: dict[str, str] = {
    "first_name": "first-name",
    "last_name": "last-name",
    "email": "email",
    "phone": "phone-office",
    "mobile": "phone-mobile",
    "fax": "fax",
    "job_title": "title",
}
"""Canonical field → Harvest element (CONTRACT §4); client-id is the organization."""

MAX_LENGTH = 255
"""ASSUMPTION (DECISIONS.md): every string is limited to 255 characters."""

OVERLAP = timedelta(minutes=1)
"""``updated_since`` has minute grain: re-read at least one whole minute."""

REQUIRED = ("first_name", "last_name")
"""Required on create [H1]; Harvest also refuses to blank them on update (422)."""

DEFAULT_MAX_RPS = 6.0
"""Harvest throttles above 100 requests / 15 s; 6/s with no burst stays at <= 91."""

XML_HEADERS = {"Accept": "application/xml", "Content-Type": "application/xml"}
_text = xmlcodec.element_text


def parse_xml(text: str | bytes, *, system: str = "harvest") -> Any:
    return xmlcodec.parse_xml(text, label=system, system=system)


def error_message(response: Response) -> str:
    """The ``<error>`` texts of a Rails-style answer, else the raw body; plus any ``Hint``."""
    text = response.text.strip()
    message = xmlcodec.error_texts(text, system="harvest") or text[:300] or response.reason_phrase
    hint = response.headers.get("Hint")
    return f"{message} (Hint: {hint})" if hint else message


def updated_since_param(since: datetime) -> str:
    """``YYYY-MM-DD+HH%3AMM`` in UTC, floored to the minute (the API ignores seconds)."""
    if since.tzinfo is None:
        raise ValueError("updated_since needs a timezone-aware datetime")
    return quote_plus(since.astimezone(UTC).strftime("%Y-%m-%d %H:%M"))


class HarvestConnector(RestConnector):
    """Client contacts of one Harvest account; organizations are client-ids."""

    capabilities = Capabilities(
        fields=frozenset(ELEMENTS),
        incremental=True,
        can_delete=True,
        can_move=True,
        timestamps=True,
        limits={f: FieldLimit(MAX_LENGTH, required=f in REQUIRED) for f in ELEMENTS},
        overlap=OVERLAP,
    )
    body_format = answer_format = "xml"
    default_headers = XML_HEADERS
    xml_root = "contact"
    xml_tags = ELEMENTS
    xml_attrs = {"client-id": 'type="integer"'}
    default_max_rps = DEFAULT_MAX_RPS
    default_burst = 1.0
    in_flight_cap = 2
    """Harvest restarts its throttle window on every call made while throttled: one
    request in flight beside the one that meets the 503 costs at most one restart,
    and two keep 6 requests/s even at 300 ms an answer."""
    error_message = staticmethod(error_message)

    def make_auth(self) -> Auth:
        return BasicAuth(self.cfg.username, self.cfg.password.get_secret_value())

    # -- reading --------------------------------------------------------------------------

    def listings(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Listing]:
        """One ``GET /contacts`` for every client (no paging exists).

        Contacts of unmapped clients come too: the planner ignores them, unless
        one of ours moved there (out of scope, not deleted).
        """
        if not org_ids:
            return
        query = f"?updated_since={updated_since_param(since)}" if since is not None else ""
        yield Listing("/contacts" + query, what="list contacts", ascending=since is not None)

    def items(self, body: Any, listing: Listing) -> Sequence[Any]:
        if body.tag != "contacts":
            raise BadAnswer(f"expected <contacts>, got <{body.tag}>")
        return list(body.iter("contact"))

    def item_id(self, item: Any) -> str | None:
        return _text(item.find("id")) or None

    def record(self, item: Any, listing: Listing | None = None) -> RemoteRecord:
        return RemoteRecord(
            remote_id=_text(item.find("id")),
            org_id=_text(item.find("client-id")),
            fields={f: _text(item.find(tag)) for f, tag in ELEMENTS.items()},
            updated_at=parse_iso(_text(item.find("updated-at"))),  # "datetime" or "dateTime"
        )

    # -- writing --------------------------------------------------------------------------

    def _ours(self, fields: Mapping[str, str]) -> Fields:
        return {f: (fields.get(f) or "").strip() for f in ELEMENTS}

    def _echoed(self, body: Any) -> RemoteRecord | None:
        """Some servers answer a write with the contact; use it when they do."""
        return self.record(body) if body is not None and body.tag == "contact" else None

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        values = self._ours(fields)
        what = f"create contact {values['first_name']} {values['last_name']} (client {org_id})"
        self.check(what, values, creating=True)
        if not org_id.isdigit():
            raise self.reject(what, f"client-id {org_id!r} is not an integer")
        sent = {f: v for f, v in values.items() if v or f in REQUIRED}
        response, body = self.send("POST", "/contacts", {"client-id": org_id, **sent}, what=what)
        remote_id = id_from_location(response.headers.get("Location"))
        echoed = self._echoed(body)
        if remote_id is None and echoed is not None and echoed.remote_id:
            remote_id = echoed.remote_id
        if remote_id is None:
            remote_id = self._find_created(org_id, values, what)
        return WriteResult(remote_id, values, echoed.updated_at if echoed else None)

    def _find_created(self, org_id: str, values: Fields, what: str) -> str:
        """A 201 without a usable Location: find the contact instead of POSTing twice."""
        listing = Listing(f"/clients/{org_id}/contacts", what=f"{what}: look up the new id")
        found = [r for page in self.read(listing) for r in page.records]
        hits: list[RemoteRecord] = []
        for keys in (("email",), REQUIRED):  # email first, else first + last name
            if not hits and all(values[f] for f in keys):
                hits = [r for r in found if all(
                    normalise(f, r.fields[f]) == normalise(f, values[f]) for f in keys)]
        if not hits:
            raise OutcomeUnknown(f"{self.name}: {what}: created without a usable Location header "
                                 "and not found under its client; the next poll will show whether "
                                 "it exists", system=self.name)
        return max(hits, key=lambda r: int(r.remote_id or 0)).remote_id  # the newest id

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        """PUT only the changed elements (and client-id for a move); an empty one clears."""
        holds = self._ours(desired)
        delta = {f: (v or "").strip() for f, v in changed.items() if f in ELEMENTS}
        if MOVED_FROM in extra:
            delta["client-id"] = org_id
        what = f"update contact {remote_id}"
        self.check(what, {**holds, **changed}, creating=False)
        if not delta:
            return WriteResult(remote_id, holds)
        _, body = self.send("PUT", f"/contacts/{remote_id}", delta, what=what)
        echoed = self._echoed(body)
        return WriteResult(remote_id, holds, echoed.updated_at if echoed else None)

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        """DELETE; a 404 means it is already gone (DECISIONS.md), which is what we wanted."""
        self.remove("DELETE", f"/contacts/{remote_id}", what=f"delete {remote_id}")


CONNECTOR = HarvestConnector
from_config = HarvestConnector.from_config
