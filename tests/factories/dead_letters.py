"""A dead-letter publisher that records what it was given (the ``DeadLetterPublisher``
port), for projector tests and the reporting benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.dead_letters import RecordLike


@dataclass
class RecordingDeadLetters:
    sent: list[tuple[RecordLike, str, str]] = field(default_factory=list)

    async def send(self, record: RecordLike, error: BaseException, *, kind: str) -> None:
        self.sent.append((record, kind, f"{type(error).__name__}: {error}"))
