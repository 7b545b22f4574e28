"""Reporting's pure logic: projection of events into read models, measures, and
statistical disclosure control. No I/O here."""
