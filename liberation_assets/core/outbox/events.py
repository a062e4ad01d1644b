"""Domain event contracts: what a service promises its consumers, checked before the outbox insert.

An event is a pydantic model of the *domain* fact (``OrderPlaced``), never a
table row.  Its class names the aggregate it belongs to and the field that
identifies the aggregate; its fields are the payload.  ``event_id`` and
``occurred_at`` travel beside the payload, as the outbox's ``id`` and
``occurred_at`` columns and so as the Kafka header ``id`` and the record
timestamp.

A contract violation raises ``InvalidEvent`` when the event is built, and
again when ``emit`` revalidates it, so it fails the application's transaction
before anything reaches the outbox.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from liberation_assets.core.errors import InvalidEvent

_TOPIC_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def describe(event_type: str, exc: ValidationError) -> str:
    """One line per failed field, with the offending input: what a developer needs to fix the call."""
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "(event)"
        problems.append(f"{field}: {error['msg']} (got {error.get('input')!r})")
    return f"{event_type} rejected by its contract: " + "; ".join(problems)


class DomainEvent(BaseModel):
    """Base of every outbox event.  Subclasses set ``aggregate_type`` and ``aggregate_key``."""

    model_config = ConfigDict(extra="forbid", frozen=True, revalidate_instances="always")

    aggregate_type: ClassVar[str]
    """The outbox ``aggregatetype``; it names the topic (``outbox.event.<aggregatetype>``)."""
    aggregate_key: ClassVar[str]
    """The field whose value is the ``aggregateid``, the Kafka key: one aggregate's events stay in order."""
    event_type: ClassVar[str]
    """The outbox ``type`` and the ``type`` header; the class name unless set."""

    event_id: UUID = Field(default_factory=uuid4, exclude=True)
    occurred_at: AwareDatetime = Field(default_factory=_utc_now, exclude=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidEvent(describe(type(self).__name__, exc)) from None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__

    @property
    def aggregate_id(self) -> str:
        return str(getattr(self, self.aggregate_key))


E = TypeVar("E", bound=type[DomainEvent])


class EventRegistry:
    """Contracts by event type, for ``emit(conn, "OrderPlaced", {...})`` and for consumers that parse payloads."""

    def __init__(self) -> None:
        self._contracts: dict[str, type[DomainEvent]] = {}

    def register(self, contract: E) -> E:
        for attribute in ("aggregate_type", "aggregate_key"):
            if not isinstance(getattr(contract, attribute, None), str):
                raise TypeError(f"{contract.__name__} must set the class attribute {attribute}")
        if not _TOPIC_SAFE.match(contract.aggregate_type):
            raise TypeError(
                f"{contract.__name__}.aggregate_type {contract.aggregate_type!r} cannot name a Kafka topic; "
                "use letters, digits, '.', '_' or '-'"
            )
        fields: dict[str, Any] = contract.__pydantic_fields__
        if contract.aggregate_key not in fields:
            raise TypeError(f"{contract.__name__}.aggregate_key {contract.aggregate_key!r} is not one of its fields")
        known = self._contracts.get(contract.event_type)
        if known is not None and known is not contract:
            raise TypeError(f"event type {contract.event_type!r} is already registered by {known.__qualname__}")
        self._contracts[contract.event_type] = contract
        return contract

    def contract(self, event_type: str) -> type[DomainEvent]:
        try:
            return self._contracts[event_type]
        except KeyError:
            raise InvalidEvent(f"unknown event type {event_type!r}; registered: {sorted(self._contracts)}") from None

    def build(self, event_type: str, payload: Mapping[str, Any]) -> DomainEvent:
        """Validate a payload given as a mapping (``event_id``/``occurred_at`` may be included)."""
        return self.contract(event_type)(**payload)

    def parse(self, event_type: str, payload: bytes | str) -> DomainEvent:
        """Validate a payload as read from Kafka: the consumer's side of the same contract."""
        contract = self.contract(event_type)
        try:
            return contract.model_validate_json(payload)
        except ValidationError as exc:
            raise InvalidEvent(describe(event_type, exc)) from None

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._contracts


REGISTRY = EventRegistry()
register = REGISTRY.register
"""Class decorator: ``@register class OrderPlaced(DomainEvent): ...``."""
