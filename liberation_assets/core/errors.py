"""Typed errors of the core, in one place so callers can catch them precisely."""

from __future__ import annotations


class LiberationError(Exception):
    """Base class: every error the core raises on purpose."""


class SpecError(LiberationError):
    """The spec file is malformed; the message names the file, line and field."""


class ConnectivityError(LiberationError):
    """A broker or database could not be reached."""


class PublishError(LiberationError):
    """Kafka refused or failed to deliver a transaction."""


class SerializationError(LiberationError):
    """A value cannot be represented in the event envelope."""


class UnconvertibleValue(ValueError):
    """One source value that the type mapping cannot carry exactly (a poison value).

    Raised by a column converter with the reason only; the row builder that catches it
    names the column and marks the event (``ChangeEvent.problems``), and the writer sends
    that row to the quarantine while the rest of the batch is published.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ContractViolation(LiberationError):
    """Rows failed the stream's contract and the stream is configured to halt."""


class SchemaIncompatible(LiberationError):
    """A contract or table change would break consumers of the published schema."""


class PositionLost(LiberationError):
    """The stored position can no longer be resumed (slot gone, binlog purged)."""


class PermissionProblem(LiberationError):
    """The database role lacks a right that liberation needs."""


class InvalidEvent(LiberationError):
    """A domain event failed its contract or cannot be serialized; raised inside the caller's transaction so it rolls back."""


class OutboxUnavailable(LiberationError):
    """The outbox table is missing or lacks the columns the relay needs."""


class SlotInUse(LiberationError):
    """Another reader (for example ``liberation follow``) is streaming from the replication slot."""


class SourceMisconfigured(LiberationError):
    """The source database lacks a server setting the pattern needs (for example a ROW binlog with full row images)."""


class AuthenticationFailed(LiberationError):
    """A database refused liberation's login: retrying cannot help, the credentials must change."""


class GaveUp(LiberationError):
    """A ``follow`` kept meeting retriable errors for longer than its give-up time."""
