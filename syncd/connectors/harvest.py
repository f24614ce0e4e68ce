"""Harvest v1 (classic API, XML) client contacts: mapping and endpoints.

The plumbing (Basic auth, pacing, ``Retry-After`` on Harvest's 503 throttle,
error mapping) is :class:`syncd.http.HttpClient`'s.  What is Harvest's own
lives here, each vendor quirk in one named place (``systems/harvest.md``):

* XML both ways, parsed only with defusedxml (no DTD, entity or external
  reference is ever expanded) and escaped on the way out;
* ``updated_since`` takes a UTC minute, so :func:`updated_since_param`
  floors; the engine adds :data:`OVERLAP` and recognises re-seen records by
  hash, so a contact changed twice in one minute is not missed;
* one ``GET /contacts`` per cycle, filtered by client-id here;
* a create's id is only in ``Location`` (:func:`id_from_location`); when it is
  missing the contact is looked up under its client instead of re-POSTed;
* deletions are invisible to ``updated_since``: only a full scan shows them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus, urlsplit

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from syncd.config import HarvestConfig
from syncd.connectors.base import (
    Capabilities,
    FieldLimit,
    Page,
    RemoteRecord,
    RestConnector,
    WriteResult,
    check_limits,
)
from syncd.contact import Fields, normalise
from syncd.errors import RetriableError, SystemUnavailable
from syncd.http import HttpClient, Response

__all__ = [
    "DEFAULT_MAX_RPS", "ELEMENTS", "MAX_LENGTH", "OVERLAP", "REQUIRED", "HarvestConnector",
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
_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def parse_xml(text: str | bytes, *, system: str = "harvest") -> Any:
    """Parse a Harvest document; DTDs, entities and external references are refused."""
    try:
        return SafeET.fromstring(text, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise SystemUnavailable(
            f"{system}: refused an XML answer carrying {type(exc).__name__}", system=system
        ) from None
    except SafeET.ParseError as exc:
        # A cut-off answer (proxy, dropped connection) is worth another try later.
        raise RetriableError(
            f"{system}: answer is not well-formed XML ({exc})", system=system
        ) from None


def error_message(response: Response) -> str:
    """The ``<error>`` texts of a Rails-style answer, else the raw body; plus any ``Hint``."""
    text = response.text.strip()
    message = text[:300] if text else response.reason_phrase
    if text.startswith("<"):
        try:
            root = SafeET.fromstring(text, forbid_dtd=True)
        except (DefusedXmlException, SafeET.ParseError):
            root = None
        if root is not None and root.tag == "errors":
            message = "; ".join((e.text or "").strip() for e in root.iter("error")) or message
    hint = response.headers.get("Hint")
    return f"{message} (Hint: {hint})" if hint else message


def updated_since_param(since: datetime) -> str:
    """``YYYY-MM-DD+HH%3AMM`` in UTC, floored to the minute (the API ignores seconds)."""
    if since.tzinfo is None:
        raise ValueError("updated_since needs a timezone-aware datetime")
    return quote_plus(since.astimezone(UTC).strftime("%Y-%m-%d %H:%M"))


def id_from_location(value: str | None) -> str | None:
    """The new id from ``Location`` (relative or absolute): its last path segment, digits."""
    if not value:
        return None
    segments = [s for s in urlsplit(value.strip()).path.split("/") if s]
    return segments[-1] if segments and segments[-1].isdigit() else None


def _text(element: Any) -> str:
    """An element's value; ``nil="true"``, ``<x/>`` and ``<x></x>`` all mean none."""
    if element is None or element.get("nil") == "true":
        return ""
    return str(element.text or "").strip()


def _timestamp(element: Any) -> datetime | None:
    """``type="datetime"`` or ``"dateTime"``: ISO-8601, UTC when no offset is given."""
    raw = _text(element)
    if not raw:
        return None
    when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def _esc(value: str) -> str:
    return value.translate(_ESCAPES)


class HarvestConnector(RestConnector):
    """Client contacts of one Harvest account; organizations are client-ids."""

    capabilities = Capabilities(
        fields=frozenset(ELEMENTS),
        incremental=True,
        can_delete=True,
        timestamps=True,
        limits={f: FieldLimit(MAX_LENGTH, required_on_create=f in REQUIRED) for f in ELEMENTS},
        overlap=OVERLAP,
    )

    http: HttpClient

    # -- reading --------------------------------------------------------------------------

    def _record(self, element: Any) -> RemoteRecord:
        fields = {f: _text(element.find(tag)) for f, tag in ELEMENTS.items()}
        return RemoteRecord(
            remote_id=_text(element.find("id")),
            org_id=_text(element.find("client-id")),
            fields=fields,
            updated_at=_timestamp(element.find("updated-at")),
        )

    def _contacts(self, url: str, what: str) -> list[RemoteRecord]:
        response = self.http.request("GET", url, what=what)
        root = parse_xml(response.content, system=self.name)
        if root.tag != "contacts":
            raise SystemUnavailable(
                f"{self.name}: GET {url}: expected <contacts>, got <{root.tag}>", system=self.name
            )
        return [self._record(el) for el in root.iter("contact")]

    def list_records(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Page]:
        """One ``GET /contacts`` for every mapped client (no paging exists), filtered here."""
        wanted = set(org_ids)
        if not wanted:
            yield Page([])
            return
        url = "/contacts"
        if since is not None:
            url += f"?updated_since={updated_since_param(since)}"
        records = [r for r in self._contacts(url, "list contacts") if r.org_id in wanted]
        if since is not None:
            epoch = datetime.min.replace(tzinfo=UTC)
            records.sort(key=lambda r: r.updated_at or epoch)
        yield Page(records)

    # -- writing --------------------------------------------------------------------------

    def _body(self, values: Mapping[str, str], org_id: str | None = None) -> str:
        parts = []
        if org_id is not None:
            parts.append(f'<client-id type="integer">{_esc(org_id)}</client-id>')
        for field, value in values.items():
            tag = ELEMENTS[field]
            bad = _XML_CHAR.search(value)
            if bad:
                raise self.reject(
                    f"field {field}", f"character U+{ord(bad.group()):04X} cannot be sent in XML"
                )
            parts.append(f"<{tag}>{_esc(value)}</{tag}>")
        return "<contact>" + "".join(parts) + "</contact>"

    def _ours(self, fields: Mapping[str, str]) -> Fields:
        return {f: (fields.get(f) or "").strip() for f in ELEMENTS}

    def _maybe_contact(self, response: Response) -> RemoteRecord | None:
        """Some servers answer a write with the contact; use it when they do."""
        if not response.content.strip():
            return None
        root = parse_xml(response.content, system=self.name)
        return self._record(root) if root.tag == "contact" else None

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        values = self._ours(fields)
        what = f"create contact {values['first_name']} {values['last_name']} (client {org_id})"
        problem = check_limits(self.capabilities, values, creating=True)
        if problem is not None:
            raise self.reject(what, f"{problem[0]}: {problem[1]}")
        if not org_id.isdigit():
            raise self.reject(what, f"client-id {org_id!r} is not an integer")
        sent = {f: v for f, v in values.items() if v or f in REQUIRED}
        response = self.http.request(
            "POST", "/contacts", content=self._body(sent, org_id), ok=(200, 201), what=what
        )
        remote_id = id_from_location(response.headers.get("Location"))
        echoed = self._maybe_contact(response)
        if remote_id is None and echoed is not None and echoed.remote_id:
            remote_id = echoed.remote_id
        if remote_id is None:
            remote_id = self._find_created(org_id, values, what)
        return WriteResult(remote_id, values, echoed.updated_at if echoed else None)

    def _find_created(self, org_id: str, values: Fields, what: str) -> str:
        """A 201 without a usable Location: find the contact instead of POSTing twice."""
        found = self._contacts(f"/clients/{org_id}/contacts", f"{what}: look up the new id")
        hits: list[RemoteRecord] = []
        for keys in (("email",), REQUIRED):  # email first, else first + last name
            if not hits and all(values[f] for f in keys):
                hits = [r for r in found if all(
                    normalise(f, r.fields[f]) == normalise(f, values[f]) for f in keys)]
        if not hits:
            raise RetriableError(
                f"{self.name}: {what}: created without a usable Location header and not found "
                "under its client; the next poll will show whether it exists",
                system=self.name,
            )
        return max(hits, key=lambda r: int(r.remote_id or 0)).remote_id  # the newest id

    def update(
        self,
        remote_id: str,
        org_id: str,
        changed: Fields,
        desired: Fields,
        extra: Mapping[str, Any],
    ) -> WriteResult:
        """PUT only the changed elements; an empty element clears (DECISIONS.md)."""
        holds = self._ours(desired)
        delta = {f: (v or "").strip() for f, v in changed.items() if f in ELEMENTS}
        what = f"update contact {remote_id}"
        for field, value in delta.items():
            if len(value) > MAX_LENGTH:
                raise self.reject(what, f"{field}: {len(value)} characters, the limit is 255")
            if not value and field in REQUIRED:
                raise self.reject(what, f"{field}: Harvest requires it, it cannot be cleared")
        if not delta:
            return WriteResult(remote_id, holds)
        response = self.http.request(
            "PUT", f"/contacts/{remote_id}", content=self._body(delta), ok=(200, 201), what=what
        )
        echoed = self._maybe_contact(response)
        return WriteResult(remote_id, holds, echoed.updated_at if echoed else None)

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        """DELETE; a 404 means it is already gone (DECISIONS.md), which is what we wanted."""
        self.http.request(
            "DELETE", f"/contacts/{remote_id}", ok=(200, 204, 404), what=f"delete {remote_id}"
        )


def from_config(name: str, cfg: HarvestConfig, **options: Any) -> HarvestConnector:
    """Build the connector; ``transport=`` / ``sleep=`` / ``max_rps=`` / ``burst=`` for tests."""
    http = HttpClient(
        name,
        cfg.base_url,
        timeout=cfg.timeout.total_seconds(),
        headers=XML_HEADERS,
        basic_auth=(cfg.username, cfg.password.get_secret_value()),
        max_rps=options.get("max_rps", cfg.max_rps or DEFAULT_MAX_RPS),
        burst=options.get("burst", 1.0),
        max_retries=options.get("max_retries", 4),
        error_message=error_message,
        transport=options.get("transport"),
        sleep=options.get("sleep", time.sleep),
    )
    return HarvestConnector(name, http)
