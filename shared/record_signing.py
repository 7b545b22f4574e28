"""Per-record signatures on ``enrolment.inbound.v1``: who produced each record.

Kafka ACLs decide who may write to a topic, not what a record's key says, so the record
key alone cannot name the provider. Each record therefore carries a signature made with
the provider's own credential (docs/security.md, "Kafka intake"):

* The provider's **signing key** is an Ed25519 key derived from its API key:
  ``seed = HMAC-SHA256(api_key, "commonground/kafka-record-signing/v1")``. The provider
  needs no second secret; the platform stores only the *public* key next to the API
  key's hash (``shared.auth.ApiKeyStore``), so a copy of the database cannot forge
  records. Rotating or revoking the API key rotates or revokes the signing key with it.
* Headers: ``cg_key_id`` (SHA-256 hex of the API key, the stored key hash: not a
  secret), ``cg_timestamp`` (Unix milliseconds when signed) and ``cg_signature``
  (base64url Ed25519 signature) over :func:`signed_bytes`: a domain tag, the topic, the
  record key, the key id, the timestamp and the SHA-256 of the value. Any change to
  any of them breaks the signature.
* Replay: the signed timestamp must lie within a window of the record's own Kafka
  timestamp (set by the broker under ``LogAppendTime``), so a captured record cannot be
  produced again later; inside the window a replay is just a resubmission, which intake
  answers idempotently.

Pure functions; the lookup of public keys is the consumer's business.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_ID_HEADER = "cg_key_id"
TIMESTAMP_HEADER = "cg_timestamp"
SIGNATURE_HEADER = "cg_signature"
_PURPOSE = b"commonground/kafka-record-signing/v1"
_DOMAIN = "commonground/inbound-record/v1"


class SignatureFailure(StrEnum):
    """Why a record's producer could not be established (bounded: a metric label)."""

    UNSIGNED = "unsigned"
    MALFORMED = "malformed_signature"
    UNKNOWN_KEY = "unknown_signing_key"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale_signature"
    PROVIDER_MISMATCH = "provider_mismatch"


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id_for(api_key: str) -> str:
    """The id sent in ``cg_key_id``: the stored hash of the API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def signing_key_for(api_key: str) -> Ed25519PrivateKey:
    seed = hmac.new(api_key.encode(), _PURPOSE, hashlib.sha256).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_for(api_key: str) -> str:
    """The verifier stored at key issuance (base64url raw Ed25519 public key)."""
    raw = signing_key_for(api_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _b64e(raw)


def signed_bytes(topic: str, key: bytes, key_id: str, timestamp_ms: int, value: bytes) -> bytes:
    return "\n".join(
        (
            _DOMAIN,
            topic,
            key.hex(),
            key_id,
            str(timestamp_ms),
            hashlib.sha256(value).hexdigest(),
        )
    ).encode()


def sign_record(
    api_key: str, topic: str, key: bytes, value: bytes, *, timestamp_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """The headers a provider adds to a record it produces (with any of its own)."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    key_id = key_id_for(api_key)
    signature = signing_key_for(api_key).sign(signed_bytes(topic, key, key_id, ts, value))
    return [
        (KEY_ID_HEADER, key_id.encode()),
        (TIMESTAMP_HEADER, str(ts).encode()),
        (SIGNATURE_HEADER, _b64e(signature).encode()),
    ]


@dataclass(frozen=True)
class SignedClaim:
    """The signature headers of one record, parsed (not yet verified)."""

    key_id: str
    timestamp_ms: int
    signature: bytes


def parse_claim(headers: Sequence[tuple[str, bytes]] | None) -> SignedClaim | SignatureFailure:
    found = {
        k: v for k, v in headers or () if k in (KEY_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
    }
    if not found:
        return SignatureFailure.UNSIGNED
    try:
        key_id = found[KEY_ID_HEADER].decode("ascii")
        timestamp_ms = int(found[TIMESTAMP_HEADER].decode("ascii"))
        signature = _b64d(found[SIGNATURE_HEADER].decode("ascii"))
    except (KeyError, ValueError, UnicodeDecodeError, binascii.Error):
        return SignatureFailure.MALFORMED
    if len(key_id) != 64 or len(signature) != 64:
        return SignatureFailure.MALFORMED
    return SignedClaim(key_id, timestamp_ms, signature)


def verify_signature(
    public_key: str,
    claim: SignedClaim,
    *,
    topic: str,
    key: bytes,
    value: bytes,
) -> bool:
    try:
        verifier = Ed25519PublicKey.from_public_bytes(_b64d(public_key))
        verifier.verify(
            claim.signature, signed_bytes(topic, key, claim.key_id, claim.timestamp_ms, value)
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
