"""LogiSense Billing v6: contacts hang under Accounts; e-mail and phones are child records.

Why it looks the way it does (``shared/systems/logisense.md``, ``DECISIONS.md``):

* No update stamp → a full scan compared by hash: the members of each mapped account
  (``Account/{id}/Detail``), then ``Contact/Paged/Detail`` pages (the page asked for in a JSON
  ``Pagination`` request header) until all were seen; never a request per contact.
* Email/phone/mobile/fax are contact points (:class:`TypedChildren`) typed per ContactType
  (``ContactPointType/``, a config override wins).  Their ids stay in the link's ``extra``, so
  a changed email is an *update* of the same point, in one ``PATCH Contact/{id}``.
* Create and delete go through ``PATCH Account/{id}``; a new contact arrives with its points
  nested, never as an unmatchable name-only orphan.
* ``title`` is the salutation ("Mr."), not a job title (CONTRACT §4).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from syncd.config import LogisenseConfig
from syncd.connectors.base import Listing, RemoteRecord, RestConnector, TypedChildren, list_at
from syncd.connectors.paging import HeaderPage
from syncd.contact import Fields
from syncd.errors import SystemUnavailable
from syncd.http import Auth, HttpClient, OAuth2Grant, vendor_message
from syncd.model import Capabilities, Discovered, FieldLimit, WriteResult

__all__ = ["CONNECTOR", "LogisenseConnector", "from_config", "point_kind"]

log = structlog.get_logger(__name__)

SCALARS = {"first_name": "firstName", "last_name": "lastName", "salutation": "title"}
POINTS = ("email", "phone", "mobile", "fax")
PAGE_SIZE = 500
# ASSUMPTION: log in again this long before the token's stated expiry (half its life at most).
REFRESH_MARGIN = timedelta(seconds=60)
LIMITS = {  # ASSUMPTION: column lengths the v6 docs do not state; the sandbox enforces the same.
    "first_name": FieldLimit(max_length=50), "last_name": FieldLimit(max_length=50),
    "salutation": FieldLimit(max_length=20), **{p: FieldLimit(max_length=255) for p in POINTS},
}
CAPABILITIES = Capabilities(
    fields=frozenset({*SCALARS, *POINTS}), incremental=False, timestamps=False, limits=LIMITS
)
POINT_WORDS = {"mail": "email", "mobile": "mobile", "cell": "mobile", "fax": "fax", "phone": "phone"}
"""ASSUMPTION: a word in a contact point type's (undocumented) name → its field; first match wins."""


def point_kind(type_name: str) -> str | None:
    """Which canonical field a contact point type name means, per :data:`POINT_WORDS`."""
    return next((kind for word, kind in POINT_WORDS.items() if word in type_name.lower()), None)


def _words(body: dict[str, Any]) -> str | None:
    """``trackingId`` plus every error message, so a quarantine reason says it all."""
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    parts = [f"{e.get('code', '')}: {e.get('message', '')}" for e in errors]
    if oauth := body.get("error_description") or body.get("error"):
        parts.append(str(oauth))
    return f"[trackingId {body.get('trackingId', '?')}] {'; '.join(parts)}" if parts else None


def _created(results: Sequence[Mapping[str, Any]], dto: str) -> list[dict[str, Any]]:
    """What a PATCH answer says it created of one kind: each ``instance`` with its ``identity``."""
    return [{**(r.get("instance") or {}), "identity": r["identity"]} for r in results
            if r.get("dtoTypeKey") == dto and r.get("action") == "created"]


class LogisenseConnector(RestConnector):
    capabilities = CAPABILITIES
    id_key = "identity"
    default_headers = {"Accept": "application/json"}
    error_message = staticmethod(vendor_message(_words))

    def __init__(self, name: str, http: HttpClient, cfg: LogisenseConfig, **options: Any) -> None:
        super().__init__(name, http, cfg, **options)
        self.cfg: LogisenseConfig = cfg
        self.api = f"/ResourceServer/api/v{cfg.api_version}/"
        self.page_size = int(options.get("page_size", PAGE_SIZE))
        self.type_ids: dict[tuple[int, str], int] | None = None
        """(contactTypeId, canonical field) → contactPointTypeId."""
        self._members: dict[int, str] = {}

    def make_auth(self) -> Auth:
        cfg = self.cfg
        return OAuth2Grant(
            f"/AuthorizationServer/api/v{cfg.api_version}/Access/Login",
            lambda: {"grant_type": "password", "client_id": cfg.client_id,
                     "username": cfg.username, "password": cfg.password.get_secret_value()},
            margin=REFRESH_MARGIN, clock=self.clock,
        )

    # -- start-up probe -----------------------------------------------------------------

    def open(self) -> Discovered:
        """Read Metadata (log the routes, heed a missing delete) and the contact point types, once."""
        if self.type_ids is not None:
            return self.discovered
        for entity in ("Contact", "Account"):
            meta = self.fetch(f"{self.api}{entity}/Metadata", f"{entity} metadata", ok=(404,))
            if not isinstance(meta, dict):  # a probe, not a precondition: say so and go on
                log.warning("logisense.no_metadata", system=self.name, entity=entity)
                continue
            details = meta.get("details", {})
            patch = details.get("dataFlowPatchTypes", {})
            routes = [f"{r.get('name')} {r.get('template')}".strip()
                      for r in details.get("resourceRouting", {}).get("routes", [])]
            log.debug("logisense.routes", system=self.name, entity=entity, routes=routes, patch=patch)
            if entity == "Account" and "delete" not in patch.get("contact", ["delete"]):
                self.stop_deleting("logisense.no_delete")
        types = list_at(self.fetch(self.api + "ContactPointType/", "contact point types"), "items")
        ids: dict[tuple[int, str], int] = {}
        for item in types:  # the first type of a kind wins; then the operator's word wins
            if (kind := point_kind(str(item.get("name", "")))) is not None:
                ids.setdefault((int(item.get("contactTypeId", 0)), kind), int(item["identity"]))
        ctypes = {c for c, _ in ids} | {self.cfg.contact_type_id or 0}
        for kind, tid in self.cfg.contact_point_types.items():
            ids.update({(ctype, kind): tid for ctype in ctypes})
        self.type_ids = ids
        log.debug("logisense.point_types", system=self.name, mapped=len(ids), offered=len(types))
        return self.discovered

    def _points(self, ctype: int) -> TypedChildren:
        """The contact points a contact of this ContactType holds, as typed child records."""
        self.open()
        assert self.type_ids is not None
        types = {kind: self.type_ids.get((ctype, kind)) for kind in POINTS}
        return TypedChildren(types, type_key="contactPointTypeId")

    # -- reading ------------------------------------------------------------------------

    def listings(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Listing]:
        """Members of each mapped account, then pages until each was seen (:attr:`Listing.wanted`)."""
        self.open()
        self._members = {}
        for org in org_ids:
            detail = self.fetch(f"{self.api}Account/{int(org)}/Detail", f"account {org}", ok=(404,))
            if detail is None:  # an incomplete scan must not read as "all deleted"
                raise SystemUnavailable(f"{self.name}: mapped account {org} not found",
                                        system=self.name)
            for c in detail["instance"].get("details", {}).get("contacts", []):
                self._members.setdefault(int(c["identity"]), org)
        unseen, orgs = {str(cid) for cid in self._members}, frozenset(org_ids)
        if unseen:
            pages = HeaderPage(lambda body: int(body["pagedResults"].get("totalCount", 0)),
                               size=self.page_size)
            yield Listing(self.api + "Contact/Paged/Detail", what="contacts", orgs=orgs, wanted=unseen,
                          by_id=self.api + "Contact/{}/Detail", paginator=pages)

    def items(self, body: Any, listing: Listing) -> Sequence[Any]:
        return list_at(body, "pagedResults", "items") if "pagedResults" in body else [body["instance"]]

    def record(self, item: Any, listing: Listing | None = None) -> RemoteRecord:
        ctype = int(item.get("contactTypeId") or 0)
        values, points = self._points(ctype).read(item.get("details", {}).get("contactPoints", []))
        fields = {**{k: (item.get(v) or "").strip() for k, v in SCALARS.items()}, **values}
        return RemoteRecord(str(item["identity"]), self._members.get(int(item["identity"]), ""),
                            fields, extra={"contactTypeId": ctype, "points": points})

    # -- writing ------------------------------------------------------------------------

    def _patch(self, path: str, body: Mapping[str, Any], what: str,
               idempotent: bool = False) -> list[dict[str, Any]]:
        """One PATCH and its ``results``; an answer we cannot read leaves a create's outcome unknown."""
        _, items = self.send("PATCH", self.api + path, body, what=what, idempotent=idempotent,
                             pick=lambda answer: [dict(r) for r in list_at(answer, "results", "items")])
        return list(items or [])

    def _point_items(self, ctype: int, changed: Fields, points: Mapping[str, int],
                     what: str) -> list[dict[str, Any]]:
        """The nested contact point PATCH items that carry ``changed``."""
        items = []
        for op, kind, child in self._points(ctype).edits(changed, points):
            if op == "create" and child["contactPointTypeId"] is None:
                raise self.reject(what, f"ContactType {ctype} has no {kind} contact point type "
                                  f"(set contact_point_types.{kind})")
            items.append({"patchType": op, **child})
        return items

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        ctype = self.cfg.contact_type_id
        if ctype is None:
            raise self.reject("create", f"systems.{self.name}.contact_type_id is not set: "
                              "new contacts need a ContactType id")
        points = self._point_items(ctype, fields, {}, "create")
        item = {"patchType": "create", "patchClientId": 1, "contactTypeId": ctype,
                **{v: fields.get(k, "") for k, v in SCALARS.items()}, "isUsedForTax": False,
                "details": {"contactPoints": {"items": points}}}
        body = {"details": {}, "contacts": {"items": [item]}}
        results = self._patch(f"Account/{int(org_id)}", body, what="new contact")
        new = next(iter(_created(results, "contact")), None)
        if new is None:  # it may exist all the same: the next poll tells
            raise self.unknown(f"create under account {org_id}",
                               f"no created contact in the answer {results!r:.300}")
        # Created points are matched by type and value: the answer does not echo patchClientId.
        ids = self._points(ctype).created(_created(results, "contactPoint"), fields)
        return WriteResult(str(new["identity"]), extra={"contactTypeId": ctype, "points": ids})

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        if "contactTypeId" not in extra:  # a link without our extra: read the points once
            detail = self.fetch(f"{self.api}Contact/{int(remote_id)}/Detail", f"contact {remote_id}")
            extra = self.record(detail["instance"]).extra
        ctype = int(extra["contactTypeId"])
        points: dict[str, int] = {k: int(v) for k, v in extra.get("points", {}).items()}
        body: dict[str, Any] = {v: changed[k] for k, v in SCALARS.items() if k in changed}
        if items := self._point_items(ctype, changed, points, f"update {remote_id}"):
            body["details"] = {"contactPoints": {"items": items}}
        points = {k: pid for k, pid in points.items() if changed.get(k) != ""}  # emptied: deleted
        if body:
            creates = any(i["patchType"] == "create" for i in items)
            results = self._patch(f"Contact/{int(remote_id)}", body, f"contact {remote_id}",
                                  idempotent=not creates)
            points.update(self._points(ctype).created(_created(results, "contactPoint"), changed))
        return WriteResult(remote_id, extra={"contactTypeId": ctype, "points": points})

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        self.open()
        body = {"contacts": {"items": [{"patchType": "delete", "identity": int(remote_id)}]}}
        self.remove("PATCH", f"{self.api}Account/{int(org_id)}", body, what=f"contact {remote_id}")


CONNECTOR = LogisenseConnector
from_config = LogisenseConnector.from_config
