"""structlog setup: JSON lines when stderr is not a TTY, a readable console when it is.

Every event passes :func:`redact_secrets` first, so a ``SecretStr`` — or a
value under a key that names a secret — never reaches a log line, whoever
logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from pydantic import SecretStr

__all__ = ["configure_logging", "get_logger", "redact_secrets"]

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|authorization|cookie|api[_-]?key", re.I)
REDACTED = "**********"


def _redact(key: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if _SECRET_KEY.search(key) and isinstance(value, str | bytes) and value:
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(key, v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key == "event":
            continue
        event_dict[key] = _redact(key, event_dict[key])
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
            redact_secrets,
            structlog.processors.format_exc_info,
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
