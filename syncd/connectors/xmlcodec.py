"""XML both ways for the APIs that speak it: parsed only through defusedxml, escaped on the way out.

No DTD, entity or external reference is ever expanded: a server sending one
is hostile, not flaky, and unusable this cycle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from syncd.errors import BadAnswer, SystemUnavailable

__all__ = ["element_text", "error_texts", "parse_xml", "unsendable", "xml_document"]

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def parse_xml(content: bytes | str, *, label: str, system: str) -> Any:
    """Parse one answer; a refused construct or a malformed document is our error."""
    try:
        return SafeET.fromstring(content, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise SystemUnavailable(f"{label}: refused an XML answer carrying "
                                f"{type(exc).__name__}", system=system) from None
    except SafeET.ParseError as exc:
        raise BadAnswer(f"{label}: answer is not well-formed XML ({exc})", system=system) from None


def element_text(element: Any) -> str:
    """An element's value; ``nil="true"``, ``<x/>`` and ``<x></x>`` all mean none."""
    if element is None or element.get("nil") == "true":
        return ""
    return str(element.text or "").strip()


def error_texts(text: str, *, system: str) -> str | None:
    """The ``<error>`` texts of a Rails-style ``<errors>`` answer, joined; None for anything else."""
    if not text.startswith("<"):
        return None
    try:
        root = parse_xml(text, label=system, system=system)
    except (BadAnswer, SystemUnavailable):
        return None
    if root.tag != "errors":
        return None
    return "; ".join((e.text or "").strip() for e in root.iter("error")) or None


def unsendable(value: str) -> str | None:
    """The first character XML 1.0 cannot carry, as ``U+XXXX``, or None."""
    bad = _NOT_XML.search(value)
    return f"U+{ord(bad.group()):04X}" if bad else None


def xml_document(root: str, elements: Iterable[tuple[str, str, str]]) -> str:
    """``<root><tag attrs>value</tag>…</root>`` from (tag, attributes, value), escaped."""
    inner = "".join(
        f"<{tag}{' ' + attrs if attrs else ''}>{value.translate(_ESCAPES)}</{tag}>"
        for tag, attrs, value in elements
    )
    return f"<{root}>{inner}</{root}>"
