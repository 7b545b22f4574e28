"""Contracts (event schemas, topic names) and plumbing (settings, envelope, telemetry).

Nothing here knows about enrolments, matches or reports as business concepts beyond
their published shape: business rules live in the services.
"""
