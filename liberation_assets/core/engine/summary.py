"""The counters every pattern reports, under the same names, in the CLI summary and in every asset's metadata.

``published``: events (or rows) published to their topics; ``quarantined``:
rows sent to ``<topic>.quarantine`` instead; ``deletes``: deletes among the
published (each followed by a tombstone); ``kafka_transactions``: Kafka
transactions committed.  The contract check reads ``published`` and
``quarantined`` of a run whatever its pattern.
"""

from __future__ import annotations

PUBLISHED = "published"
QUARANTINED = "quarantined"
DELETES = "deletes"
KAFKA_TRANSACTIONS = "kafka_transactions"
COUNTERS = (PUBLISHED, QUARANTINED, DELETES, KAFKA_TRANSACTIONS)


def counters(*, published: int, quarantined: int, deletes: int, kafka_transactions: int) -> dict[str, int | float]:
    return {PUBLISHED: published, QUARANTINED: quarantined, DELETES: deletes, KAFKA_TRANSACTIONS: kafka_transactions}
