"""Masking configured secrets by value, wherever text leaves the process.

Redacting by key name (``password=...``) is not enough: a server that echoes
the request puts the password inside an ordinary error message, and that
message is then logged, printed by ``--json`` and stored as ``last_error``.
So every outgoing text passes through one process-wide :data:`REDACTOR`,
filled with the secrets of the loaded settings (:func:`use_settings`), which
masks each secret in every form a request may carry it:

* as is, and as JSON would escape it inside a string;
* URL-encoded, both ``quote`` (``%20``, path-safe ``/``) and ``quote_plus``
  (``+``, what a form body uses), with percent escapes matched in either case;
* base64 (standard and URL-safe, with and without padding), and base64 of
  ``user:secret`` as HTTP Basic sends it.

Secrets shorter than :data:`MIN_SECRET_LENGTH` characters are not masked: a
two-letter "password" would turn every word containing it into stars and the
logs into noise; such a secret protects nothing anyway.  A secret made only of
the mask character is skipped too, since the mask itself would contain it.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "REDACTOR",
    "HasSecrets",
    "Redactor",
    "encoded_forms",
    "redact",
    "redact_value",
    "use_settings",
]

MASK = "**********"
MIN_SECRET_LENGTH = 4
MIN_HANDED_OUT_LENGTH = 8
"""A token a server hands out shorter than this is a test's stand-in, not a credential."""
HANDED_OUT_KEPT = 32
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_PLAIN = (str, int, float, bool, type(None))


def _b64_forms(raw: str) -> set[str]:
    data = raw.encode()
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(data).decode("ascii")
        forms |= {text, text.rstrip("=")}
    return forms


def encoded_forms(secret: str, *, partners: Iterable[str] = ()) -> set[str]:
    """The strings that give ``secret`` away: itself, URL-encoded, JSON-escaped, base64.

    ``partners`` are the names sent beside it in HTTP Basic (user names,
    client ids): ``base64(partner:secret)`` is masked too.
    """
    forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms |= _b64_forms(secret)
    for partner in partners:
        forms |= _b64_forms(f"{partner}:{secret}")
    return {f for f in forms if f}


def _pattern_of(form: str) -> str:
    """A literal, except that percent escapes match in upper or lower case."""
    parts: list[str] = []
    last = 0
    for match in _PERCENT.finditer(form):
        parts.append(re.escape(form[last:match.start()]))
        parts.append("%" + "".join(f"[{c.upper()}{c.lower()}]" for c in match.group()[1:]))
        last = match.end()
    parts.append(re.escape(form[last:]))
    return "".join(parts)


class Redactor:
    """Masks a set of secrets, in all their encoded forms, in any text.

    Thread-safe: the pattern is replaced whole, never mutated, so a log call
    on another thread sees either the old set or the new one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self._configured: frozenset[str] = frozenset()
        self._handed_out: deque[str] = deque(maxlen=HANDED_OUT_KEPT)

    def set_secrets(
        self, secrets: Iterable[str], *, partners: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        """Mask exactly these secrets from now on (the previous set is forgotten).

        ``partners`` maps a secret to the names sent beside it in HTTP Basic.
        Credentials handed out at run time (:meth:`remember`) stay masked.
        """
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_LENGTH or not secret.strip(MASK[0]):
                continue
            forms |= encoded_forms(secret, partners=(partners or {}).get(secret, ()))
        with self._lock:
            self._configured = frozenset(forms)
            self._compile()

    def remember(self, secret: str) -> None:
        """Mask a credential a system handed out at run time too (an access token, a session id).

        It is no configured secret, yet a server that echoes our request puts it
        in an error message like any other.  The last :data:`HANDED_OUT_KEPT` are kept.
        """
        if len(secret) < MIN_HANDED_OUT_LENGTH or not secret.strip(MASK[0]):
            return
        with self._lock:
            if secret not in self._handed_out:
                self._handed_out.append(secret)
                self._compile()

    def _compile(self) -> None:
        """The one pattern of every form of every secret (called under the lock)."""
        forms = set(self._configured)
        for secret in self._handed_out:
            forms |= encoded_forms(secret)
        # Longest first, so a padded base64 form is masked whole, not its unpadded prefix.
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        self._pattern = re.compile("|".join(_pattern_of(f) for f in ordered)) if ordered else None

    def clear(self) -> None:
        with self._lock:
            self._handed_out.clear()
        self.set_secrets(())

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        """``text`` with every secret masked.

        Repeated until nothing matches: a mask next to ordinary text can
        rebuild a secret that ends in the mask's own character (``ab**``).
        Each round removes at least one character that is not a star, so it
        ends.
        """
        pattern = self._pattern
        if pattern is None or not text:
            return text
        count = 1
        while count:
            text, count = pattern.subn(MASK, text)
        return text

    def value(self, value: Any) -> Any:
        """Any loggable value with secrets masked in every string it holds.

        Dicts (keys too), lists and tuples are walked; a ``SecretStr`` is
        masked outright; another object is replaced by its masked ``str()``
        only when that text held a secret, so ordinary values keep their type.
        """
        if isinstance(value, str):
            return self(value)
        if isinstance(value, SecretStr):
            return MASK
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, bytes):
            text = value.decode("utf-8", "replace")
            masked = self(text)
            return masked.encode() if masked != text else value
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        if self._pattern is None:
            return value
        text = str(value)
        masked = self(text)
        return masked if masked != text else value


REDACTOR = Redactor()
"""The process-wide redactor: logs, store and CLI output all go through it."""


def redact(text: str) -> str:
    """``text`` with every configured secret masked."""
    return REDACTOR(text)


def redact_value(value: Any) -> Any:
    """A nested value (dicts, lists, strings) with every configured secret masked."""
    return REDACTOR.value(value)


class HasSecrets(Protocol):
    """What :func:`use_settings` needs; a Protocol keeps this module free of ``syncd.config``."""

    def secrets(self) -> Mapping[str, frozenset[str]]: ...


def use_settings(settings: HasSecrets) -> None:
    """Mask the secrets of these settings from now on (called when settings are loaded)."""
    found = settings.secrets()
    REDACTOR.set_secrets(found, partners=found)
