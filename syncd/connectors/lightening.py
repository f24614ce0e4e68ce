"""Lightening (freight-forwarding SaaS) contacts under customers: mapping and endpoints.

What is Lightening's own, each in one named place (``systems/lightening.md``,
``DECISIONS.md``):

* the list needs the ``customer_id`` array (:data:`CUSTOMER_ARRAY`, chunks of
  :data:`CHUNK`) and has no paging and no changed-since filter: a full scan,
  compared by content; deletions are concluded only from a complete one;
* every answer is HTTP 200 and the verdict is in the body (``result``,
  ``error``, ``errors``): :func:`validate_response` turns it into our errors,
  and knows that a delete's *success* says ``"result": false``;
* one ``name`` holds the whole person's name: written ``first last``, read
  split on the last space (:func:`split_name`); the engine compares it
  joined (``Capabilities.joined``), so the split never reads back as a change
  and the 64-character limit applies to the joined value;
* writes send only the fields we map: ``tel1``, ``email2``/``email3``, the
  portal and cost-centre fields are Lightening's alone and never cleared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from syncd.connectors.base import (
    Capabilities,
    FieldLimit,
    Listing,
    RemoteRecord,
    RestConnector,
    WriteResult,
)
from syncd.contact import Fields
from syncd.errors import AuthError, NotApplied, NotFound, RecordRejected
from syncd.http import Auth, HeaderToken, Response, default_rules, json_body, vendor_message
from syncd.model import MOVED_FROM

__all__ = [
    "CHUNK", "CONNECTOR", "CUSTOMER_ARRAY", "LighteningConnector", "error_message",
    "from_config", "join_name", "parse_stamp", "split_name", "validate_response",
]

NATIVE: dict[str, str] = {
    "email": "email",
    "phone": "tel",
    "mobile": "mobile",
    "fax": "fax",
    "job_title": "role",
    "department": "department",
}
"""Canonical field → Lightening field (CONTRACT §4); the name is :data:`NAME_PARTS`."""

NAME_PARTS = ("first_name", "last_name")
"""The canonical fields Lightening holds as its one ``name``."""

LIMITS = {
    "email": FieldLimit(191),
    "phone": FieldLimit(32),
    "mobile": FieldLimit(32),
    "fax": FieldLimit(32),
    "job_title": FieldLimit(32),
    "department": FieldLimit(64),
    "name": FieldLimit(64, required=True),  # the joined name; required on create *and* update
}
"""The documented limits, as capability data: the planner rejects before sending."""

CUSTOMER_ARRAY = "customer_id[]"
"""DECISIONS: the list takes a PHP-style array, ``customer_id[]=1&customer_id[]=7``."""

CHUNK = 50
"""DECISIONS: at most this many customer ids in one list request (URL length)."""

STAMP = "%Y-%m-%d %H:%M:%S"
"""DECISIONS: ``created_at``/``updated_at`` are ``YYYY-MM-DD HH:MM:SS`` in UTC."""

CREATE_DEFAULTS: dict[str, Any] = {"is_active": "1"}
"""ASSUMPTION: a contact created by sync is active (booleans are sent as "1"/"0")."""

DELETED = "entity has been successfully deleted."
GONE = "entity not found."
_AUTH_TEXT = re.compile(r"unauthori[sz]ed|unauthenticated|invalid token|token (has )?expired",
                        re.IGNORECASE)


def join_name(fields: Mapping[str, str]) -> str:
    """CONTRACT §4: the one ``name`` is ``first last`` (an empty part leaves no space)."""
    return " ".join(" ".join((fields.get(p) or "").split()) for p in NAME_PARTS
                    if (fields.get(p) or "").strip())


def split_name(name: str) -> tuple[str, str]:
    """CONTRACT §4: split on the last space; a single word is the last name."""
    first, _, last = " ".join(name.split()).rpartition(" ")
    return first, last


def parse_stamp(value: Any) -> datetime | None:
    """A Lightening timestamp as UTC; anything else is no stamp (observation time is used)."""
    try:
        return datetime.strptime(str(value).strip(), STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def _words(body: dict[str, Any]) -> str | None:
    """The vendor's own words: every ``errors`` field with its message, else ``error``/``msg``."""
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        return "; ".join(f"{field}: {text}" for field, text in errors.items())
    said = (body.get(key) for key in ("error", "msg"))
    return next((text.strip() for text in said if isinstance(text, str) and text.strip()), None)


error_message = vendor_message(_words)


def validate_response(response: Response, message: str) -> None:
    """HTTP 200 is not success: ``result: false`` is, except for a delete's own success.

    "Entity has been successfully deleted." passes; "Entity not found." is
    :class:`NotFound` (a delete takes it as already gone); ``errors`` reject
    the record with the system's message, naming the fields.  A bare ``error``
    ("The contact could not be saved. Please try again later.") names no field:
    the write did not happen, and is tried again (:class:`NotApplied`).
    """
    default_rules(response, message)
    body = json_body(response)
    if not isinstance(body, dict) or body.get("result") not in (False, "false", 0, "0"):
        return  # a success, or not JSON at all: the decoder says so
    said = str(body.get("msg") or "").strip().casefold()
    if said == DELETED:
        return
    if said == GONE:
        raise NotFound(message)
    if isinstance(body.get("error"), str) and _AUTH_TEXT.search(body["error"]):
        raise AuthError(message)  # ASSUMPTION (note §1): a refused token may come as a 200
    errors = body.get("errors")
    if not (isinstance(errors, dict) and errors) and isinstance(body.get("error"), str):
        raise NotApplied(message)
    raise RecordRejected(message)


class LighteningConnector(RestConnector):
    """Contacts of the mapped customers; organizations are customer ids."""

    capabilities = Capabilities(
        fields=frozenset({*NAME_PARTS, *NATIVE}),
        incremental=False,
        can_delete=True,
        timestamps=True,
        limits=LIMITS,
        can_move=True,
        joined={"name": NAME_PARTS},
        scoped_listing=True,  # a listing names its customers: a contact may move out of them
    )
    items_key = "entities"
    record_path = "/contact/{}"
    default_headers = {"Accept": "application/json"}
    error_message = staticmethod(error_message)
    validate_response = staticmethod(validate_response)

    def make_auth(self) -> Auth:
        """DECISIONS: the configured token, verbatim, in ``Authorization``."""
        return HeaderToken(self.cfg.token.get_secret_value())

    # -- reading --------------------------------------------------------------------------

    def listings(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Listing]:
        """One ``GET /contact`` per chunk of customers; ``since`` is ignored (no filter)."""
        ids = sorted(set(org_ids), key=lambda o: (len(o), o))
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            yield Listing("/contact", params=[(CUSTOMER_ARRAY, c) for c in chunk],
                          what=f"list contacts of {len(chunk)} customers", orgs=frozenset(chunk))

    def items(self, body: Any, listing: Listing) -> Sequence[Any]:
        """A listing's ``entities``, or the one ``entity`` of a contact read by id."""
        return [body["entity"]] if "entity" in body else super().items(body, listing)

    def record(self, item: Any, listing: Listing | None = None) -> RemoteRecord:
        first, last = split_name(str(item.get("name") or ""))
        fields: Fields = {"first_name": first, "last_name": last}
        for canon, native in NATIVE.items():
            fields[canon] = str(item.get(native) or "").strip()
        return RemoteRecord(str(item["id"]).strip(), str(item["customer_id"]).strip(), fields,
                            updated_at=parse_stamp(item.get("updated_at")))

    # -- writing --------------------------------------------------------------------------

    @staticmethod
    def _customer(org_id: str) -> Any:
        return int(org_id) if org_id.strip().isdigit() else org_id

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        name = join_name(fields)
        what = f"create contact {name!r} (customer {org_id})"
        self.check(what, fields, creating=True)
        body: dict[str, Any] = {"customer_id": self._customer(org_id), "name": name,
                                **CREATE_DEFAULTS}
        body.update({native: fields[c].strip() for c, native in NATIVE.items() if fields.get(c)})
        _, answer = self.send("POST", "/contact", body, what=what, idempotent=False)
        new_id = answer.get("id") if isinstance(answer, dict) else None
        if new_id in (None, ""):  # it may exist all the same: the next poll matches it
            raise self.unknown(what, f"no id in the answer {answer!r:.200}")
        return WriteResult(str(new_id), dict(fields))

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        """POST the changed mapped fields; ``name`` goes every time (it is required).

        ``customer_id`` goes only for a move (DECISIONS: it moves the contact):
        sent with every update it would undo a move made in Lightening since
        our last read.
        """
        what = f"update contact {remote_id}"
        self.check(what, desired, creating=False)
        body: dict[str, Any] = {"name": join_name(desired)}
        if MOVED_FROM in extra:
            body["customer_id"] = self._customer(org_id)
        body.update({native: (changed[c] or "").strip() for c, native in NATIVE.items()
                     if c in changed})
        self.send("POST", f"/contact/{remote_id}", body, what=what, idempotent=True)
        return WriteResult(remote_id, dict(desired))

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        """A GET that deletes; "Entity not found." means already gone, which is the goal.

        Replaying it (a retry after a cut connection) is safe for that reason.
        """
        try:
            self.send("GET", f"/contact/{remote_id}/delete", what=f"delete contact {remote_id}",
                      idempotent=True, read_answer=False)
        except NotFound:
            return


CONNECTOR = LighteningConnector
from_config = LighteningConnector.from_config
