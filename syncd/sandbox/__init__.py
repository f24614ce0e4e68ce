"""Simulators of the five vendor APIs, for tests, the demo and trials (``syncd sandbox``)."""
