"""Scorer weights per combined authority, read from ``weights.toml``."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.contracts.reference import CombinedAuthority


class Weights(BaseModel):
    """Scorer weights for one combined authority (see ``weights.toml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ethnicity_group: float = Field(default=3.0, ge=0)
    religion: float = Field(default=2.0, ge=0)
    country_of_birth: float = Field(default=2.0, ge=0)
    age_band: float = Field(default=1.0, ge=0)
    base: float = Field(default=1.0, ge=0)
    shared_slot: float = Field(default=1.0, ge=0)
    max_shared_slots: int = Field(default=3, ge=1)
    shared_interest: float = Field(default=0.5, ge=0)
    max_shared_interests: int = Field(default=4, ge=0)
    shared_language: float = Field(default=0.5, ge=0)
    same_local_authority: float = Field(default=2.0, ge=0)
    neighbouring_local_authority: float = Field(default=0.0, ge=0)
    waiting_per_day: float = Field(default=0.25, ge=0)

    @model_validator(mode="after")
    def _same_borough_preferred(self) -> Weights:
        if self.same_local_authority < self.neighbouring_local_authority:
            raise ValueError(
                "same_local_authority must be >= neighbouring_local_authority "
                "(the same borough is preferred over a neighbouring one)"
            )
        return self


@dataclass(frozen=True)
class WeightsBook:
    """Default weights plus per-combined-authority overrides."""

    default: Weights = field(default_factory=Weights)
    by_authority: Mapping[CombinedAuthority, Weights] = field(default_factory=dict)

    def for_authority(self, authority: CombinedAuthority) -> Weights:
        return self.by_authority.get(authority, self.default)


class WeightsError(ValueError):
    pass


def weights_from_toml(text: str) -> WeightsBook:
    """Parse a weights file: ``[default]`` and ``[authorities.<code>]`` tables."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WeightsError(f"weights file is not valid TOML: {exc}") from exc
    unknown = set(data) - {"default", "authorities"}
    if unknown:
        raise WeightsError(f"unknown top-level table(s) in weights file: {sorted(unknown)}")
    try:
        default = Weights.model_validate(data.get("default", {}))
        by_authority: dict[CombinedAuthority, Weights] = {}
        for code, overrides in data.get("authorities", {}).items():
            try:
                authority = CombinedAuthority(code)
            except ValueError:
                raise WeightsError(
                    f"[authorities.{code}] is not a combined authority code "
                    f"({', '.join(c.value for c in CombinedAuthority)})"
                ) from None
            by_authority[authority] = Weights.model_validate({**default.model_dump(), **overrides})
    except ValidationError as exc:
        raise WeightsError(f"invalid weights: {exc}") from exc
    return WeightsBook(default=default, by_authority=by_authority)
