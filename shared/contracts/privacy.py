"""Value types of crypto-shredding carried on events (see shared/crypto.py, docs/privacy.md).

Binary values are base64url without padding.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SealedBox(BaseModel):
    """Personal fields encrypted (AES-256-GCM) under one learner's data key. The
    associated data binds it to that learner's pseudonym and ``key_id``: once the data
    key is erased the box can never be opened again."""

    model_config = ConfigDict(frozen=True)

    alg: str = Field(default="A256GCM", description="AEAD algorithm (JOSE name).")
    key_id: str = Field(description="Id of the learner's data key that sealed this box.")
    nonce: str = Field(description="96-bit nonce, base64url.")
    ciphertext: str = Field(description="Ciphertext with its 128-bit tag, base64url.")


class WrappedKey(BaseModel):
    """A learner data key encrypted (AES-256-GCM) under a platform key-wrapping key."""

    model_config = ConfigDict(frozen=True)

    wrapping_key_id: str = Field(description="Which key of the platform key ring wrapped it.")
    nonce: str
    ciphertext: str
