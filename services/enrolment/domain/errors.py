"""Field errors: one thing wrong with one field, as every channel reports it.

Messages never echo submitted values (they may be personal data).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pydantic import ValidationError

from shared.contracts.enrolment import (
    RejectionCode,
    RejectionReason,
)


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one field. ``pointer`` is a JSON pointer into the document."""

    code: RejectionCode
    pointer: str
    message: str
    type: str

    @property
    def field(self) -> str:
        return ".".join(self.pointer.strip("/").split("/")) if self.pointer else ""

    def at(self, prefix: str) -> FieldError:
        """The same error, with its pointer inside a larger document (``/items/3``)."""
        return replace(self, pointer=f"{prefix}{self.pointer}")

    def as_reason(self) -> RejectionReason:
        return RejectionReason(
            code=self.code,
            pointer=self.pointer,
            field=self.field,
            message=self.message,
            type=self.type,
        )


def schema_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic errors → field errors, without the input values."""
    out = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = [str(p) for p in err.get("loc", ())]
        out.append(
            FieldError(
                code=RejectionCode.SCHEMA_INVALID,
                pointer="/" + "/".join(loc) if loc else "",
                message=err.get("msg", "invalid"),
                type=err.get("type", "value_error"),
            )
        )
    return out
