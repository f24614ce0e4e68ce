"""structlog setup: JSON lines when stderr is not a TTY, a readable console when it is.

Every event passes :func:`redact_secrets` just before it is rendered, so no
secret reaches a log line, whoever logged it: a ``SecretStr`` or a value under
a key that names a secret is masked whole, and every configured secret is
masked by value (``syncd.redact``) in every string of the event — the message,
nested dicts and lists, and the formatted traceback.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from pydantic import SecretStr

from syncd.redact import MASK, redact_value

__all__ = ["configure_logging", "get_logger", "redact_secrets"]

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|authorization|cookie|api[_-]?key", re.I)
REDACTED = MASK


def _redact(key: str, value: Any) -> Any:
    """By key name first (a secret not in the settings, say a fresh token), then by value."""
    if isinstance(value, SecretStr):
        return REDACTED
    if _SECRET_KEY.search(key) and isinstance(value, str | bytes) and value:
        return REDACTED
    if isinstance(value, dict):
        return {redact_value(k): _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(key, v) for v in value]
    return redact_value(value)


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        value = event_dict[key]
        # The message itself is never masked by key ("token_renewed"), only by value.
        event_dict[key] = redact_value(value) if key == "event" else _redact(key, value)
    return event_dict


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # After format_exc_info, so an exception's text is masked as well.
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "syncd") -> Any:
    return structlog.get_logger(name)
