"""Who produced each record on ``enrolment.inbound.v1``: signature checks before intake.

The record key only *claims* a provider; the signature headers prove it
(:mod:`shared.record_signing`). A record passes when its ``cg_key_id`` names a live API
key of a provider, the Ed25519 signature verifies under that key's stored public key,
the signed timestamp lies within ``inbound_signature_window_s`` of the record's Kafka
timestamp, and the record key is that provider's UKPRN. Anything else becomes an
``unauthenticated`` rejection: nothing from the record (not even its body) is parsed or
stored, the refusal is published on ``enrolment.rejected.v1``, counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from services.enrolment.domain import FieldError
from shared.auth import ApiKeyStore, Role
from shared.contracts.enrolment import RejectionCode
from shared.record_signing import SignatureFailure, SignedClaim, parse_claim, verify_signature
from shared.telemetry import Telemetry

logger = logging.getLogger(__name__)

_MESSAGES = {
    SignatureFailure.UNSIGNED: "the record carries no signature (headers cg_key_id, "
    "cg_timestamp, cg_signature); records must be signed with the provider's credential",
    SignatureFailure.MALFORMED: "the signature headers are incomplete or malformed",
    SignatureFailure.UNKNOWN_KEY: "cg_key_id names no live provider key (unknown or revoked)",
    SignatureFailure.BAD_SIGNATURE: "the signature does not verify over this record",
    SignatureFailure.STALE: "the signed timestamp is outside the accepted window of the "
    "record's timestamp (replayed or clock skew)",
    SignatureFailure.PROVIDER_MISMATCH: "the record key is not the UKPRN of the provider "
    "whose key signed it",
}


def unauthenticated(reason: SignatureFailure) -> FieldError:
    return FieldError(RejectionCode.UNAUTHENTICATED, "", _MESSAGES[reason], reason.value)


@dataclass(frozen=True)
class Verified:
    ukprn: str


class InboundAuthenticator:
    def __init__(
        self,
        keys: ApiKeyStore,
        telemetry: Telemetry,
        *,
        window_s: float,
        clock_ms: Callable[[ConsumerRecord[Any, Any]], int] | None = None,
    ) -> None:
        self._keys = keys
        self._window_ms = int(window_s * 1000)
        self._record_time = clock_ms or (lambda record: int(record.timestamp))
        self._failures = telemetry.counter(
            "commonground_inbound_unauthenticated_total",
            "Records on enrolment.inbound.v1 refused because their producer could not be "
            "authenticated, by reason.",
            ("reason",),
        )

    async def verify(
        self, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> list[Verified | FieldError]:
        """One outcome per record, in order."""
        claims = [parse_claim(r.headers) for r in records]
        known = await self._keys.signing_keys(
            [c.key_id for c in claims if isinstance(c, SignedClaim)]
        )
        out: list[Verified | FieldError] = []
        for record, claim in zip(records, claims, strict=True):
            failure = self._check(record, claim, known)
            if isinstance(failure, Verified):
                out.append(failure)
                continue
            self._failures.labels(failure.value).inc()
            logger.warning(
                "inbound record refused: %s (%s/%s/%s)",
                failure.value,
                record.topic,
                record.partition,
                record.offset,
            )
            out.append(unauthenticated(failure))
        return out

    def _check(
        self,
        record: ConsumerRecord[Any, Any],
        claim: SignedClaim | SignatureFailure,
        known: dict[str, Any],
    ) -> Verified | SignatureFailure:
        if isinstance(claim, SignatureFailure):
            return claim
        entry = known.get(claim.key_id)
        if entry is None:
            return SignatureFailure.UNKNOWN_KEY
        principal, public_key = entry
        key: bytes = record.key or b""
        value: bytes = record.value or b""
        if not verify_signature(public_key, claim, topic=record.topic, key=key, value=value):
            return SignatureFailure.BAD_SIGNATURE
        if abs(self._record_time(record) - claim.timestamp_ms) > self._window_ms:
            return SignatureFailure.STALE
        if principal.role is not Role.PROVIDER or not principal.ukprn:
            return SignatureFailure.UNKNOWN_KEY
        if key != principal.ukprn.encode():
            return SignatureFailure.PROVIDER_MISMATCH
        return Verified(principal.ukprn)
