"""vCard ↔ canonical fields (CONTRACT §8), through vobject.

Reading takes 3.0 and 4.0 alike (vobject parses both; 4.0's ``TEL;VALUE=uri:tel:…``
and ``PREF=1`` are read here).  Writing has two shapes:

* :func:`new_card` — a fresh vCard **3.0**, what every server accepts;
* :func:`apply` — the server's own card with only the mapped properties
  changed: ``N`` (family; given; additional; prefix — additional and suffix
  kept), ``FN``, the ``EMAIL`` and ``TEL`` that reading chose for each field,
  ``TITLE`` and ``ORG``.  Everything else (PHOTO, ADR, NOTE, X-…, grouped
  ``itemN.`` properties, other e-mails and phones) stays as the server held
  it, and so does the card's VERSION.

Which property holds a field is one rule for both directions
(:func:`_chosen`), so an update changes the very property that was read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import vobject

from syncd.contact import Fields

__all__ = ["FIELDS", "Card", "apply", "new_card", "read_card"]

FIELDS = (
    "first_name", "last_name", "salutation", "email", "phone", "mobile", "fax",
    "job_title", "department",
)
"""The canonical fields a card holds (the organization is ``ORG``'s first component)."""

PRODID = "-//syncd//contact sync//EN"


@dataclass(frozen=True, slots=True)
class Card:
    uid: str
    org: str
    """``ORG``'s first component: the organization's parent id in this system."""
    fields: Fields
    version: str


def _types(prop: Any) -> set[str]:
    """TYPE values, lower-cased, commas split (``TYPE=work,voice`` and ``TYPE=WORK;TYPE=VOICE``)."""
    out: set[str] = set()
    for value in prop.params.get("TYPE", []):
        out.update(v.strip().strip('"').lower() for v in str(value).split(",") if v.strip())
    return out


def _preferred(prop: Any) -> bool:
    return "pref" in _types(prop) or bool(prop.params.get("PREF"))


def _is_phone(prop: Any) -> bool:
    return not (_types(prop) - {"work", "voice", "pref"})


def _is_mobile(prop: Any) -> bool:
    return "cell" in _types(prop) and "fax" not in _types(prop)


def _is_fax(prop: Any) -> bool:
    return "fax" in _types(prop)


_TEL: dict[str, Callable[[Any], bool]] = {"phone": _is_phone, "mobile": _is_mobile, "fax": _is_fax}
_TEL_TYPES = {"phone": ["WORK", "VOICE"], "mobile": ["CELL"], "fax": ["FAX"]}


def _chosen(card: Any, name: str) -> Any | None:
    """The property that holds canonical ``name`` (email, phone, mobile, fax), or None.

    Preferred first (``PREF`` / ``TYPE=pref``), then for e-mail a work one,
    then the card's own order.
    """
    if name == "email":
        props = list(card.contents.get("email", []))
        ranked = sorted(range(len(props)), key=lambda i: (not _preferred(props[i]),
                                                          "work" not in _types(props[i]), i))
        return props[ranked[0]] if ranked else None
    props = [p for p in card.contents.get("tel", []) if _TEL[name](p)]
    ranked = sorted(range(len(props)), key=lambda i: (not _preferred(props[i]), i))
    return props[ranked[0]] if ranked else None


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = " ".join(str(v) for v in value if v)
    return " ".join(str(value or "").split())


def _tel_value(prop: Any) -> str:
    value = _text(prop.value)
    return value[4:] if value.lower().startswith("tel:") else value


def _parse(text: str) -> Any:
    card = vobject.readOne(text)
    if card.name != "VCARD":
        raise ValueError(f"expected a VCARD, got {card.name}")
    return card


def read_card(text: str) -> Card:
    """One card's UID, organization and canonical fields; ``ValueError`` when it cannot be read."""
    card = _parse(text)
    uid = _text(card.uid.value) if "uid" in card.contents else ""
    fields: Fields = dict.fromkeys(FIELDS, "")
    if "n" in card.contents:
        name = card.n.value
        fields["last_name"] = _text(name.family)
        fields["first_name"] = _text(name.given)
        fields["salutation"] = _text(name.prefix)
    elif "fn" in card.contents:  # FN only (a card some clients make): split on the last space
        first, _, last = _text(card.fn.value).rpartition(" ")
        fields["first_name"], fields["last_name"] = (first, last) if first else (last, "")
    org = ""
    if "org" in card.contents:
        parts = card.org.value if isinstance(card.org.value, list) else [card.org.value]
        org = _text(parts[0]) if parts else ""
        fields["department"] = _text(parts[1]) if len(parts) > 1 else ""
    if "title" in card.contents:
        fields["job_title"] = _text(card.title.value)
    for name in ("email", "phone", "mobile", "fax"):
        prop = _chosen(card, name)
        if prop is not None:
            fields[name] = _text(prop.value) if name == "email" else _tel_value(prop)
    version = _text(card.version.value) if "version" in card.contents else "3.0"
    return Card(uid, org, fields, version)


def _full_name(fields: Mapping[str, str]) -> str:
    name = " ".join(p for p in (_text(fields.get("first_name")), _text(fields.get("last_name")))
                    if p)
    return name or _text(fields.get("email")) or "(no name)"


def _set_single(card: Any, key: str, value: str | list[str] | None) -> None:
    """Set or remove a single-valued property (TITLE, ORG, FN)."""
    while key in card.contents:
        card.remove(card.contents[key][0])
    if value:
        card.add(key).value = value


def _put(card: Any, name: str, value: str) -> None:
    """Change the property reading chose for ``name``; add one, or remove it when emptied."""
    prop = _chosen(card, name)
    if not value:
        if prop is not None:
            card.remove(prop)
        return
    if prop is None:
        prop = card.add("email" if name == "email" else "tel")
        prop.params["TYPE"] = ["WORK"] if name == "email" else list(_TEL_TYPES[name])
    elif name != "email" and "uri" in [str(v).lower() for v in prop.params.get("VALUE", [])]:
        value = "tel:" + value  # a vCard 4.0 TEL;VALUE=uri keeps its shape
    prop.value = value


def apply(text: str, org: str, desired: Mapping[str, str]) -> str:
    """The server's card with the mapped properties set to ``desired`` (and ``ORG`` to ``org``)."""
    card = _parse(text)
    family = given = additional = prefix = suffix = ""
    if "n" in card.contents:
        old = card.n.value
        additional, suffix = old.additional, old.suffix
        family, given, prefix = old.family, old.given, old.prefix
    if "last_name" in desired:
        family = desired["last_name"]
    if "first_name" in desired:
        given = desired["first_name"]
    if "salutation" in desired:
        prefix = desired["salutation"]
    _set_single(card, "n", None)
    card.add("n").value = vobject.vcard.Name(family=family, given=given, additional=additional,
                                             prefix=prefix, suffix=suffix)
    _set_single(card, "fn", _full_name({"first_name": _text(given), "last_name": _text(family),
                                        "email": desired.get("email", "")}))
    old_org = card.org.value if "org" in card.contents else []
    old_org = old_org if isinstance(old_org, list) else [old_org]
    department = desired.get("department", old_org[1] if len(old_org) > 1 else "")
    rest = old_org[2:] if len(old_org) > 2 else []
    _set_single(card, "org", [org, department, *rest] if department or rest else
                ([org] if org else None))
    if "job_title" in desired:
        _set_single(card, "title", desired["job_title"])
    for name in ("email", "phone", "mobile", "fax"):
        if name in desired:
            _put(card, name, desired[name])
    result: str = card.serialize()
    return result


def new_card(uid: str, org: str, fields: Mapping[str, str]) -> str:
    """A new vCard 3.0 holding ``fields`` under ``org``."""
    card = vobject.vCard()
    card.add("version").value = "3.0"
    card.add("prodid").value = PRODID
    card.add("uid").value = uid
    card.add("fn").value = _full_name(fields)
    return apply(card.serialize(), org, {f: fields.get(f, "") for f in FIELDS})
