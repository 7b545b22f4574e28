"""Operator tools that work across services (dead-letter inspection and replay)."""
