"""Builders of test data and small fakes shared across tiers (unit, integration,
reliability, security, e2e) and by bench/: pure, no I/O. Fakes that only one unit-test
folder uses stay next to those tests."""
