"""The operator's console (CONTRACT §7): ``syncd web``, and ``syncd run`` with ``[web] enabled``."""

from __future__ import annotations

from syncd.web.app import create_app
from syncd.web.server import Console, serve

__all__ = ["Console", "create_app", "serve"]
