"""Alembic migrations of the syncd store (shipped inside the package as ``syncd.migrations``)."""
