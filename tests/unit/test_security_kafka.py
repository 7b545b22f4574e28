"""Broker and database connection security comes from configuration, end to end.

* Every Kafka client the services, shared plumbing and ops tools construct takes the
  configured security (a source scan: a new client without it fails here).
* SASL/SCRAM over TLS settings become the FastStream security object and the plain
  aiokafka keyword arguments used by the dead-letter producer, the lag monitor, the
  topic admin, the rebuild consumer and the DLQ tool.
* Secrets (MongoDB URL with credentials, Kafka password, keys) never show in a
  settings repr, and can come from files (COMMONGROUND_SECRETS_DIR or /run/secrets).
"""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import certifi
import pytest
from faststream.security import SASLScram512

from services.enrolment.settings import EnrolmentSettings
from services.matching.settings import MatchingSettings
from shared.kafka import aiokafka_security_kwargs
from shared.settings import SECRETS_DIR_ENV

REPO = Path(__file__).resolve().parents[2]
CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient", "KafkaBroker"}
SCANNED = ("services", "shared", "ops")


def _client_calls() -> list[tuple[str, int, str]]:
    """(file, line, source of the enclosing function) of every Kafka client built."""
    calls = []
    for package in SCANNED:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for func in ast.walk(tree):
                if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(func):
                    if isinstance(node, ast.Call):
                        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                        if name in CLIENTS:
                            where = str(path.relative_to(REPO))
                            calls.append((where, node.lineno, ast.unparse(func)))
    return calls


def test_every_kafka_client_is_built_with_the_configured_security() -> None:
    calls = _client_calls()
    assert len(calls) >= 6  # broker, DLQ producer, lag admin + consumer, topic admin, ...
    for where, line, function in calls:
        assert "security" in function, f"{where}:{line} builds a Kafka client without security"


@pytest.fixture
def sasl_ssl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONGROUND_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("COMMONGROUND_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("COMMONGROUND_KAFKA__SASL_USERNAME", "matching")
    monkeypatch.setenv("COMMONGROUND_KAFKA__SASL_PASSWORD", "kafka-password-not-logged")
    monkeypatch.setenv("COMMONGROUND_KAFKA__SSL_CAFILE", certifi.where())
    monkeypatch.setenv(
        "COMMONGROUND_MONGODB_URL",
        "mongodb://matching:mongo-password-not-logged@db:27017/?tls=true&authSource=admin",
    )


@pytest.mark.usefixtures("sasl_ssl")
def test_sasl_scram_over_tls_reaches_every_client_kind() -> None:
    settings = MatchingSettings()
    security = settings.kafka_security()
    assert isinstance(security, SASLScram512)
    assert security.use_ssl and isinstance(security.ssl_context, ssl.SSLContext)
    kwargs = aiokafka_security_kwargs(security)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "matching"
    assert kwargs["ssl_context"] is security.ssl_context
    shown = repr(settings) + str(settings.model_dump())
    assert "kafka-password-not-logged" not in shown
    assert "mongo-password-not-logged" not in shown


def test_sasl_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONGROUND_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ValueError, match="sasl_username"):
        MatchingSettings().kafka_security()


def test_secrets_are_read_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "enrolment_pseudonym_key").write_text("pseudonym-key-from-a-file-0123456789")
    (tmp_path / "commonground_learner_key_wrapping_keys").write_text(
        "w9:wrapping-key-from-a-file-0123456789"
    )
    (tmp_path / "commonground_mongodb_url").write_text("mongodb://u:p@db:27017/?tls=true")
    monkeypatch.setenv(SECRETS_DIR_ENV, str(tmp_path))
    settings = EnrolmentSettings()
    assert settings.pseudonym_key.get_secret_value() == "pseudonym-key-from-a-file-0123456789"
    assert settings.key_ring().current == "w9"
    assert settings.mongodb_url.get_secret_value() == "mongodb://u:p@db:27017/?tls=true"
    # The environment wins over files.
    monkeypatch.setenv("ENROLMENT_PSEUDONYM_KEY", "from-the-environment-0123456789")
    assert EnrolmentSettings().pseudonym_key.get_secret_value().startswith("from-the-env")


def test_production_refuses_the_development_key_rings(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.enrolment.app import key_rings_for

    monkeypatch.setenv("ENROLMENT_ALLOW_DEV_SECRETS", "false")
    monkeypatch.setenv("ENROLMENT_PSEUDONYM_KEY", "a-real-pseudonym-key-0123456789abcdef")
    with pytest.raises(RuntimeError, match="ENROLMENT_DATA_KEY_ENCRYPTION_KEYS"):
        key_rings_for(EnrolmentSettings())
    monkeypatch.setenv("ENROLMENT_DATA_KEY_ENCRYPTION_KEYS", "k1:a-real-master-key-0123456789")
    monkeypatch.setenv("COMMONGROUND_LEARNER_KEY_WRAPPING_KEYS", "w1:a-real-wrapping-key-01234")
    master, platform = key_rings_for(EnrolmentSettings())
    assert (master.current, platform.current) == ("k1", "w1")
