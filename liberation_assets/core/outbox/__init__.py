"""The transactional outbox: table and migration, event contracts, ``emit`` for applications, and the relay.

Applications need only ``emit``, ``DomainEvent`` and ``register``; importing
them does not load Kafka.
"""

from liberation_assets.core.outbox.events import REGISTRY, DomainEvent, EventRegistry, register
from liberation_assets.core.outbox.table import create_outbox_table, outbox_table
from liberation_assets.core.outbox.writer import emit

__all__ = ["REGISTRY", "DomainEvent", "EventRegistry", "create_outbox_table", "emit", "outbox_table", "register"]
