"""Error hierarchy of the scoring core: one root, one-line subclasses."""

from __future__ import annotations

#: Machine-readable reasons an event cannot be scored (the dead-letter ``reason``).
REASONS: tuple[str, ...] = (
    "not_json",
    "not_object",
    "too_large",
    "missing_field",
    "bad_field",
    "unknown_type",
    "bad_timestamp",
    "timestamp_in_future",
    "timestamp_too_old",
    "bad_customer_id",
    "bad_nps_score",
)


class ScoringError(Exception):
    """Root of every error raised by :mod:`scoring`."""


class InvalidModel(ScoringError, ValueError):
    """A scoring model file breaks a rule; the message names the key and the rule."""


class InvalidEvent(ScoringError, ValueError):
    """An interaction event cannot be scored; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidState(ScoringError, ValueError):
    """Stored customer state cannot be decoded against the model it is read with."""


class UnknownFormat(InvalidState):
    """Bytes of a format this version does not read (their first byte names the format;
    ``found`` is None for no bytes)."""

    def __init__(self, what: str, found: int | None, *expected: int) -> None:
        names = " and ".join(str(n) for n in expected)
        formats = f"format{'s' if len(expected) > 1 else ''} {names}"
        if found is None:
            super().__init__(f"{what}: no bytes ({formats} expected)")
        else:
            super().__init__(f"{what}: format {found} is not read (only {formats})")
        self.found = found
