"""Canonical contact fields and their normalisers (CONTRACT §4).

A canonical record is a plain ``dict[str, str]`` keyed by the names in
:data:`FIELDS`; the empty string means "no value".  Systems compare values
after :func:`normalise` so that ``Jane@Example.com`` and ``jane@example.com``,
or ``555.555.5555`` and ``(555) 555-5555``, are the same value and never cause
a write.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

__all__ = [
    "FIELDS",
    "Fields",
    "clean",
    "content_hash",
    "differs",
    "email_problem",
    "normalise",
    "phone_digits",
    "phone_e164",
    "project",
]

FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "mobile",
    "fax",
    "job_title",
    "salutation",
    "department",
)
PHONE_FIELDS = frozenset({"phone", "mobile", "fax"})

Fields = dict[str, str]

_NON_DIGITS = re.compile(r"\D+")


# str.translate drops every ASCII non-digit in one C call; the regex is the fallback
# for the rare value with other characters left over.
_DROP_ASCII_NON_DIGITS = {c: None for c in range(128) if not chr(c).isdigit()}


def phone_digits(value: str) -> str:
    """Phones compare on their digits only (CONTRACT §4)."""
    digits = value.translate(_DROP_ASCII_NON_DIGITS)
    if digits and not digits.isascii():
        return _NON_DIGITS.sub("", digits)
    return digits


@lru_cache(maxsize=65536)
def phone_e164(value: str, region: str = "US") -> str:
    """A phone as first-sync matching compares it: E.164 when it parses as a possible
    number (``region`` for numbers without a country code), else its digits; "" when
    too short to identify anyone.  Change detection still compares digits (§4)."""
    digits = phone_digits(value)
    if len(digits) < 6:
        return ""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return digits
    if not phonenumbers.is_possible_number(number):
        return digits
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=65536)
def email_problem(value: str) -> str | None:
    """Why ``value`` is not a usable email address (syntax only, no DNS), or None."""
    if not value:
        return None
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"not a valid email address ({exc})"
    return None


def normalise(field: str, value: str | None) -> str:
    """The comparison form of one value: what decides "changed or not"."""
    if not value:
        return ""
    if field in PHONE_FIELDS:
        return phone_digits(value)
    text = " ".join(value.split())
    if field == "email":
        return text.casefold()
    return text


def clean(fields: Mapping[str, str | None], allowed: Iterable[str] = FIELDS) -> Fields:
    """Keep the allowed fields, with ``None`` turned into "" and outer spaces removed."""
    return {f: (fields.get(f) or "").strip() for f in allowed}


def differs(field: str, a: str | None, b: str | None) -> bool:
    return normalise(field, a) != normalise(field, b)


def project(fields: Mapping[str, str], allowed: Iterable[str]) -> Fields:
    """The part of a golden record one system can hold."""
    return {f: fields.get(f, "") for f in allowed}


def content_hash(fields: Mapping[str, str]) -> str:
    """A stable hash of the normalised values, so a re-seen record is recognised."""
    norm = {f: normalise(f, v) for f, v in sorted(fields.items())}
    raw = json.dumps(norm, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()
