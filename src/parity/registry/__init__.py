"""Versions (content hashes), the registry store, and what changed between applies."""
