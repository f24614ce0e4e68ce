"""syncd: keeps the contacts of several SaaS systems in step, in both directions."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
