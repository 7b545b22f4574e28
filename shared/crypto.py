"""Crypto-shredding plumbing: per-learner data keys, sealed boxes, key wrapping.

Personal fields of an event travel only inside a :class:`~shared.contracts.privacy.SealedBox`
encrypted (AES-256-GCM) under the learner's own *data key* (DEK). The enrolment service
keeps every DEK in its database wrapped under its master key, and hands DEKs to the
consuming services on ``enrolment.events.v1`` itself (``LearnerKeyIssued``, same key and
so the same partition as the learner's events, always before them), wrapped under the
platform *key-wrapping key* (a key ring from settings). Consumers keep the wrapped DEK
in their own database. Erasure deletes the DEK everywhere (``LearnerErased``); the
wrapped copy left in the immutable log becomes useless when the wrapping key it was
wrapped under is retired (see docs/privacy.md).

Every ciphertext is bound (AEAD associated data) to the learner it belongs to, so a box
or a wrapped key cannot be moved to another learner.

Pure functions and small value types only; storage lives in the services.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from shared.contracts.enrolment import SealedPersonalData
from shared.contracts.privacy import SealedBox, WrappedKey

ALGORITHM = "A256GCM"
KEY_BYTES = 32
NONCE_BYTES = 12


class CryptoError(ValueError):
    """A box or wrapped key cannot be opened (wrong key, tampered, or not ours)."""


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(secret: str, purpose: str) -> bytes:
    """A 256-bit key from a configured secret (any high-entropy string), separated by
    ``purpose`` so one secret never serves two uses."""
    return hmac.new(secret.encode(), f"commonground/{purpose}".encode(), hashlib.sha256).digest()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def new_key_id(prefix: str = "dk") -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> tuple[str, str]:
    nonce = os.urandom(NONCE_BYTES)
    return b64e(nonce), b64e(AESGCM(key).encrypt(nonce, plaintext, aad))


def _open(key: bytes, nonce: str, ciphertext: str, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(b64d(nonce), b64d(ciphertext), aad)
    except (InvalidTag, ValueError) as exc:
        raise CryptoError("cannot open: wrong key or tampered data") from exc


def box_aad(learner: str, key_id: str) -> bytes:
    return f"commonground/sealed/v1|{learner}|{key_id}".encode()


def wrap_aad(learner: str, key_id: str, wrapping_key_id: str) -> bytes:
    return f"commonground/learner-key/v1|{learner}|{key_id}|{wrapping_key_id}".encode()


def seal(data_key: bytes, key_id: str, learner: str, plaintext: bytes) -> SealedBox:
    nonce, ciphertext = _seal(data_key, plaintext, box_aad(learner, key_id))
    return SealedBox(alg=ALGORITHM, key_id=key_id, nonce=nonce, ciphertext=ciphertext)


def open_box(data_key: bytes, learner: str, box: SealedBox) -> bytes:
    if box.alg != ALGORITHM:
        raise CryptoError(f"unsupported algorithm {box.alg!r}")
    return _open(data_key, box.nonce, box.ciphertext, box_aad(learner, box.key_id))


@dataclass(frozen=True)
class KeyRing:
    """Named 256-bit keys; the first one wraps, every one unwraps (so a wrapping key can
    be replaced with an overlap, then retired)."""

    keys: Mapping[str, bytes] = field(repr=False)
    current: str

    @classmethod
    def parse(cls, value: SecretStr | str, purpose: str) -> KeyRing:
        """``"kid1:secret1,kid2:secret2"`` (first = current). Secrets are any
        high-entropy strings; each is stretched with :func:`derive_key`."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            kid, sep, secret = part.partition(":")
            kid = kid.strip()
            if not sep or not kid or len(secret.strip()) < 16:
                raise ValueError(
                    "a key ring is 'id:secret[,id:secret...]' with secrets of >= 16 characters"
                )
            keys[kid] = derive_key(secret.strip(), purpose)
            order.append(kid)
        if not order:
            raise ValueError("the key ring is empty")
        return cls(keys=keys, current=order[0])

    def wrap(self, learner: str, key_id: str, data_key: bytes) -> WrappedKey:
        nonce, ciphertext = _seal(
            self.keys[self.current], data_key, wrap_aad(learner, key_id, self.current)
        )
        return WrappedKey(wrapping_key_id=self.current, nonce=nonce, ciphertext=ciphertext)

    def unwrap(self, learner: str, key_id: str, wrapped: WrappedKey) -> bytes:
        kek = self.keys.get(wrapped.wrapping_key_id)
        if kek is None:
            raise CryptoError(
                f"wrapping key {wrapped.wrapping_key_id!r} is not (or no longer) held"
            )
        return _open(
            kek,
            wrapped.nonce,
            wrapped.ciphertext,
            wrap_aad(learner, key_id, wrapped.wrapping_key_id),
        )


def seal_personal(
    data_key: bytes, key_id: str, learner: str, data: SealedPersonalData
) -> SealedBox:
    return seal(data_key, key_id, learner, data.model_dump_json(exclude_defaults=True).encode())


def open_personal(data_key: bytes, learner: str, box: SealedBox) -> SealedPersonalData:
    return SealedPersonalData.model_validate_json(open_box(data_key, learner, box))
