from __future__ import annotations

import pytest

from services.enrolment.settings import EnrolmentSettings
from services.reporting.settings import ReportingSettings


def test_service_prefix_wins_over_platform_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS", "tcp://shared:9092")
    monkeypatch.setenv("ENROLMENT_KAFKA_BOOTSTRAP_SERVERS", "own:9092")
    assert EnrolmentSettings().kafka_bootstrap_servers == "own:9092"
    assert ReportingSettings().kafka_bootstrap_servers == "shared:9092"


def test_defaults_per_service() -> None:
    assert EnrolmentSettings().http_port == 8001
    assert ReportingSettings().database_name == "cg_reporting"
    assert ReportingSettings().group_id == "reporting"


def test_sasl_scram_over_tls_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONGROUND_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("COMMONGROUND_KAFKA__SASL_USERNAME", "svc")
    monkeypatch.setenv("COMMONGROUND_KAFKA__SASL_PASSWORD", "s3cret")
    security = EnrolmentSettings().kafka_security()
    assert type(security).__name__ == "SASLScram512"
    assert security is not None and security.use_ssl
    assert "s3cret" not in repr(EnrolmentSettings())
