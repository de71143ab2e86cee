"""Typed errors of the core. Every way a record can be refused has its own reason."""

from __future__ import annotations

from enum import StrEnum


class MeshError(Exception):
    """Base class of every error the core raises."""


class FixableError(MeshError):
    """A mistake a person can correct: what is wrong, where, and how to fix it.

    Every package raises a subclass of this for user mistakes; the CLI turns it into a message
    and an exit code in one place (`cli.errors`), so no command re-wraps errors by hand.
    """

    def __init__(self, what: str, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix


class RejectReason(StrEnum):
    """Why the store refused a record; the store counts each reason separately."""

    BAD_SIGNATURE = "bad_signature"
    NODE_ID_MISMATCH = "node_id_mismatch"
    STALE = "stale"  # seq not newer than the one held
    SEQ_AHEAD = "seq_ahead"  # seq above the ceiling its issued_at allows (store.seq_ceiling)
    DUPLICATE = "duplicate"  # exactly the record already held: normal when flooding
    FUTURE = "future"  # issued_at too far ahead of the receiver's clock
    EXPIRED = "expired"
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    UNKNOWN_KIND = "unknown_kind"
    OTHER_COMMUNITY = "other_community"
    UNENROLLED = "unenrolled"
    REVOKED = "revoked"


class RecordRejected(MeshError):
    """A record failed a check; `reason` says which, `detail` says how, for logs."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class KeyFormatError(MeshError):
    """A key could not be parsed (bad length or encoding)."""


class CommunityError(FixableError):
    """A community file is invalid; `problems` lists every error with its field path.

    As a fixable error it names the first problem (with its fix); str() lists them all.
    """

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0] if problems else Problem("community", "invalid", "check the file")
        super().__init__(f"{first.path}: {first.message}", None, first.fix)
        self.args = ("; ".join(f"{p.path}: {p.message}" for p in problems),)
        self.problems = problems


class Problem:
    """One validation problem: where it is, what is wrong, how to fix it."""

    __slots__ = ("fix", "message", "path")

    def __init__(self, path: str, message: str, fix: str) -> None:
        self.path = path
        self.message = message
        self.fix = fix

    def __repr__(self) -> str:
        return f"Problem({self.path!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and (self.path, self.message, self.fix) == (
            other.path,
            other.message,
            other.fix,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.message, self.fix))
