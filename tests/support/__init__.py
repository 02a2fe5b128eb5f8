"""Reusable test helpers (real services on loopback, started and stopped by fixtures)."""
