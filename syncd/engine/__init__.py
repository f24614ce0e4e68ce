"""The sync engine: poll → plan (pure) → push."""
