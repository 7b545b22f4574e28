from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.cloudevents import CloudEvent, EnvelopeError
from shared.contracts.matching import MatchEnded
from shared.contracts.reference import CombinedAuthority
from shared.contracts.registry import registry_for
from shared.topics import MATCHING_MATCHES, dead_letter_topic


def _event() -> CloudEvent[MatchEnded]:
    return CloudEvent(
        data=MatchEnded(
            match_id="m1",
            volunteer_id="v1",
            participant="p1",
            combined_authority=CombinedAuthority.WEST_MIDLANDS,
            local_authority="E08000025",
            reason="moved away",
            meetings_count=4,
            ended_at=datetime(2026, 3, 1, tzinfo=UTC),
        ),
        source="/commonground/matching",
    )


def test_binary_mode_headers_and_json_body_round_trip() -> None:
    event = _event()
    headers = event.headers()
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == "org.commonground.MatchEnded.v1"
    assert headers["content-type"] == "application/json"
    assert b'"meetings_count":4' in event.body()
    decoded = registry_for(MATCHING_MATCHES).decode(
        event.body(), {k: v.encode() for k, v in headers.items()}
    )
    assert decoded.id == event.id
    assert decoded.data == event.data
    assert decoded.time == event.time


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"{}", {}, "missing header"),
        (b"not json", {"ce_type": "org.commonground.MatchEnded.v1"}, "does not match its schema"),
        (b"{}", {"ce_type": "org.commonground.Nope.v1"}, "unknown event type"),
        (b"{}", {"ce_type": "org.commonground.MatchEnded.v9"}, "unknown event type"),
    ],
)
def test_poison_records_raise_envelope_error(
    body: bytes, headers: dict[str, str], message: str
) -> None:
    base = {"ce_id": "1", "ce_source": "/x", "ce_specversion": "1.0"} if headers else {}
    with pytest.raises(EnvelopeError, match=message):
        registry_for(MATCHING_MATCHES).decode(body, {**base, **headers})


def test_event_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        _event().data.reason = "changed"  # type: ignore[misc]


def test_dead_letter_topic_naming() -> None:
    assert dead_letter_topic("enrolment.events.v1") == "enrolment.events.v1.dlq"
    assert dead_letter_topic("x.dlq") == "x.dlq"


def test_schema_errors_name_fields_but_never_echo_values() -> None:
    body = (
        b'{"match_id": "m1", "volunteer_id": "v1", "participant": "p1",'
        b' "combined_authority": "SECRET-VALUE-123", "local_authority": "E08000025",'
        b' "reason": "x", "ended_at": "not-a-date-SECRET"}'
    )
    headers = {
        "ce_id": "1",
        "ce_source": "/x",
        "ce_specversion": "1.0",
        "ce_type": "org.commonground.MatchEnded.v1",
    }
    with pytest.raises(EnvelopeError) as caught:
        registry_for(MATCHING_MATCHES).decode(body, headers)
    message = str(caught.value)
    assert "combined_authority" in message and "ended_at" in message
    assert "SECRET" not in message
    assert caught.value.__cause__ is None
